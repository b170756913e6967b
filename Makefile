# xfer: everyday entry points. `make features train` runs the main job,
# `make test` runs every test. Everything lands in git-ignored folders.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
comma       := ,
# The course's images. Missing, make provides them (scripts/provide.py data):
# linked from ../shared/clothing-dataset-small where that exists, else cloned
# from the course's repository at a pinned commit.
DEFAULT_DATA := data/clothing-dataset-small
DATA        ?= $(DEFAULT_DATA)
DATA_DEP    := $(if $(filter $(DEFAULT_DATA),$(DATA)),$(DEFAULT_DATA))
WEIGHTS     ?= imagenet
SEED        ?= 1
SIZE        ?= 150
LR          ?= 0.01
EPOCHS      ?= 10
INNER       ?=
DROPOUT     ?=
DEVICE      ?= auto
AUGMENT     ?=
VIEWS       ?=
# Keras's ImageNet Xception file is downloaded once into the user's cache
# (~/.cache/xfer, or $XDG_CACHE_HOME/xfer if set), not into .cache below.
WEIGHTS_CACHE ?= $(if $(filter file,$(origin XDG_CACHE_HOME)),$(HOME)/.cache,$(XDG_CACHE_HOME))/xfer
# The base: given, it is used as given (BACKBONE=xception stops clearly where
# its weights cannot be had). Not given, ImageNet Xception where its weights
# are cached or downloadable, else EfficientNet-Lite0 from PyPI, said in one
# line (scripts/provide.py backbone); asked once per make, and only by the
# targets that name a model, features or a run.
NEEDS_BASE  := $(filter model features train report study-%,$(MAKECMDGOALS))
ifeq ($(origin BACKBONE),undefined)
ifneq ($(NEEDS_BASE),)
BACKBONE     = $(eval BACKBONE := $$(shell $(PYTHON) scripts/provide.py backbone --weights $(WEIGHTS) --cache $(WEIGHTS_CACHE)))$(BACKBONE)
else
BACKBONE    := xception
endif
endif
# Names carry everything that changes the vectors or the head: backbone,
# weights (with the seed of random ones), size; a sweep (a list in LR, INNER
# or DROPOUT) has its own run folder, apart from a single run's.
WEIGHTS_NAME = $(if $(filter random,$(WEIGHTS)),random-s$(SEED),$(notdir $(basename $(WEIGHTS))))
FP32_MODEL   = models/$(BACKBONE)-$(WEIGHTS_NAME).onnx
# QUANT=int8: the base is the fp32 one's int8 copy, models/<stem>-int8.onnx,
# made from it by `export_model.py quantize` on DATA's training images with
# its measured defaults, MinMax on 100 images, 7-bit weights
# (docs/accuracy-int8.md; QUANT_ARGS: --method, --images, --seed, --size,
# --no-reduce-range), so the model's stem, and with it the features and run
# folders, say -int8.
QUANT       ?=
QUANT_ARGS  ?=
ifneq ($(filter-out int8,$(QUANT)),)
$(error QUANT=$(QUANT): QUANT is int8, or empty for the fp32 base)
endif
DEFAULT_MODEL = $(if $(QUANT),$(basename $(FP32_MODEL))-$(QUANT).onnx,$(FP32_MODEL))
MODEL       ?= $(DEFAULT_MODEL)
# What `export_model.py <backbone>` writes: MODEL, or under QUANT the fp32
# base the int8 copy is made from.
EXPORTED     = $(if $(QUANT),$(FP32_MODEL),$(MODEL))
# A MODEL of the user's own (an adopted export, say) is used as it is,
# never exported over by `make features`.
MODEL_DEP    = $(filter $(DEFAULT_MODEL),$(MODEL))
# DECODE=draft: extract decodes JPEG as PIL's Image.draft does (libjpeg at
# 1/2, 1/4 or 1/8 size before the resize; `xfer extract --decode draft`),
# other pixels than Keras's, so the features and run folders say -draft.
# Empty or full: Keras's full decode.
DECODE      ?=
ifneq ($(filter-out full draft,$(DECODE)),)
$(error DECODE=$(DECODE): DECODE is draft, or empty (full) for Keras's decoding)
endif
DECODE_NAME  = $(if $(filter draft,$(DECODE)),-draft)
# RESIZE=bilinear|bicubic|lanczos|box|hamming: extract's --resize, PIL's filter
# instead of Keras's nearest (predict and serve then follow the head); the
# folders say -<filter>. Empty or nearest: Keras's.
RESIZE      ?=
RESIZE_FILTERS := nearest bilinear bicubic lanczos box hamming
ifneq ($(filter-out $(RESIZE_FILTERS),$(RESIZE)),)
$(error RESIZE=$(RESIZE): RESIZE is one of $(RESIZE_FILTERS), or empty (nearest, Keras's))
endif
RESIZE_NAME  = $(if $(filter-out nearest,$(RESIZE)),-$(RESIZE))
STEM         = $(basename $(notdir $(MODEL)))
FEATURES    ?= features/$(STEM)-$(SIZE)$(RESIZE_NAME)$(DECODE_NAME)
RUN         ?= runs/$(STEM)-$(SIZE)$(RESIZE_NAME)$(DECODE_NAME)$(if $(findstring $(comma),$(LR)$(INNER)$(DROPOUT)),-sweep)

# ONNX Runtime comes from PyPI wheels pinned in scripts/ort-pins.txt, the one
# place for the CPU wheel (onnxruntime), the GPU wheel (ORT=gpu:
# onnxruntime-gpu, built for CUDA 13) and the CUDA 13 runtime wheels the GPU
# one's `cuda` and `cudnn` extras name. Only shared libraries are kept, under
# .ort/<cpu|gpu>-<version>/ (the CUDA ones in nvidia/, as pip lays them out),
# where xfer loads them by absolute path: no LD_LIBRARY_PATH. The NVIDIA
# driver is the one thing not fetched. A bumped nvidia-* pin with the same
# onnxruntime-gpu version: remove .ort/gpu-* to fetch again.
ORT         ?= cpu
ORT_PINS    := scripts/ort-pins.txt
ORT_PKG     := $(if $(filter gpu,$(ORT)),onnxruntime-gpu,onnxruntime)
ifeq ($(origin ORT_VERSION),undefined)
ORT_VERSION := $(shell sed -n 's/^$(ORT_PKG)==//p' $(ORT_PINS))
endif
ifeq ($(filter cpu gpu,$(ORT)),)
$(error ORT=$(ORT): ORT is cpu or gpu)
endif
ifeq ($(ORT_VERSION),)
$(error $(ORT_PINS) pins no $(ORT_PKG))
endif
ORT_WHEELS  := $(ORT_PKG)==$(ORT_VERSION) \
               $(if $(filter gpu,$(ORT)),$(shell sed -n 's/^\(nvidia-[^ ]*==[^ ]*\).*/\1/p' $(ORT_PINS)))
ORT_DIR     := .ort/$(ORT)-$(ORT_VERSION)
ORT_LIB     := $(ORT_DIR)/libonnxruntime.so
export ORT_DYLIB_PATH ?= $(abspath $(ORT_LIB))

VENV        := .venv
VPY         := $(VENV)/bin/python
KERAS_VENV  := .venv-keras
KPY         := $(KERAS_VENV)/bin/python
XFER        := target/release/xfer
CARGO       ?= cargo

# Keep ONNX Runtime's caches (ORT 1.32 writes ~/.cache/Microsoft) out of $HOME.
export XDG_CACHE_HOME ?= $(abspath .cache)

.PHONY: help setup ort features train model test lint fmt bench check-export check-lite check-lite0 check-train \
        check-pixels report clean study-lite0 study-lite study-lite-recipes study-lite-combined study-int8 study-augment check-augment check-gpu-libs check-slurm

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

setup: $(ORT_LIB) $(VENV)/.done $(XFER) ## fetch ONNX Runtime (ORT=cpu|gpu), make the venv, build xfer

ort: $(ORT_LIB) ## fetch the pinned ONNX Runtime only (ORT=gpu: with the CUDA 13 runtime wheels, over 1 GB)

$(ORT_LIB):
	rm -rf $(ORT_DIR)/wheel && mkdir -p $(ORT_DIR)/wheel
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: \
	    $(ORT_WHEELS) -d $(ORT_DIR)/wheel
	$(PYTHON) scripts/unpack_ort.py $(ORT_DIR)/wheel $(ORT_DIR)
	rm -rf $(ORT_DIR)/wheel

$(VENV)/.done: scripts/requirements.txt scripts/requirements-dev.txt $(ORT_PINS)
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r scripts/requirements-dev.txt
	touch $@

$(KERAS_VENV)/.done: scripts/requirements-keras.txt
	$(PYTHON) -m venv $(KERAS_VENV)
	$(KPY) -m pip install --quiet --upgrade pip
	$(KPY) -m pip install --quiet -r scripts/requirements-keras.txt
	touch $@

$(XFER): Cargo.toml Cargo.lock $(shell find src crates -name '*.rs' -o -name Cargo.toml)
	@scripts/system-packages.sh
	$(CARGO) build --release --locked --bin xfer

$(DEFAULT_DATA):
	@$(PYTHON) scripts/provide.py data $@

model: $(MODEL) ## export the base to ONNX (BACKBONE=xception|efficientnet-lite0|1|2, WEIGHTS=imagenet|random|PATH.h5 for xception; QUANT=int8 its int8 copy)

$(EXPORTED): $(VENV)/.done scripts/export_model.py $(wildcard scripts/xferexport/*.py) $(wildcard $(WEIGHTS))
	mkdir -p $(dir $@)
	$(VPY) scripts/export_model.py $(BACKBONE) \
	    $(if $(filter xception,$(subst +, ,$(BACKBONE))),--weights $(WEIGHTS) --seed $(SEED) --cache $(WEIGHTS_CACHE)) --out $@

ifneq ($(QUANT),)
$(DEFAULT_MODEL): $(FP32_MODEL) $(DATA_DEP) scripts/xferexport/quantize.py
	$(VPY) scripts/export_model.py quantize --model $(FP32_MODEL) --data $(DATA) --out $@ $(QUANT_ARGS)
endif

features: $(DATA_DEP) $(MODEL_DEP) $(ORT_LIB) $(XFER) ## images in DATA to vectors in FEATURES (SIZE, DEVICE; AUGMENT=K adds K augmented views per training image; DECODE=draft PIL's draft JPEG decoding; RESIZE=bilinear|... PIL's filter)
	$(XFER) extract --data $(DATA) --model $(MODEL) --out $(FEATURES) --size $(SIZE) --device $(DEVICE) \
	    $(if $(AUGMENT),--augment $(AUGMENT) --seed $(SEED)) $(if $(DECODE),--decode $(DECODE)) \
	    $(if $(RESIZE),--resize $(RESIZE))

train: $(XFER) ## fit the head on FEATURES into RUN (LR, EPOCHS, INNER, DROPOUT; lists sweep; VIEWS=1 trains on the augmented views; TRAIN_ARGS=--baseline)
	$(XFER) train --features $(FEATURES) --out $(RUN) --lr $(LR) --epochs $(EPOCHS) \
	    $(if $(INNER),--inner $(INNER)) $(if $(DROPOUT),--dropout $(DROPOUT)) $(if $(VIEWS),--views) $(TRAIN_ARGS)

study-augment: $(DATA_DEP) $(ORT_LIB) $(XFER) ## EfficientNet-Lite0 at 150 and 299, with and without augmented views, 3 seeds, in make's model and features folders (STUDY_ARGS=--views 2)
	$(MAKE) model BACKBONE=efficientnet-lite0 WEIGHTS=imagenet
	$(PYTHON) scripts/study_augment.py --xfer $(XFER) --data $(DATA) \
	    --model models/efficientnet-lite0-imagenet.onnx --features features --runs runs/study-augment $(STUDY_ARGS)

report: $(DATA_DEP) $(VENV)/.done ## one self-contained HTML page for RUN (a run or a sweep) into RUN/report.html
	$(VPY) scripts/report.py $(RUN) --data $(DATA)

SKIP_LOG    := target/test-skips.log

test: $(ORT_LIB) $(VENV)/.done ## every test: cargo tests (unit + end to end) and the Python tests; lists the checks skipped
	@scripts/system-packages.sh
	$(CARGO) build --locked --bin xfer
	@rm -f $(SKIP_LOG)
	XFER_PYTHON=$(abspath $(VPY)) XFER_SKIP_LOG=$(abspath $(SKIP_LOG)) $(CARGO) test --workspace --locked
	@if [ -s $(SKIP_LOG) ]; then \
	    echo "make test: $$(wc -l < $(SKIP_LOG)) Rust test(s) passed without their check (SKIPPED):"; \
	    sed 's/^/  /' $(SKIP_LOG); \
	else echo "make test: no Rust test skipped its check"; fi
	$(VPY) -m unittest discover -s scripts/tests -t . -v

.PHONY: check-readme
check-readme: $(ORT_LIB) $(VENV)/.done $(XFER) ## run the README's commands marked runnable, offline, in a scratch copy on small generated images
	$(VPY) scripts/check_readme.py

lint: ## rustfmt, clippy and rustdoc, warnings as errors
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --locked

fmt: ## format the code
	$(CARGO) fmt --all

check-export: $(DATA_DEP) $(KERAS_VENV)/.done ## prove the ONNX Xception equal to Keras (own venv: keras + JAX)
	KERAS_BACKEND=jax $(KPY) scripts/check_export.py --data $(DATA)

PIXEL_SAMPLE ?= 400
check-pixels: $(DATA_DEP) $(VENV)/.done $(ORT_LIB) $(XFER) ## prove extract's model input equal to Keras load_img + preprocess (PIXEL_SAMPLE images of DATA, synthetic formats), and --decode draft equal to PIL's draft + resize (each filter)
	$(VPY) scripts/check_pixels.py --xfer $(XFER) --data $(DATA) --sample $(PIXEL_SAMPLE) --size $(SIZE)
	$(VPY) scripts/check_pixels.py --xfer $(XFER) --synthetic --size $(SIZE)
	$(VPY) scripts/check_pixels.py --xfer $(XFER) --data $(DATA) --sample $(PIXEL_SAMPLE) --size $(SIZE) --decode draft
	@# JPEGs of sizes that hit each draft scale (1, 2, 4, 8), every resize filter
	for r in nearest bilinear bicubic lanczos box hamming; do \
	    $(VPY) scripts/check_pixels.py --xfer $(XFER) --synthetic --size $(SIZE) --decode draft --resize $$r || exit 1; \
	done

check-augment: $(DATA_DEP) $(KERAS_VENV)/.done $(ORT_LIB) $(XFER) ## prove extract's augmented views equal to Keras ImageDataGenerator (sampled DATA images, each fill mode)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(KPY) scripts/check_augment.py --xfer $(XFER) --data $(DATA) --size $(SIZE)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(KPY) scripts/check_augment.py --xfer $(XFER) --data $(DATA) --size $(SIZE) --fill-mode reflect --vertical-flip
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(KPY) scripts/check_augment.py --xfer $(XFER) --data $(DATA) --size $(SIZE) --fill-mode constant --cval 17

study-lite0: $(DATA_DEP) $(VENV)/.done $(ORT_LIB) ## the Lite0 accuracy study (150 and 224, lr sweep, inner layer, 3 seeds; make's model and features folders) into docs/accuracy-lite0.md
	$(VPY) scripts/study_lite0.py --data $(DATA)

study-lite: $(DATA_DEP) $(VENV)/.done $(ORT_LIB) ## the Lite0/1/2 accuracy study (native sizes and 299, Dense(10) and inner 100 + dropout 0.2, 5 rates, 3 seeds; make's model and features folders) into docs/accuracy-lite.md (STUDY_ARGS=--bases lite2:299)
	$(VPY) scripts/study_lite.py --data $(DATA) $(STUDY_ARGS)

study-lite-recipes: $(DATA_DEP) $(VENV)/.done $(ORT_LIB) ## issue 16's search past study-lite: Lite1 at 240, nearest vs bilinear resize, 30 epochs at smaller rates, dropout 0.5, 3 seeds, into docs/accuracy-lite-recipes.md
	$(VPY) scripts/study_lite_recipes.py --data $(DATA)

study-lite-combined: $(DATA_DEP) $(VENV)/.done $(ORT_LIB) ## issue 16's 91% recipe: Lite0, Lite1 and Lite2 combined into one base (export_model.py combine) against each alone, at 299, two heads, 3 rates, 30 epochs, 3 seeds, the recipe on 10; into docs/accuracy-lite-combined.md (about 30 minutes from nothing)
	$(VPY) scripts/study_lite_combined.py --data $(DATA) $(STUDY_ARGS)

study-int8: $(DATA_DEP) $(VENV)/.done $(ORT_LIB) ## the int8 study (quantize's calibration grid; Lite0 150/299 fp32 against int8, two heads, 3 seeds; Xception random's cosine; --decode draft rows where extract has it) into docs/accuracy-int8.md, under nice -n 19 (STUDY_ARGS=--parts accuracy)
	nice -n 19 $(VPY) scripts/study_int8.py --data $(DATA) $(STUDY_ARGS)

check-lite: $(DATA_DEP) $(VENV)/.done ## prove an EfficientNet-Lite conversion (BACKBONE=efficientnet-lite0|1|2, default lite0): ImageNet names for DATA's validation images
	nice -n 10 $(VPY) scripts/check_lite0.py --data $(DATA) --compare-padding \
	    --backbone $(if $(filter efficientnet-lite%,$(BACKBONE)),$(BACKBONE),efficientnet-lite0)

check-lite0: $(DATA_DEP) $(VENV)/.done ## check-lite for Lite0
	nice -n 10 $(VPY) scripts/check_lite0.py --data $(DATA) --compare-padding --backbone efficientnet-lite0

bench: $(DATA_DEP) $(ORT_LIB) $(VENV)/.done $(KERAS_VENV)/.done $(XFER) ## time xfer against ORT alone, a Python pipeline and Keras into BENCHMARKS.md (about an hour; BENCH_ARGS=--parts train)
	@command -v hyperfine >/dev/null || { echo "make bench needs hyperfine: apt-get install -y hyperfine (or cargo install hyperfine)" >&2; exit 1; }
	@test -x /usr/bin/time || { echo "make bench needs GNU time: apt-get install -y time" >&2; exit 1; }
	$(VPY) scripts/bench/run.py --data $(DATA) --xfer $(XFER) --python $(VPY) --keras-python $(KPY) $(BENCH_ARGS)

check-train: $(KERAS_VENV)/.done $(XFER) ## prove xfer train's history equal to Keras model.fit (lr 0.001/0.01/0.1, with and without inner)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(KPY) scripts/check_train.py --xfer $(XFER)
	@# the real width: halved batches and the widest kernels run (lr 0.1 is chaotic at
	@# 2048 inputs, losses in the hundreds, so rounding alone moves its history)
	KERAS_BACKEND=jax JAX_PLATFORMS=cpu $(KPY) scripts/check_train.py --xfer $(XFER) --dim 2048 --lr 0.001,0.01

check-gpu-libs: $(VENV)/.done $(XFER) ## opt-in, over 1 GB: GPU pins fetchable, CUDA libraries of .ort/gpu-* resolve but the driver's, xfer names the missing driver
	$(MAKE) ort ORT=gpu
	PYTHON=$(PYTHON) XFER=$(XFER) VPY=$(VPY) scripts/check_gpu_libs.sh

check-slurm: $(VENV)/.done $(XFER) ## scripts/slurm/extract.sbatch unchanged on a one-node Slurm (root; apt-get install -y slurm-wlm munge): 3 shards, then train, equal to unsharded
	XFER=$(XFER) VPY=$(VPY) scripts/slurm/check.sh

clean: ## remove build outputs and venvs (keeps models/, features/, runs/)
	$(CARGO) clean
	rm -rf $(VENV) $(KERAS_VENV) .ort .cache
