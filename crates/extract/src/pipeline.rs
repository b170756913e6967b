//! One output file: decode in parallel, infer in order, never lose work.
//!
//! **One writer.** The file's lock ([`crate::lock`]) is held from the
//! first look at earlier work to the last rename, so a second run of the
//! same file waits and then finds it done, and nothing below (parts,
//! temporary files) is shared with another process.
//!
//! **What is already done.** When there is earlier work (the old output or
//! leftover parts), every image is first read and hashed on the rayon pool
//! and looked up ([`crate::cache`]); only the images left go to the model,
//! whose session is built on that first need ([`crate::lazy`]). A rerun with
//! nothing new builds none.
//!
//! **Overlap.** A producer thread takes the images left a few batches at a
//! time ([`batches_per_step`]) and prepares them on the rayon pool (read,
//! sha256, decode, resize, preprocess), each image straight into its slot
//! of its batch's buffer, the buffer ONNX Runtime then reads: pixels are
//! never copied. A bounded channel of [`QUEUE`] batches hands them to this
//! thread, which runs ONNX Runtime (its own intra-op threads) while the
//! next batches decode. Memory holds at most `QUEUE + 1` batches of pixels
//! plus one step's (at most [`STEP_BYTES`], or one batch where a batch is
//! larger), whatever the data set's size.
//!
//! **Taking turns.** When ONNX Runtime's threads fill every core, on the
//! CPU ([`crate::model::BaseModel::takes_turns`]), the producer prepares a
//! batch only when this thread asks for it, after the model has run:
//! decoding then has all the cores between two runs instead of preempting
//! ORT's threads during one.
//!
//! **Crash safety.** Each encoded batch is written at once as a small,
//! complete Parquet file in `OUT/.parts/<name>/` (durably: unique temporary
//! name, fsync, rename, fsync of the folder). Only when every image is done
//! is `OUT/<name>.parquet` assembled from the reused rows and the parts, in
//! flow order, each row checked to be the image and bytes indexed, written
//! the same way over the old file; then the parts are removed. A `kill -9` at
//! any moment leaves the old output intact and the finished parts in place;
//! the next run reads them as cache ([`crate::cache`]) and encodes only what
//! was not finished.
//!
//! **Views.** The same machinery writes the augmented views of the training
//! split (`views/<split>.parquet`): the job's items are then (image, view)
//! pairs, each view's pixels come from [`crate::augment`], and rows carry
//! their view number.
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use sha2::{Digest, Sha256};
use xfer_features::{FeatureFileReader, FeatureFileWriter, FeatureMeta, FeatureTable};

use crate::augment::Augment;
use crate::cache::{Cache, Hit, RowReader};
use crate::file_id::{self, FileId};
use crate::image_hashes::ImageHashes;
use crate::lazy::LazyModel;
use crate::lock;
use crate::pixels::{self, PixelSpec};
use crate::progress::Progress;
use crate::report::{Skip, SplitReport};
use crate::walk::Item;
use crate::{Error, Result};

/// Prepared batches waiting for the model.
const QUEUE: usize = 2;

/// Rows per row group of the final file.
const ROW_GROUP: usize = 1024;

/// Most bytes of pixels one parallel step of the producer prepares
/// ([`batches_per_step`]).
const STEP_BYTES: usize = 256 << 20;

/// What the run needs besides the images.
pub(crate) struct Ctx<'a> {
    pub(crate) out: &'a Path,
    pub(crate) meta: &'a FeatureMeta,
    pub(crate) spec: PixelSpec,
    pub(crate) batch_size: usize,
    pub(crate) pool: &'a rayon::ThreadPool,
    pub(crate) quiet: bool,
}

/// One output file's work: images in flow order, plus what the walk
/// already skipped, each with its position in the walk (for the order of
/// the errors file).
pub(crate) struct Job<'a> {
    pub(crate) name: String,
    pub(crate) images: Vec<(usize, &'a Item)>,
    pub(crate) skipped: Vec<(usize, Skip)>,
    /// The view of each entry of `images` (0: the plain image; an image
    /// listed once per view).
    pub(crate) views: Vec<i32>,
    /// How views from 1 are made (`None` for a plain job).
    pub(crate) augment: Option<&'a Augment>,
}

impl Job<'_> {
    /// Image `i` skipped for `reason`, at its place in the walk.
    fn skip(&self, i: usize, reason: String) -> (usize, Skip) {
        let (pos, item) = self.images[i];
        (
            pos,
            Skip {
                rel: item.rel.clone(),
                reason,
            },
        )
    }
}

/// What preparing one image gave: its identity, or why it was skipped.
/// Its pixels are in the batch's buffer ([`Batch`]).
enum Prepared {
    Pixels([u8; 32], FileId),
    Bad(String),
}

/// Consecutive images of `todo`, prepared: `pixels` holds one slot of
/// [`PixelSpec::tensor_len`] floats per image, in order (a bad image's
/// slot is left as it was).
struct Batch {
    /// Position in `todo` of the first image.
    first: usize,
    pixels: Vec<f32>,
    prepared: Vec<Prepared>,
}

/// Prepares one image straight into its slot of the batch buffer.
fn prepare(
    item: &Item,
    view: i32,
    spec: &PixelSpec,
    augment: Option<&Augment>,
    out: &mut [f32],
) -> Prepared {
    // The identity before the bytes: a change after it shows as another
    // identity next time, never as a stale hash trusted.
    let read = pixels::image_file_meta(&item.path)
        .and_then(|meta| Ok((file_id::of(&meta), pixels::read_bytes(&item.path)?)));
    let (id, bytes) = match read {
        Ok(r) => r,
        Err(e) => return Prepared::Bad(e.0),
    };
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let x = match (view, augment) {
        (v @ 1.., Some(a)) => a.pixels_into(&bytes, spec, &item.rel, v.unsigned_abs(), out),
        _ => pixels::from_bytes_into(&bytes, spec, out),
    };
    match x {
        Ok(()) => Prepared::Pixels(sha, id),
        Err(e) => Prepared::Bad(e.0),
    }
}

/// Batches prepared in one parallel step, so that no core idles at the
/// end of one small batch when there are many threads: enough for four
/// images per thread, but never more than [`STEP_BYTES`] of pixels (one
/// batch at least).
fn batches_per_step(batch: usize, threads: usize, spec: &PixelSpec) -> usize {
    let want = (4 * threads).div_ceil(batch).max(1);
    let batch_bytes = batch * spec.tensor_len() * std::mem::size_of::<f32>();
    want.min((STEP_BYTES / batch_bytes.max(1)).max(1))
}

/// Prepares the images `chunk` (indexes into the job, from position
/// `first` of `todo`) on the pool, each into its slot of one of the
/// chunk's batch buffers.
fn prepare_step(job: &Job<'_>, chunk: &[usize], first: usize, ctx: &Ctx<'_>) -> Vec<Batch> {
    let len = ctx.spec.tensor_len();
    let mut batches: Vec<Batch> = chunk
        .chunks(ctx.batch_size)
        .scan(first, |at, c| {
            let b = Batch {
                first: *at,
                pixels: vec![0.0; c.len() * len],
                prepared: Vec::with_capacity(c.len()),
            };
            *at += c.len();
            Some(b)
        })
        .collect();
    let slots: Vec<&mut [f32]> = batches
        .iter_mut()
        .flat_map(|b| b.pixels.chunks_exact_mut(len))
        .collect();
    let prepared: Vec<Prepared> = ctx.pool.install(|| {
        chunk
            .par_iter()
            .zip(slots)
            .map(|(&i, out)| prepare(job.images[i].1, job.views[i], &ctx.spec, job.augment, out))
            .collect()
    });
    let mut prepared = prepared.into_iter();
    for b in &mut batches {
        let n = b.pixels.len() / len;
        b.prepared.extend(prepared.by_ref().take(n));
    }
    batches
}

#[derive(Clone, Copy)]
enum Status {
    Pending,
    Done(Hit, [u8; 32]),
    Bad,
}

/// Phase 0 for one image: its identity, hash and cached row, if any. The
/// file is read and hashed only when the last run's hash for it is not
/// known ([`ImageHashes`]); it is never decoded here.
fn check(
    item: &Item,
    view: i32,
    cache: &Cache,
    hashes: &ImageHashes,
) -> std::result::Result<(Status, FileId, [u8; 32]), String> {
    let meta = pixels::image_file_meta(&item.path).map_err(|e| e.0)?;
    let id = file_id::of(&meta);
    let sha = match hashes.get(&item.rel, &id) {
        Some(sha) => sha,
        None => Sha256::digest(pixels::read_bytes(&item.path).map_err(|e| e.0)?).into(),
    };
    let status = match cache.lookup_view(&item.rel, view, &sha) {
        Some(hit) => Status::Done(hit, sha),
        None => Status::Pending,
    };
    Ok((status, id, sha))
}

/// A part written by this run: its file, its rows, and which images.
struct Part {
    path: PathBuf,
    rows: Vec<(String, i32, [u8; 32])>,
    images: Vec<usize>,
}

/// Files in `dir` named `*.parquet`, sorted (oldest run first).
fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Extracts one output file (a split, or a shard of one).
pub(crate) fn extract(
    mut job: Job<'_>,
    model: &mut LazyModel<'_>,
    ctx: &Ctx<'_>,
) -> Result<SplitReport> {
    let final_path = ctx.out.join(format!("{}.parquet", job.name));
    let errors_path = ctx.out.join(format!("{}.errors.csv", job.name));
    let parts_dir = ctx.out.join(".parts").join(&job.name);
    // One writer per output file; everything below, parts included, is
    // this run's alone until it returns.
    let _lock = lock::acquire(&final_path, ctx.quiet)?;
    xfer_features::remove_stale_temps(&final_path);
    xfer_features::remove_stale_temps(&errors_path);

    // Earlier work that may be reused: the old output, then leftover parts.
    let mut cache = Cache::default();
    let mut final_source = None;
    if final_path.is_file() {
        match cache.add_file(&final_path, ctx.meta)? {
            None => final_source = Some(0),
            Some(why) if !ctx.quiet => {
                eprintln!(
                    "xfer extract: {}: not reused: {why}; re-encoding",
                    final_path.display()
                );
            }
            Some(_) => {}
        }
    }
    for part in part_files(&parts_dir) {
        cache.add_file(&part, ctx.meta)?;
    }

    let n = job.images.len();
    let mut skips: Vec<(usize, Skip)> = std::mem::take(&mut job.skipped);
    let mut report = SplitReport {
        name: job.name.clone(),
        file: final_path.clone(),
        ..Default::default()
    };
    // Phase 0: what earlier runs already did (hashes only, no decoding).
    let hashes = ImageHashes::load(&final_path);
    let mut ids: Vec<Option<(FileId, [u8; 32])>> = vec![None; n];
    let mut status = if cache.is_empty() {
        vec![Status::Pending; n]
    } else {
        let checked: Vec<_> = ctx.pool.install(|| {
            job.images
                .par_iter()
                .zip(job.views.par_iter())
                .map(|((_, item), &view)| check(item, view, &cache, &hashes))
                .collect()
        });
        checked
            .into_iter()
            .enumerate()
            .map(|(i, c)| match c {
                Ok((s, id, sha)) => {
                    ids[i] = Some((id, sha));
                    s
                }
                Err(reason) => {
                    skips.push(job.skip(i, reason));
                    Status::Bad
                }
            })
            .collect()
    };
    report.reused = status
        .iter()
        .filter(|s| matches!(s, Status::Done(..)))
        .count();
    let todo: Vec<usize> = (0..n)
        .filter(|&i| matches!(status[i], Status::Pending))
        .collect();

    // Phase 1: only when something is new does the model open.
    if !todo.is_empty() {
        let parts = encode(
            &job,
            &todo,
            &parts_dir,
            model,
            ctx,
            &mut report,
            &mut status,
            &mut ids,
            &mut skips,
        )?;
        for part in parts {
            let shas: Vec<[u8; 32]> = part.rows.iter().map(|r| r.2).collect();
            let source = cache.add_view_rows(&part.path, part.rows);
            for (row, i) in part.images.into_iter().enumerate() {
                status[i] = Status::Done(Hit { source, row }, shas[row]);
            }
        }
    }

    // Phase 2: the final file, in flow order, unless it already is exactly that.
    let done: Vec<(usize, Hit, [u8; 32])> = status
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match s {
            Status::Done(h, sha) => Some((i, *h, *sha)),
            _ => None,
        })
        .collect();
    report.rows = done.len();
    report.skipped = skips.len();
    report.failed = status
        .iter()
        .enumerate()
        .filter_map(|(i, s)| matches!(s, Status::Bad).then_some(i))
        .collect();
    let unchanged = final_source.is_some_and(|src| {
        cache.rows_in(src) == done.len()
            && done
                .iter()
                .enumerate()
                .all(|(k, (_, h, _))| h.source == src && h.row == k)
            && FeatureFileReader::open(&final_path, 1).is_ok_and(|r| r.meta() == ctx.meta)
    });
    if !unchanged {
        assemble(&final_path, &cache, &done, &job, ctx.meta)?;
    }
    hashes.save(
        &final_path,
        done.iter().filter_map(|&(i, _, sha)| {
            let (id, seen) = ids[i]?;
            (seen == sha).then_some((job.images[i].1.rel.as_str(), id, sha))
        }),
    );
    match std::fs::remove_dir_all(&parts_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Features(xfer_features::Error::Write {
                path: parts_dir.clone(),
                reason: xfer_features::describe_io(&e),
            }))
        }
        _ => {}
    }
    // Gone only when no other shard or split is still writing parts.
    if let Some(parent) = parts_dir.parent() {
        let _ = std::fs::remove_dir(parent); // .parts/views
    }
    let _ = std::fs::remove_dir(ctx.out.join(".parts"));
    skips.sort_by_key(|(pos, _)| *pos);
    let skips: Vec<Skip> = skips.into_iter().map(|(_, s)| s).collect();
    crate::report::write_errors(&errors_path, &skips)?;
    report.errors_file = (!skips.is_empty()).then_some(errors_path);
    Ok(report)
}

/// Phase 1: decodes the images `todo` (indexes into the job) in parallel,
/// encodes them in order, and writes each batch as a part; returns the
/// parts written.
#[allow(clippy::too_many_arguments)]
fn encode(
    job: &Job<'_>,
    todo: &[usize],
    parts_dir: &Path,
    model: &mut LazyModel<'_>,
    ctx: &Ctx<'_>,
    report: &mut SplitReport,
    status: &mut [Status],
    ids: &mut [Option<(FileId, [u8; 32])>],
    skips: &mut Vec<(usize, Skip)>,
) -> Result<Vec<Part>> {
    let model = model.get()?;
    // Decoding and inference take turns only when ORT's threads fill the
    // cores on CPU (see the module docs).
    let alternate = model.takes_turns();
    let run_id = format!(
        "{:013}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis()),
        std::process::id()
    );
    let mut parts: Vec<Part> = Vec::new();
    let mut progress = Progress::new(&job.name, todo.len(), ctx.quiet);
    let started = Instant::now();
    let dim = ctx.meta.dim;

    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = crossbeam_channel::bounded::<Batch>(QUEUE);
        // One batch at a time when taking turns, each asked for by the
        // model's thread; else several per parallel step.
        let step = ctx.batch_size
            * if alternate {
                1
            } else {
                batches_per_step(ctx.batch_size, ctx.pool.current_num_threads(), &ctx.spec)
            };
        let (want_tx, want_rx) = crossbeam_channel::unbounded::<()>();
        let want_tx = alternate.then_some(want_tx);
        let ask = || {
            if let Some(tx) = &want_tx {
                let _ = tx.send(());
            }
        };
        ask();
        scope.spawn(move || {
            for (c, chunk) in todo.chunks(step).enumerate() {
                if alternate && want_rx.recv().is_err() {
                    return; // the consumer stopped
                }
                for b in prepare_step(job, chunk, c * step, ctx) {
                    if tx.send(b).is_err() {
                        return; // the consumer stopped on an error
                    }
                }
            }
        });
        // Parts are written off the inference thread: a slow disk or fsync
        // must not stall the model.
        let (part_tx, part_rx) = crossbeam_channel::bounded::<(PathBuf, FeatureTable)>(QUEUE);
        let writer = scope.spawn(move || -> Result<()> {
            for (path, table) in part_rx {
                xfer_features::write_file(&path, &table)?;
            }
            Ok(())
        });
        let mut seq = 0usize;
        let len = ctx.spec.tensor_len();
        for batch in rx {
            let Batch {
                first,
                mut pixels,
                prepared,
            } = batch;
            let handled = prepared.len();
            let mut which = Vec::new();
            let mut shas = Vec::new();
            for (k, p) in prepared.into_iter().enumerate() {
                let i = todo[first + k];
                match p {
                    Prepared::Bad(reason) => {
                        status[i] = Status::Bad;
                        skips.push(job.skip(i, reason));
                    }
                    Prepared::Pixels(sha, id) => {
                        ids[i] = Some((id, sha));
                        // Close the gap a bad image left (rare: a copy
                        // only then).
                        let to = which.len();
                        if to != k {
                            pixels.copy_within(k * len..(k + 1) * len, to * len);
                        }
                        which.push(i);
                        shas.push(sha);
                    }
                }
            }
            pixels.truncate(which.len() * len);
            let count = which.len();
            if count > 0 {
                let t = Instant::now();
                let vectors = model.run(&pixels, count, ctx.spec.size)?;
                report.ort_secs += t.elapsed().as_secs_f64();
                drop(pixels);
                let mut table = FeatureTable::empty(ctx.meta.clone());
                for (k, &i) in which.iter().enumerate() {
                    let item = job.images[i].1;
                    table.push(
                        item.rel.clone(),
                        item.label,
                        shas[k],
                        &vectors[k * dim..(k + 1) * dim],
                        job.views[i],
                    )?;
                }
                let path = parts_dir.join(format!("{run_id}-{seq:06}.parquet"));
                seq += 1;
                let rows = table
                    .paths
                    .iter()
                    .cloned()
                    .zip(table.views.iter().copied())
                    .zip(table.sha256.iter().copied())
                    .map(|((p, v), sha)| (p, v, sha))
                    .collect();
                parts.push(Part {
                    path: path.clone(),
                    rows,
                    images: which,
                });
                if part_tx.send((path, table)).is_err() {
                    break; // the writer failed; its error is returned below
                }
                report.encoded += count;
            }
            ask();
            progress.advance(handled, count);
        }
        drop(part_tx);
        writer.join().unwrap_or_else(|_| {
            Err(Error::Layout {
                path: parts_dir.to_path_buf(),
                reason: "part writer crashed".into(),
            })
        })
    })?;
    report.encode_secs = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(parts)
}

/// Writes `path` from cache rows in the given (flow) order, streaming.
fn assemble(
    path: &Path,
    cache: &Cache,
    done: &[(usize, Hit, [u8; 32])],
    job: &Job<'_>,
    meta: &FeatureMeta,
) -> Result<()> {
    // How many rows each source still has to give: close it after the last.
    let mut left = std::collections::HashMap::new();
    for (_, h, _) in done {
        *left.entry(h.source).or_insert(0usize) += 1;
    }
    let mut reader = RowReader::new(cache);
    let with_view = job.augment.is_some();
    let mut writer = FeatureFileWriter::create(path, meta.clone(), with_view)?;
    let mut buf = FeatureTable::empty(meta.clone());
    for &(i, hit, sha) in done {
        let item = job.images[i].1;
        buf.push(
            item.rel.clone(),
            item.label,
            sha,
            reader.vector(hit, &item.rel, job.views[i], &sha)?,
            job.views[i],
        )?;
        let n = left.get_mut(&hit.source).expect("counted above");
        *n -= 1;
        if *n == 0 {
            reader.close(hit.source);
        }
        if buf.len() == ROW_GROUP {
            writer.write(&buf)?;
            buf = FeatureTable::empty(meta.clone());
        }
    }
    writer.write(&buf)?;
    if done.is_empty() {
        // An empty split still gets a file with the schema and metadata.
        writer.write(&FeatureTable::empty(meta.clone()))?;
    }
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pixels::{Preprocess, Resize};

    #[test]
    fn a_step_is_four_images_per_thread_within_its_byte_budget() {
        let small = PixelSpec::new(150, Resize::Nearest, Preprocess::Tf);
        assert_eq!(batches_per_step(32, 2, &small), 1);
        assert_eq!(batches_per_step(32, 16, &small), 2);
        assert_eq!(batches_per_step(8, 16, &small), 8);
        // 4096 x 4096 pixels are 201 MB an image: one batch a step, not
        // the 64 images (13 GB) four per thread would be.
        let huge = PixelSpec::new(4096, Resize::Nearest, Preprocess::Tf);
        assert_eq!(batches_per_step(32, 16, &huge), 1);
        assert_eq!(batches_per_step(1, 16, &huge), 1);
        let step = batches_per_step(
            1,
            64,
            &PixelSpec::new(1024, Resize::Nearest, Preprocess::Tf),
        );
        assert!(step * 1024 * 1024 * 3 * 4 <= STEP_BYTES, "{step}");
        assert!(step > 1);
    }
}
