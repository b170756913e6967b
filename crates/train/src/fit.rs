//! The training loop, step for step what Keras's `model.fit` does.
//!
//! Per epoch: the training rows are reshuffled (from the seed, unless
//! `--no-shuffle`), cut into batches of `batch_size` with the last partial
//! batch kept, and each batch makes one forward pass (dropout active), one
//! backward pass and one Adam step. `loss` and `accuracy` are what Keras's
//! progress bar and `History` show: running means over the batches of the
//! epoch, each batch's numbers taken *before* its update (loss weighted by
//! batch size). `val_loss` and `val_accuracy` are computed on the whole
//! validation split after the epoch, without dropout.
//!
//! Backward pass of `z = dropout(relu(x·W1 + b1))·W2 + b2` with
//! `dz = (softmax(z) - onehot(y)) / B` from [`crate::loss`]:
//! `dW2 = hᵀ·dz`, `db2 = Σ_rows dz`, `dh = (dz·W2ᵀ) ⊙ mask ⊙ [a > 0]` (mask:
//! 0 or `1/(1-p)`, Keras's inverted dropout),
//! `dW1 = xᵀ·dh`, `db1 = Σ_rows dh` (without the inner layer only the first
//! two). A batch whose loss is NaN or infinite stops the run (the update is
//! not applied), as Keras's `TerminateOnNaN` would.
//!
//! All buffers are allocated once per run. The batch is never gathered: the
//! products ([`crate::kernels`]) read the training rows where they lie,
//! through the batch's row indexes, with the kernels held output-major
//! ([`Net`]); only input dropout copies the batch (to scale it).
//!
//! With augmented views (`--views`, K views per image besides the plain
//! row), each epoch first picks one view per image ([`ViewSchedule`]) and
//! gathers those rows into an epoch matrix the batches read from, so an
//! epoch has as many rows as without augmentation. With K = 0 nothing is
//! drawn and the run is the plain one, number for number.
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::adam::{Adam, AdamParams};
use crate::data::{Split, Views};
use crate::head::Head;
use crate::loss::{cross_entropy, BatchStats};
use crate::net::Net;
use crate::{kernels, Error, Result};

/// Rows per forward pass when evaluating a whole split.
const EVAL_ROWS: usize = 512;

/// Loop settings shared by every configuration of a sweep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FitOptions {
    pub(crate) epochs: usize,
    pub(crate) batch_size: usize,
    pub(crate) shuffle: bool,
    pub(crate) seed: u64,
}

/// Keras's `history.history`: one value per finished epoch.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct History {
    pub(crate) loss: Vec<f32>,
    pub(crate) accuracy: Vec<f32>,
    pub(crate) val_loss: Vec<f32>,
    pub(crate) val_accuracy: Vec<f32>,
}

impl History {
    /// Number of finished epochs.
    pub(crate) fn epochs(&self) -> usize {
        self.loss.len()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Every epoch ran.
    Finished,
    /// The loss became NaN or infinite in `epoch` (from 1), `batch` (from 1,
    /// 0 for the validation pass).
    Diverged { epoch: usize, batch: usize },
}

/// The result of one configuration.
#[derive(Debug, Clone)]
pub(crate) struct Fit {
    pub(crate) history: History,
    /// Best `val_accuracy` epoch (from 1) and its weights: the first epoch
    /// with the highest value, like `ModelCheckpoint(save_best_only=True)`.
    pub(crate) best: Option<(usize, Head)>,
    /// Weights after the last finished epoch.
    pub(crate) last: Option<Head>,
    pub(crate) outcome: Outcome,
}

/// Buffers for one run, sized for the largest batch.
struct Work {
    dropout: f32,
    xb: Vec<f32>,
    yb: Vec<u32>,
    a: Vec<f32>,
    h: Vec<f32>,
    /// Random bits and the batch's dropout factors (0 or 1/(1-p)).
    bits: Vec<u16>,
    scale: Vec<f32>,
    z: Vec<f32>,
    dz: Vec<f32>,
    dh: Vec<f32>,
    grads: [Vec<f32>; 4],
    /// The second half-batch's weight gradients (see [`Work::step`]).
    grads_b: [Vec<f32>; 4],
    /// `0, 1, 2, ...`: the indexes of rows that are already contiguous.
    iota: Vec<usize>,
    rng: SplitMix64,
    /// Batches from this many rows are halved ([`HALVE_ROWS`]; tests turn
    /// halving off to compare).
    halve_rows: usize,
}

/// Adam's tensor indexes.
const INNER_K: usize = 0;
const INNER_B: usize = 1;
const DENSE_K: usize = 2;
const DENSE_B: usize = 3;

/// SplitMix64 (Steele, Lea & Flood 2014): 64 well-mixed bits per step
/// from a counter. Dropout on 2048-wide vectors needs millions of draws per
/// epoch; this is several times cheaper than ChaCha, and being spelled out
/// here its stream never changes with a dependency upgrade.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Keras's inverted dropout factors: 0 with probability `p`, else
/// `1 / (1 - p)`. Each value compares 16 random bits with `p·2¹⁶`, so `p`
/// is honoured to 1/65536; bits are drawn first so the compare vectorises.
fn dropout_scales(rng: &mut SplitMix64, bits: &mut [u16], scale: &mut [f32], p: f32) {
    for chunk in bits.chunks_mut(4) {
        let r = rng.next().to_le_bytes();
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = u16::from_le_bytes([r[2 * i], r[2 * i + 1]]);
        }
    }
    let threshold = (f64::from(p) * 65536.0).round() as u32;
    let keep = 1.0 / (1.0 - p);
    for (s, &b) in scale.iter_mut().zip(bits.iter()) {
        *s = if u32::from(b) >= threshold { keep } else { 0.0 };
    }
}

fn column_sums(m: &[f32], cols: usize, out: &mut [f32]) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for row in m.chunks_exact(cols) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// A batch is halved across two threads from this many rows...
const HALVE_ROWS: usize = 16;
/// ...when a row's products cost at least this many multiply-adds (below,
/// waking a thread costs more than it saves).
const HALVE_WORK: usize = 8192;

/// A run of a batch's rows in the per-row buffers.
struct Rows<'a> {
    z: &'a mut [f32],
    dz: &'a mut [f32],
    a: &'a mut [f32],
    h: &'a mut [f32],
    dh: &'a mut [f32],
    /// Dropout factors after the inner layer (empty: none).
    scale: &'a [f32],
}

impl<'a> Rows<'a> {
    /// The first `m` rows and the rest.
    fn split_at(self, m: usize, c: usize, hw: usize) -> (Rows<'a>, Rows<'a>) {
        let (z1, z2) = self.z.split_at_mut(m * c);
        let (dz1, dz2) = self.dz.split_at_mut(m * c);
        let (a1, a2) = self.a.split_at_mut(m * hw);
        let (h1, h2) = self.h.split_at_mut(m * hw);
        let (dh1, dh2) = self.dh.split_at_mut(m * hw);
        let (s1, s2) = self.scale.split_at((m * hw).min(self.scale.len()));
        (
            Rows {
                z: z1,
                dz: dz1,
                a: a1,
                h: h1,
                dh: dh1,
                scale: s1,
            },
            Rows {
                z: z2,
                dz: dz2,
                a: a2,
                h: h2,
                dh: dh2,
                scale: s2,
            },
        )
    }
}

/// Forward pass, loss and weight gradients of rows `xi` of `x` (labels
/// `y`), into `rows` and the kernel gradients of `grads`; `inv_b` is one
/// over the whole batch's size. Stops after the loss when it is not finite.
#[allow(clippy::too_many_arguments)]
fn rows_pass(
    net: &Net,
    x: &[f32],
    xi: &[usize],
    y: &[u32],
    rows: Rows<'_>,
    iota: &[usize],
    inv_b: f32,
    grads: &mut [Vec<f32>; 4],
) -> BatchStats {
    let c = net.classes();
    let Rows {
        z,
        dz,
        a,
        h,
        dh,
        scale,
    } = rows;
    match &net.inner {
        None => {
            net.dense.forward(x, xi, z);
            let stats = cross_entropy(z, y, c, Some((dz, inv_b)));
            if stats.loss_sum.is_finite() {
                kernels::weight_grad(x, net.dense.inputs, xi, dz, c, &mut grads[DENSE_K]);
            }
            stats
        }
        Some(inner) => {
            let hw = inner.outputs();
            inner.forward(x, xi, a);
            if scale.is_empty() {
                h.iter_mut()
                    .zip(a.iter())
                    .for_each(|(hv, &av)| *hv = av.max(0.0));
            } else {
                for ((hv, &av), &s) in h.iter_mut().zip(a.iter()).zip(scale) {
                    *hv = av.max(0.0) * s;
                }
            }
            net.dense.forward(h, iota, z);
            let stats = cross_entropy(z, y, c, Some((dz, inv_b)));
            if !stats.loss_sum.is_finite() {
                return stats;
            }
            kernels::weight_grad(h, hw, iota, dz, c, &mut grads[DENSE_K]);
            kernels::input_grad(dz, c, &net.dense.wt, dh);
            if scale.is_empty() {
                for (g, &av) in dh.iter_mut().zip(a.iter()) {
                    *g = if av > 0.0 { *g } else { 0.0 };
                }
            } else {
                for ((g, &av), &s) in dh.iter_mut().zip(a.iter()).zip(scale) {
                    *g = if av > 0.0 { *g * s } else { 0.0 };
                }
            }
            kernels::weight_grad(x, inner.inputs, xi, dh, hw, &mut grads[INNER_K]);
            stats
        }
    }
}

impl Work {
    fn new(net: &Net, rows: usize, dropout: f32, seed: u64) -> Work {
        let (d, hw, c) = (net.inputs(), net.hidden(), net.classes());
        // Dropout acts on the output layer's inputs: the inner layer's
        // outputs, or the vectors without one.
        let dropped = if dropout > 0.0 {
            rows * net.dense.inputs
        } else {
            0
        };
        let rows_h = rows.max(EVAL_ROWS);
        Work {
            dropout,
            xb: vec![0.0; rows * d],
            yb: Vec::with_capacity(rows),
            a: vec![0.0; rows * hw],
            h: vec![0.0; rows_h * hw],
            bits: vec![0; dropped],
            scale: vec![0.0; dropped],
            z: vec![0.0; rows_h * c],
            dz: vec![0.0; rows * c],
            dh: vec![0.0; rows * hw],
            grads: net.sizes().map(|n| vec![0.0; n]),
            grads_b: net.sizes().map(|n| vec![0.0; n]),
            iota: (0..rows_h).collect(),
            // A stream apart from the init (ChaCha stream 0) and shuffling (1).
            rng: SplitMix64(seed ^ 0xD20F_0D20_F0D2_0F0D),
            halve_rows: HALVE_ROWS,
        }
    }

    /// One forward/backward pass and Adam step on rows `idx` of `split`.
    /// Returns the batch's numbers before the update; a non-finite loss
    /// skips the update.
    ///
    /// Every row's forward pass, loss and share of the weight gradients is
    /// independent of the others', so a big enough batch runs as two halves
    /// side by side ([`rayon::join`]), each into its own gradient buffers,
    /// summed before the update. Whether a batch is halved depends only on
    /// its shape, never on the number of threads, so a run's numbers are
    /// the same on every machine.
    fn step(&mut self, net: &mut Net, adam: &mut Adam, split: &Split, idx: &[usize]) -> BatchStats {
        let Work {
            dropout,
            xb,
            yb,
            a,
            h,
            bits,
            scale,
            z,
            dz,
            dh,
            grads,
            grads_b,
            iota,
            rng,
            halve_rows,
        } = self;
        let p = *dropout;
        let (d, hw, c) = (net.inputs(), net.hidden(), net.classes());
        let b = idx.len();
        yb.clear();
        yb.extend(idx.iter().map(|&i| split.y[i]));
        // Dropout factors for the whole batch, drawn in one stream, for the
        // output layer's inputs.
        let dropped = if p > 0.0 { b * net.dense.inputs } else { 0 };
        if dropped > 0 {
            dropout_scales(rng, &mut bits[..dropped], &mut scale[..dropped], p);
        }
        // The rows the first layer reads, and their indexes.
        let (x, xi): (&[f32], &[usize]) = if hw == 0 && p > 0.0 {
            for (k, &i) in idx.iter().enumerate() {
                xb[k * d..(k + 1) * d].copy_from_slice(&split.x[i * d..(i + 1) * d]);
            }
            xb[..b * d]
                .iter_mut()
                .zip(&scale[..b * d])
                .for_each(|(v, s)| *v *= s);
            (&xb[..b * d], &iota[..b])
        } else {
            (&split.x, idx)
        };
        let net_ref: &Net = net;
        let half = if b >= *halve_rows && d * (c + hw) >= HALVE_WORK {
            b / 2
        } else {
            b
        };
        let bufs = Rows {
            z: &mut z[..b * c],
            dz: &mut dz[..b * c],
            a: &mut a[..b * hw],
            h: &mut h[..b * hw],
            dh: &mut dh[..b * hw],
            scale: if hw > 0 && p > 0.0 {
                &scale[..b * hw]
            } else {
                &[]
            },
        };
        let (first, second) = bufs.split_at(half, c, hw);
        let (xa, xb2) = xi.split_at(half);
        let (ya, yb2) = yb.split_at(half);
        let inv_b = 1.0 / b as f32;
        let stats = if half == b {
            rows_pass(net_ref, x, xa, ya, first, &iota[..b], inv_b, grads)
        } else {
            let (sa, sb) = rayon::join(
                || rows_pass(net_ref, x, xa, ya, first, &iota[..half], inv_b, grads),
                || {
                    rows_pass(
                        net_ref,
                        x,
                        xb2,
                        yb2,
                        second,
                        &iota[..b - half],
                        inv_b,
                        grads_b,
                    )
                },
            );
            BatchStats {
                loss_sum: sa.loss_sum + sb.loss_sum,
                correct: sa.correct + sb.correct,
            }
        };
        if !stats.loss_sum.is_finite() {
            return stats;
        }
        if half < b {
            for t in [INNER_K, DENSE_K] {
                grads[t]
                    .iter_mut()
                    .zip(&grads_b[t])
                    .for_each(|(g, o)| *g += o);
            }
        }
        let [g_ik, g_ib, g_dk, g_db] = grads;
        column_sums(&dz[..b * c], c, g_db);
        if hw > 0 {
            column_sums(&dh[..b * hw], hw, g_ib);
        }
        let s = adam.begin_step();
        if let Some(inner) = net.inner.as_mut() {
            adam.update(s, INNER_K, &mut inner.wt, g_ik);
            adam.update(s, INNER_B, &mut inner.bias, g_ib);
        }
        adam.update(s, DENSE_K, &mut net.dense.wt, g_dk);
        adam.update(s, DENSE_B, &mut net.dense.bias, g_db);
        stats
    }

    /// Mean loss and accuracy of `net` on a whole split, no dropout.
    fn evaluate(&mut self, net: &Net, split: &Split) -> (f32, f32) {
        let (d, c) = (net.inputs(), net.classes());
        let mut total = BatchStats {
            loss_sum: 0.0,
            correct: 0,
        };
        let n = split.len();
        for start in (0..n).step_by(EVAL_ROWS) {
            let b = EVAL_ROWS.min(n - start);
            let x = &split.x[start * d..(start + b) * d];
            let (z, iota) = (&mut self.z[..b * c], &self.iota[..b]);
            match &net.inner {
                None => net.dense.forward(x, iota, z),
                Some(inner) => {
                    let h = &mut self.h[..b * inner.outputs()];
                    inner.forward(x, iota, h);
                    h.iter_mut().for_each(|v| *v = v.max(0.0));
                    net.dense.forward(h, iota, z);
                }
            }
            let s = cross_entropy(z, &split.y[start..start + b], c, None);
            total.loss_sum += s.loss_sum;
            total.correct += s.correct;
        }
        (
            (total.loss_sum / n as f64) as f32,
            (total.correct as f64 / n as f64) as f32,
        )
    }
}

/// Which view each training image shows in each epoch: per image, the
/// views `0..=K` in a random order, one per epoch, reshuffled every `K + 1`
/// epochs and never the same view in two epochs running. Draws come from
/// their own stream of the seed (ChaCha8 stream 2; the initial weights use
/// 0 and the shuffling 1), image after image, so the choice depends only
/// on the seed, K and the number of images.
pub(crate) struct ViewSchedule {
    k: usize,
    /// `n × (K + 1)`: the current cycle's order of each image's views.
    order: Vec<u32>,
    rng: ChaCha8Rng,
    epoch: usize,
}

impl ViewSchedule {
    pub(crate) fn new(n: usize, k: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(2);
        ViewSchedule {
            k,
            order: (0..n).flat_map(|_| 0..=k as u32).collect(),
            rng,
            epoch: 0,
        }
    }

    /// The view of every image for the next epoch.
    pub(crate) fn next_epoch(&mut self, picks: &mut [u32]) {
        let w = self.k + 1;
        let pos = self.epoch % w;
        if pos == 0 {
            for views in self.order.chunks_exact_mut(w) {
                let last = views[w - 1];
                views.shuffle(&mut self.rng);
                if w > 1 && self.epoch > 0 && views[0] == last {
                    views.swap(0, 1);
                }
            }
        }
        for (p, views) in picks.iter_mut().zip(self.order.chunks_exact(w)) {
            *p = views[pos];
        }
        self.epoch += 1;
    }
}

/// Copies view `picks[i]` of each row `i` of `train` into `out`.
fn gather(train: &Split, views: &Views, picks: &[u32], out: &mut [f32]) {
    let (d, k) = (train.x.len() / train.len().max(1), views.k);
    for (i, (&v, row)) in picks.iter().zip(out.chunks_exact_mut(d)).enumerate() {
        let src = match v {
            0 => &train.x[i * d..(i + 1) * d],
            v => {
                let slot = i * k + v as usize - 1;
                &views.x[slot * d..(slot + 1) * d]
            }
        };
        row.copy_from_slice(src);
    }
}

/// One epoch's numbers, for progress output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EpochLog {
    pub(crate) epoch: usize,
    pub(crate) loss: f32,
    pub(crate) accuracy: f32,
    pub(crate) val_loss: f32,
    pub(crate) val_accuracy: f32,
}

/// Fits `head` (initial weights) with Adam(`adam`) and `dropout`, calling
/// `on_epoch` after each epoch.
///
/// # Errors
/// [`Error::Config`] when the head does not fit the data (dimension or
/// class count), which the caller normally rules out first.
pub(crate) fn fit(
    head: Head,
    train: &Split,
    val: &Split,
    adam: AdamParams,
    dropout: f64,
    opts: FitOptions,
    mut on_epoch: impl FnMut(&EpochLog),
) -> Result<Fit> {
    if train.x.len() != train.len() * head.dim() || val.x.len() != val.len() * head.dim() {
        return Err(Error::config(
            "init",
            "head input width differs from the vectors'",
        ));
    }
    let n = train.len();
    let rows = opts.batch_size.min(n).max(1);
    let mut net = Net::from_head(&head);
    let mut work = Work::new(&net, rows, dropout as f32, opts.seed);
    let mut adam = Adam::new(adam, &net.sizes());
    let mut order: Vec<usize> = (0..n).collect();
    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(opts.seed);
    shuffle_rng.set_stream(1);
    let mut fit = Fit {
        history: History::default(),
        best: None,
        last: None,
        outcome: Outcome::Finished,
    };
    let mut best_accuracy = f32::NEG_INFINITY;
    // Augmented views: this epoch's rows, gathered (none drawn when K = 0).
    let mut epoch_views = train.views.as_ref().filter(|v| v.k > 0).map(|v| {
        let split = Split {
            name: train.name.clone(),
            source: train.source.clone(),
            x: train.x.clone(),
            y: train.y.clone(),
            views: None,
        };
        (
            v,
            ViewSchedule::new(n, v.k, opts.seed),
            vec![0u32; n],
            split,
        )
    });
    for epoch in 1..=opts.epochs {
        if opts.shuffle {
            order.shuffle(&mut shuffle_rng);
        }
        let rows_of_epoch: &Split = match &mut epoch_views {
            Some((views, schedule, picks, split)) => {
                schedule.next_epoch(picks);
                gather(train, views, picks, &mut split.x);
                split
            }
            None => train,
        };
        let (mut loss_sum, mut correct) = (0.0f64, 0usize);
        for (i, idx) in order.chunks(rows).enumerate() {
            let s = work.step(&mut net, &mut adam, rows_of_epoch, idx);
            if !s.loss_sum.is_finite() {
                fit.outcome = Outcome::Diverged {
                    epoch,
                    batch: i + 1,
                };
                return Ok(fit);
            }
            loss_sum += s.loss_sum;
            correct += s.correct;
        }
        let (val_loss, val_accuracy) = work.evaluate(&net, val);
        if !val_loss.is_finite() {
            fit.outcome = Outcome::Diverged { epoch, batch: 0 };
            return Ok(fit);
        }
        let log = EpochLog {
            epoch,
            loss: (loss_sum / n as f64) as f32,
            accuracy: (correct as f64 / n as f64) as f32,
            val_loss,
            val_accuracy,
        };
        let h = &mut fit.history;
        h.loss.push(log.loss);
        h.accuracy.push(log.accuracy);
        h.val_loss.push(log.val_loss);
        h.val_accuracy.push(log.val_accuracy);
        on_epoch(&log);
        let now = net.to_head(&head);
        if val_accuracy > best_accuracy {
            best_accuracy = val_accuracy;
            fit.best = Some((epoch, now.clone()));
        }
        fit.last = Some(now);
    }
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::Dense;
    use approx::assert_abs_diff_eq;
    use xfer_features::FeatureMeta;

    fn split(x: Vec<f32>, y: Vec<u32>) -> Split {
        Split {
            name: "s".into(),
            source: "s.parquet".into(),
            x,
            y,
            views: None,
        }
    }

    #[test]
    fn view_schedule_visits_every_view_and_never_repeats() {
        let (n, k) = (50, 3);
        let mut s = ViewSchedule::new(n, k, 7);
        let mut picks = vec![0u32; n];
        let mut seen: Vec<Vec<u32>> = vec![Vec::new(); n];
        for _ in 0..4 * (k + 1) {
            s.next_epoch(&mut picks);
            for (i, &p) in picks.iter().enumerate() {
                assert!(p as usize <= k);
                if let Some(&last) = seen[i].last() {
                    assert_ne!(p, last, "image {i} repeats a view");
                }
                seen[i].push(p);
            }
        }
        for views in &seen {
            for cycle in views.chunks(k + 1) {
                let mut c = cycle.to_vec();
                c.sort_unstable();
                assert_eq!(c, [0, 1, 2, 3], "each cycle shows every view once");
            }
        }
        // Not all images in step, and the same seed draws the same views.
        assert!(seen.iter().any(|v| v != &seen[0]));
        let mut again = ViewSchedule::new(n, k, 7);
        again.next_epoch(&mut picks);
        assert_eq!(picks, seen.iter().map(|v| v[0]).collect::<Vec<_>>());
        // K = 0: always the plain row.
        let mut plain = ViewSchedule::new(n, 0, 7);
        plain.next_epoch(&mut picks);
        plain.next_epoch(&mut picks);
        assert!(picks.iter().all(|&p| p == 0));
    }

    #[test]
    fn views_feed_the_epochs_and_k0_is_the_plain_run() {
        let meta = FeatureMeta::new(vec!["a".into(), "b".into()], 2);
        let x: Vec<f32> = (0..40)
            .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
            .collect();
        let y: Vec<u32> = (0..20).map(|i| (i % 2) as u32).collect();
        let plain = split(x.clone(), y.clone());
        let opts = FitOptions {
            epochs: 4,
            batch_size: 8,
            shuffle: true,
            seed: 3,
        };
        let run = |s: &Split| {
            let head = Head::glorot(meta.clone(), None, 3);
            fit(head, s, &plain, AdamParams::default(), 0.0, opts, |_| {}).unwrap()
        };
        let base = run(&plain);
        let mut k0 = split(x.clone(), y.clone());
        k0.views = Some(Views {
            k: 0,
            x: Vec::new(),
            source: "v.parquet".into(),
        });
        assert_eq!(run(&k0).history, base.history);
        let mut k2 = split(x.clone(), y);
        k2.views = Some(Views {
            k: 2,
            x: x.chunks(2)
                .flat_map(|r| [r[0] + 1.0, r[1] + 1.0, r[0] - 1.0, r[1] - 1.0])
                .collect(),
            source: "v.parquet".into(),
        });
        let a = run(&k2);
        assert_ne!(a.history, base.history, "views change the training rows");
        assert_eq!(a.history, run(&k2).history, "deterministic");
    }

    /// One epoch of one batch against Keras 3.15 (JAX), computed with:
    ///
    /// ```python
    /// x = (np.arange(20, dtype="float32").reshape(5, 4) % 7 - 3) / 4
    /// y = np.array([0, 2, 1, 2, 0])
    /// k = (np.arange(12, dtype="float32").reshape(4, 3) % 5 - 2) / 10
    /// model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    /// model.layers[0].set_weights([k, np.zeros(3, "float32")])
    /// model.compile(optimizer=keras.optimizers.Adam(0.1),
    ///               loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    ///               metrics=["accuracy"])
    /// h = model.fit(x, keras.utils.to_categorical(y, 3), batch_size=5,
    ///               epochs=1, shuffle=False, verbose=0)
    /// print(h.history, model.layers[0].get_weights())
    /// ```
    #[test]
    fn one_step_equals_keras() {
        let x: Vec<f32> = (0..20).map(|i| ((i % 7) as f32 - 3.0) / 4.0).collect();
        let y = vec![0, 2, 1, 2, 0];
        let k: Vec<f32> = (0..12).map(|i| ((i % 5) as f32 - 2.0) / 10.0).collect();
        let meta = FeatureMeta::new(vec!["a".into(), "b".into(), "c".into()], 4);
        let dense = Dense {
            inputs: 4,
            outputs: 3,
            kernel: k,
            bias: vec![0.0; 3],
        };
        let head = Head::from_layers(meta, None, dense).unwrap();
        let s = split(x, y);
        let opts = FitOptions {
            epochs: 1,
            batch_size: 5,
            shuffle: false,
            seed: 0,
        };
        let adam = AdamParams {
            lr: 0.1,
            ..AdamParams::default()
        };
        let fit = fit(head, &s, &s, adam, 0.0, opts, |_| {}).unwrap();
        assert_abs_diff_eq!(
            fit.history.loss[0] as f64,
            1.1127443313598633,
            epsilon = 1e-6
        );
        assert_abs_diff_eq!(
            fit.history.accuracy[0] as f64,
            0.4000000059604645,
            epsilon = 1e-7
        );
        let keras_kernel = [
            -0.2999970018863678,
            -0.199994757771492,
            0.09999778866767883,
            3.3080577850341797e-06,
            0.1000036746263504,
            -0.10000207275152206,
            -4.0784478187561035e-05,
            0.09894406050443649,
            3.933161497116089e-05,
            0.29999658465385437,
            -0.1000036671757698,
            -0.1999979019165039,
        ];
        let keras_bias = [
            0.09999459236860275,
            -0.0999971479177475,
            0.09999532997608185,
        ];
        let last = fit.last.unwrap();
        for (a, b) in last.dense.kernel.iter().zip(keras_kernel) {
            assert_abs_diff_eq!(*a as f64, b, epsilon = 1e-6);
        }
        for (a, b) in last.dense.bias.iter().zip(keras_bias) {
            assert_abs_diff_eq!(*a as f64, b, epsilon = 1e-6);
        }
    }

    /// The backward pass through relu and dropout agrees with finite
    /// differences of the loss (dropout masks fixed by reseeding).
    #[test]
    fn inner_gradient_matches_finite_differences() {
        let meta = FeatureMeta::new(vec!["a".into(), "b".into(), "c".into()], 5);
        let head = Head::glorot(meta, Some(4), 3);
        let x: Vec<f32> = (0..30)
            .map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0)
            .collect();
        let s = split(x, vec![0, 1, 2, 0, 1, 2]);
        let idx: Vec<usize> = (0..6).collect();
        let grads = |head: &Head| {
            let mut net = Net::from_head(head);
            let mut w = Work::new(&net, 6, 0.25, 9);
            // lr tiny: we only read the gradients the step computed
            let mut adam = Adam::new(
                AdamParams {
                    lr: 1e-30,
                    ..AdamParams::default()
                },
                &net.sizes(),
            );
            let st = w.step(&mut net, &mut adam, &s, &idx);
            (st.loss_sum / 6.0, w.grads)
        };
        let (_, g) = grads(&head);
        let eps = 1e-2f32;
        for (t, k) in [
            (INNER_K, 3),
            (INNER_K, 6),
            (INNER_B, 1),
            (DENSE_K, 5),
            (DENSE_K, 7),
            (DENSE_B, 2),
        ] {
            let bump = |delta: f32| {
                let mut h = head.clone();
                let inner = h.inner.as_mut().unwrap();
                match t {
                    INNER_K => inner.kernel[k] += delta,
                    INNER_B => inner.bias[k] += delta,
                    DENSE_K => h.dense.kernel[k] += delta,
                    _ => h.dense.bias[k] += delta,
                }
                grads(&h).0
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps as f64);
            // Kernel gradients are output-major: Keras's [k / outputs,
            // k % outputs] is [k % outputs][k / outputs].
            let layer = if t < DENSE_K {
                head.inner.as_ref().unwrap()
            } else {
                &head.dense
            };
            let at = match t {
                INNER_K | DENSE_K => (k % layer.outputs) * layer.inputs + k / layer.outputs,
                _ => k,
            };
            assert_abs_diff_eq!(g[t][at] as f64, numeric, epsilon = 2e-3);
        }
    }

    /// A halved batch (two threads) computes the gradients of the whole
    /// batch, with and without an inner layer and dropout.
    #[test]
    fn halved_batches_give_the_whole_batchs_gradients() {
        let (n, d) = (20, 1024);
        let meta = FeatureMeta::new((0..10).map(|i| format!("c{i}")).collect(), d);
        let x: Vec<f32> = (0..n * d)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let s = split(x, (0..n).map(|i| (i % 10) as u32).collect());
        let idx: Vec<usize> = (0..n).rev().collect();
        assert!(
            n >= HALVE_ROWS && d * 10 >= HALVE_WORK,
            "the batch is halved"
        );
        for (inner, p) in [(None, 0.0), (None, 0.3), (Some(16), 0.0), (Some(16), 0.5)] {
            let head = Head::glorot(meta.clone(), inner, 4);
            let grads = |halve_rows: usize| {
                let mut net = Net::from_head(&head);
                let mut w = Work::new(&net, n, p, 9);
                w.halve_rows = halve_rows;
                let params = AdamParams {
                    lr: 1e-30,
                    ..AdamParams::default()
                };
                let mut adam = Adam::new(params, &net.sizes());
                let st = w.step(&mut net, &mut adam, &s, &idx);
                (st, w.grads)
            };
            let (whole, gw) = grads(usize::MAX);
            let (halved, gh) = grads(HALVE_ROWS);
            assert_eq!(whole.correct, halved.correct);
            assert_abs_diff_eq!(whole.loss_sum, halved.loss_sum, epsilon = 1e-4);
            for (a, b) in gw.iter().zip(&gh) {
                assert_eq!(a.len(), b.len());
                for (u, v) in a.iter().zip(b) {
                    assert_abs_diff_eq!(*u, *v, epsilon = 1e-5);
                }
            }
        }
    }

    #[test]
    fn dropout_drops_p_and_keeps_the_mean() {
        let mut rng = SplitMix64(4);
        let n = 100_001;
        let (mut bits, mut scale) = (vec![0u16; n], vec![0f32; n]);
        dropout_scales(&mut rng, &mut bits, &mut scale, 0.3);
        let dropped = scale.iter().filter(|&&s| s == 0.0).count() as f64 / n as f64;
        assert_abs_diff_eq!(dropped, 0.3, epsilon = 0.01);
        let mean = scale.iter().map(|&s| s as f64).sum::<f64>() / n as f64;
        assert_abs_diff_eq!(mean, 1.0, epsilon = 0.02);
        assert!(scale
            .iter()
            .all(|&s| s == 0.0 || (s - 1.0 / 0.7).abs() < 1e-6));
    }

    #[test]
    fn diverging_run_stops_with_its_epoch() {
        let meta = FeatureMeta::new(vec!["a".into(), "b".into()], 2);
        let head = Head::glorot(meta, Some(8), 1);
        let x: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 1e3).collect();
        let y = (0..20).map(|i| (i % 2) as u32).collect();
        let s = split(x, y);
        let opts = FitOptions {
            epochs: 50,
            batch_size: 4,
            shuffle: true,
            seed: 1,
        };
        let adam = AdamParams {
            lr: 1e30,
            ..AdamParams::default()
        };
        let fit = fit(head, &s, &s, adam, 0.0, opts, |_| {}).unwrap();
        assert!(
            matches!(fit.outcome, Outcome::Diverged { .. }),
            "{:?}",
            fit.outcome
        );
        assert!(fit.history.loss.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn learns_a_separable_problem_and_keeps_the_best_epoch() {
        let meta = FeatureMeta::new(vec!["a".into(), "b".into()], 2);
        let head = Head::glorot(meta, None, 5);
        let x: Vec<f32> = (0..100)
            .flat_map(|i| if i % 2 == 0 { [1.0, 0.2] } else { [-1.0, 0.1] })
            .collect();
        let y = (0..100).map(|i| (i % 2) as u32).collect();
        let s = split(x, y);
        let opts = FitOptions {
            epochs: 5,
            batch_size: 16,
            shuffle: true,
            seed: 2,
        };
        let fit = fit(head, &s, &s, AdamParams::default(), 0.0, opts, |_| {}).unwrap();
        assert_eq!(fit.outcome, Outcome::Finished);
        assert_eq!(fit.history.epochs(), 5);
        assert_eq!(*fit.history.val_accuracy.last().unwrap(), 1.0);
        let (best, _) = fit.best.unwrap();
        let first_max = fit
            .history
            .val_accuracy
            .iter()
            .position(|&v| v == 1.0)
            .unwrap()
            + 1;
        assert_eq!(best, first_max);
    }
}
