//! `xfer extract` from validated settings to exit status.
//!
//! Order of work: walk DATA (cheap, and a layout error should not wait for
//! a model to load), open the model, then each split in turn. The exit
//! status follows the rule: 0 when something was extracted, 1 when
//! nothing could be (every image skipped), or with `--strict` when anything
//! was skipped. Failures that stop the run are errors (status 2, printed by
//! the binary).
use std::time::Instant;

use xfer_features::{keys, shard_file_name, FeatureMeta};

use crate::augment;
use crate::config::Config;
use crate::lazy::LazyModel;
use crate::pipeline::{self, Ctx, Job};
use crate::pixels::{Decode, PixelSpec};
use crate::report::{self, Skip};
use crate::walk::{self, Entry};
use crate::{model, model_hash};
use crate::{Error, Result};

pub(crate) fn run(cfg: Config) -> Result<u8> {
    let started = Instant::now();
    let data = walk::scan(&cfg.data, cfg.follow_links)?;
    let candidates: usize = data.splits.iter().map(|s| s.entries.len()).sum();
    if candidates == 0 {
        return Err(Error::Layout {
            path: cfg.data.clone(),
            reason: format!(
                "no images in the class folders ({}); extensions read: {}",
                data.classes.join(", "),
                walk::EXTENSIONS.join(" ")
            ),
        });
    }

    if cfg.augment.is_some() && !data.splits.iter().any(|s| s.name == walk::SINGLE_SPLIT) {
        return Err(Error::Layout {
            path: cfg.data.clone(),
            reason: format!(
                "--augment makes views of the `{}` split, and there is none",
                walk::SINGLE_SPLIT
            ),
        });
    }

    // Metadata and hash only: the session opens when a batch needs it.
    model::require_file(&cfg.model)?;
    xfer_features::create_dir(&cfg.out)?;
    let sha256 = model_hash::sha256(&cfg.model, &cfg.out)?;
    let mut model = LazyModel::new(&cfg.model, sha256, cfg.session, cfg.size, cfg.quiet)?;
    let info = model.info().clone();
    let spec = PixelSpec {
        size: cfg.size,
        resize: cfg.resize,
        decode: cfg.decode,
        preprocess: info.preprocess,
        max_pixels: cfg.max_pixels,
    };
    let meta = FeatureMeta {
        classes: data.classes.clone(),
        backbone: info.backbone.clone(),
        model_sha256: info.sha256.clone(),
        size: format!("{0}x{0}", cfg.size),
        resize: cfg.resize.name().into(),
        preprocess: info.preprocess.name().into(),
        dim: info.dim,
        pretrained: info.pretrained,
        // An int8 model's xfer.quant and a draft run's xfer.decode: part of
        // the model key from here on (absent for fp32 and full decoding).
        extra: info
            .quant
            .iter()
            .map(|q| (keys::QUANT.to_string(), q.clone()))
            .chain(
                (cfg.decode != Decode::Full)
                    .then(|| (keys::DECODE.to_string(), cfg.decode.name().to_string())),
            )
            .collect(),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        .thread_name(|i| format!("xfer-decode-{i}"))
        .build()
        .map_err(|e| Error::Flag {
            flag: "--threads",
            reason: format!("cannot start {} threads: {e}", cfg.threads),
        })?;
    let ctx = Ctx {
        out: &cfg.out,
        meta: &meta,
        spec,
        batch_size: cfg.batch_size,
        pool: &pool,
        quiet: cfg.quiet,
        alternate: cfg.alternate,
    };

    let mut reports = Vec::new();
    for split in &data.splits {
        let name = match cfg.shard {
            Some(s) => shard_file_name(&split.name, s.index, s.count)
                .trim_end_matches(".parquet")
                .to_string(),
            None => split.name.clone(),
        };
        let mut images = Vec::new();
        let mut skipped = Vec::new();
        for (pos, entry) in split.entries.iter().enumerate() {
            if cfg.shard.is_some_and(|s| !s.takes(pos)) {
                continue;
            }
            match entry {
                Entry::Image(item) => images.push((pos, item)),
                Entry::Skipped(s) => skipped.push((
                    pos,
                    Skip {
                        rel: s.rel.clone(),
                        reason: s.reason.clone(),
                    },
                )),
            }
        }
        let views = vec![0; images.len()];
        let plain = images.clone();
        let r = pipeline::extract(
            Job {
                name: name.clone(),
                images,
                skipped,
                views,
                augment: None,
            },
            &mut model,
            &ctx,
        )?;
        if !cfg.quiet {
            eprintln!("xfer extract: {}", r.line());
        }
        let views_job = match &cfg.augment {
            Some(aug) if split.name == walk::SINGLE_SPLIT => {
                Some(augment::views_job(&name, &plain, &r.failed, aug))
            }
            _ => None,
        };
        reports.push(r);
        if let (Some(job), Some(aug)) = (views_job, &cfg.augment) {
            let meta = augment::views_meta(&meta, aug);
            let ctx = Ctx { meta: &meta, ..ctx };
            let r = pipeline::extract(job, &mut model, &ctx)?;
            if !cfg.quiet {
                eprintln!("xfer extract: {}", r.line());
            }
            reports.push(r);
        }
    }

    let rows: usize = reports.iter().map(|r| r.rows).sum();
    let skipped: usize = reports.iter().map(|r| r.skipped).sum();
    if !cfg.quiet {
        eprintln!(
            "{}",
            report::summary(&reports, model.provider(), started.elapsed().as_secs_f64())
        );
    }
    if rows == 0 && skipped > 0 {
        eprintln!("xfer extract: nothing could be extracted: all {skipped} images were skipped");
        return Ok(1);
    }
    if cfg.strict && skipped > 0 {
        eprintln!("xfer extract: --strict: {skipped} images skipped");
        return Ok(1);
    }
    Ok(0)
}
