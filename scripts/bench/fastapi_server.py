#!/usr/bin/env python3
"""What a user would write instead of `xfer serve`: FastAPI + uvicorn +
onnxruntime serving the joined classifier ONNX of `export_model.py
classifier` (base + head + softmax, class names in its metadata).

    python scripts/bench/fastapi_server.py --model C.onnx --port 8000 --threads 2

The plain way, as FastAPI's and onnxruntime's documentation show it: one
`InferenceSession`, and per request PIL `open` + `convert('RGB')` +
`resize(NEAREST)` (Keras's `load_img`), the model's preprocessing in numpy,
one `session.run` on that image, the top classes as JSON. `POST /predict`
takes the raw bytes as the body, `POST /predict/form` a multipart field
`image` (python-multipart); `GET /health` answers once the model is loaded.
No batching across requests: that is what xfer adds.
"""
import argparse
import io
import json

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from PIL import Image

import benchlib


def build_app(model, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    meta = dict(session.get_modelmeta().custom_metadata_map)
    classes = json.loads(meta["xfer.classes"])
    size = int(meta["xfer.size"].split("x")[0])
    mode = meta["xfer.preprocess"]
    input_name = session.get_inputs()[0].name
    output = meta.get("xfer.probabilities", "probabilities")
    app = FastAPI()

    def classify(data, top):
        try:
            img = Image.open(io.BytesIO(data))
            img = img.convert("RGB").resize((size, size), Image.NEAREST)
        except Exception as e:  # PIL raises many kinds
            raise HTTPException(status_code=400, detail=f"cannot read image: {e}")
        x = benchlib.preprocess(np.asarray(img, dtype=np.uint8)[None], mode)
        (probs,) = session.run([output], {input_name: x})
        order = np.argsort(-probs[0], kind="stable")[:top]
        return {"top": [{"class": classes[i], "probability": float(probs[0][i])} for i in order]}

    @app.get("/health")
    def health():
        return {"model": model, "classes": classes, "ready": True}

    @app.post("/predict")
    async def predict(request: Request, top: int = 3):
        return classify(await request.body(), top)

    @app.post("/predict/form")
    async def predict_form(image: UploadFile = File(...), top: int = 3):
        return classify(await image.read(), top)

    return app


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="joined classifier ONNX")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    a = p.parse_args(argv)
    uvicorn.run(build_app(a.model, a.threads), host=a.host, port=a.port, log_level="warning")


if __name__ == "__main__":
    main()
