//! The products of training, on rows picked by index, with output-major
//! weights.
//!
//! A training step of a `Dense(C)` head on 2048-wide vectors is two thin
//! products per batch: `z = x·W` (32×2048 by 2048×10) and `g = xᵀ·dz`. A
//! general sgemm is a poor fit for them: it first gathers the shuffled rows
//! into a batch, then packs both operands into its own panels (copying the
//! 256 KB batch twice per product), and a 10-wide output fills its register
//! tiles badly. Here the batch is never copied: the kernels read each row
//! where it lies in the split (`x[idx[i]·d..]`), and the weights are kept
//! *output-major* (`wt[j·d..(j+1)·d]` is output `j`'s weights, the transpose
//! of Keras's layout), so the forward product is dot products of two
//! contiguous rows and the weight gradient is scaled row sums.
//!
//! Each kernel works on register tiles (several rows by several outputs,
//! a vector of floats at a time, one accumulator per tile entry). On x86-64
//! CPUs with AVX-512, or AVX2 and FMA (picked at run time), they run as
//! intrinsics ([`x86`]); elsewhere as the portable loops below, compiled
//! for the CPU's vector level with [`multiversion`], which the tests also
//! use as the reference. Summation order differs from Keras's BLAS, as any two
//! BLAS differ: results agree to float32 rounding.
// Tiles index several arrays in step; index loops say so most plainly.
#![allow(clippy::needless_range_loop)]

use multiversion::multiversion;
use multiversion::target::target_cfg_f;

#[cfg(target_arch = "x86_64")]
mod x86;

/// Which kernels run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Portable,
    Avx2,
    Avx512,
}

/// Every level this CPU runs, lowest first.
fn levels_here() -> Vec<Level> {
    let mut levels = vec![Level::Portable];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            levels.push(Level::Avx2);
        }
        if is_x86_feature_detected!("avx512f") {
            levels.push(Level::Avx512);
        }
    }
    levels
}

/// The variable that caps the kernel level (to compare levels).
const SIMD_VAR: &str = "XFER_SIMD";

/// The highest level `XFER_SIMD` allows: `avx512`, `avx2` or `portable`;
/// unset or empty allows all.
fn cap(value: Option<&str>) -> std::result::Result<Level, String> {
    match value.unwrap_or("") {
        "" | "avx512" => Ok(Level::Avx512),
        "avx2" => Ok(Level::Avx2),
        "portable" => Ok(Level::Portable),
        other => Err(other.to_string()),
    }
}

/// `XFER_SIMD` as set, `Err` with its text when it is not a level.
fn env_cap() -> std::result::Result<Level, String> {
    match std::env::var(SIMD_VAR) {
        Ok(v) => cap(Some(&v)),
        Err(std::env::VarError::NotPresent) => cap(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(v.to_string_lossy().into_owned()),
    }
}

/// Refuses an `XFER_SIMD` that names no kernel level, so a typo does not
/// silently run the default kernels. Every command that runs the kernels
/// calls it before any work.
///
/// # Errors
/// [`crate::Error::Env`] with the value and the levels there are.
pub fn check_env() -> crate::Result<()> {
    env_cap().map(|_| ()).map_err(|value| crate::Error::Env {
        var: SIMD_VAR,
        value,
        reason: "not a kernel level; use avx512, avx2 or portable (each caps the level, \
                 the CPU may run a lower one), or unset it for the best this CPU runs"
            .into(),
    })
}

/// The best kernels this CPU runs (checked once, then cached), at most the
/// level `XFER_SIMD` names (`avx2` or `portable`, to compare; refused by
/// [`check_env`] when it names none).
fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let cap = env_cap().unwrap_or(Level::Avx512);
        levels_here()
            .into_iter()
            .filter(|&l| l <= cap)
            .max()
            .unwrap_or(Level::Portable)
    })
}

/// Every row index inside `x`: what makes the intrinsics' reads safe.
fn check_rows(x: &[f32], d: usize, idx: &[usize], what: &str) {
    let rows = x.len() / d.max(1);
    assert!(
        idx.iter().all(|&r| r < rows),
        "{what}: a row index is past the {rows} rows"
    );
}

/// `z[i][j] = bias[j] + x[idx[i]] · wt[j]` for every `i < idx.len()` and
/// `j < bias.len()`: the forward product of a dense layer whose kernel is
/// `wt` (`c × d`, output-major), on rows `idx` of the `d`-wide matrix `x`.
pub(crate) fn forward(x: &[f32], d: usize, idx: &[usize], wt: &[f32], bias: &[f32], z: &mut [f32]) {
    forward_with(level(), x, d, idx, wt, bias, z);
}

/// [`forward`] with the kernels of `level` (which the CPU must have).
fn forward_with(
    level: Level,
    x: &[f32],
    d: usize,
    idx: &[usize],
    wt: &[f32],
    bias: &[f32],
    z: &mut [f32],
) {
    assert_eq!(wt.len(), bias.len() * d, "forward: kernel is c × d");
    assert!(z.len() >= idx.len() * bias.len(), "forward: z holds n × c");
    check_rows(x, d, idx, "forward");
    // SAFETY: shapes and row indexes checked above; `level` checked the
    // CPU's features.
    #[allow(unsafe_code)]
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::avx512::forward(x, d, idx, wt, bias, z) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::avx2::forward(x, d, idx, wt, bias, z) },
        _ => portable_forward(x, d, idx, wt, bias, z),
    }
}

/// `g[j] = Σ_i dz[i][j] · x[idx[i]]` (`g`: `c × d`, output-major; `dz`:
/// `n × c`): the weight gradient of a dense layer, `xᵀ·dz` transposed.
pub(crate) fn weight_grad(x: &[f32], d: usize, idx: &[usize], dz: &[f32], c: usize, g: &mut [f32]) {
    weight_grad_with(level(), x, d, idx, dz, c, g);
}

/// [`weight_grad`] with the kernels of `level` (which the CPU must have).
fn weight_grad_with(
    level: Level,
    x: &[f32],
    d: usize,
    idx: &[usize],
    dz: &[f32],
    c: usize,
    g: &mut [f32],
) {
    assert_eq!(g.len(), c * d, "weight_grad: g is c × d");
    assert!(dz.len() >= idx.len() * c, "weight_grad: dz holds n × c");
    check_rows(x, d, idx, "weight_grad");
    // SAFETY: as in `forward`.
    #[allow(unsafe_code)]
    match level {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { x86::avx512::weight_grad(x, d, idx, dz, c, g) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { x86::avx2::weight_grad(x, d, idx, dz, c, g) },
        _ => portable_weight_grad(x, d, idx, dz, c, g),
    }
}

/// Floats per accumulator of the portable kernels.
const LANES: usize = 16;

/// `a·b + c`, fused when the CPU version being compiled has FMA (one
/// rounding, twice the throughput), two operations otherwise (a software
/// `fma` call would be far slower).
#[inline(always)]
fn mac(a: f32, b: f32, c: f32, fused: bool) -> f32 {
    if fused {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// [`LANES`] floats that the compiler keeps in vector registers: each
/// operation is a fully unrolled lane loop, which it turns into one vector
/// instruction (or two, on AVX2).
#[derive(Clone, Copy)]
struct V([f32; LANES]);

impl V {
    const ZERO: V = V([0.0; LANES]);

    #[inline(always)]
    fn load(s: &[f32], at: usize) -> V {
        V(s[at..at + LANES].try_into().expect("a lane chunk"))
    }

    #[inline(always)]
    fn splat(v: f32) -> V {
        V([v; LANES])
    }

    /// `self·b + c`, lane by lane.
    #[inline(always)]
    fn mac(self, b: V, c: V, fused: bool) -> V {
        let mut r = [0.0; LANES];
        for l in 0..LANES {
            r[l] = mac(self.0[l], b.0[l], c.0[l], fused);
        }
        V(r)
    }

    #[inline(always)]
    fn sum(self) -> f32 {
        self.0.iter().sum()
    }
}

/// Dot products of `R` rows with `O` weight rows: `out[r][o] = xs[r]·ws[o]`.
#[inline(always)]
fn dot_tile<const R: usize, const O: usize>(
    xs: [&[f32]; R],
    ws: [&[f32]; O],
    fused: bool,
) -> [[f32; O]; R] {
    let d = ws[0].len();
    let chunks = d / LANES;
    let body = chunks * LANES;
    let mut acc = [[V::ZERO; O]; R];
    for k in (0..chunks).map(|k| k * LANES) {
        let xk: [V; R] = xs.map(|x| V::load(x, k));
        for o in 0..O {
            let w = V::load(ws[o], k);
            for r in 0..R {
                acc[r][o] = xk[r].mac(w, acc[r][o], fused);
            }
        }
    }
    let mut out = [[0.0f32; O]; R];
    for r in 0..R {
        for o in 0..O {
            let mut s: f32 = acc[r][o].sum();
            for k in body..d {
                s = mac(xs[r][k], ws[o][k], s, fused);
            }
            out[r][o] = s;
        }
    }
    out
}

/// Row `i` of a `width`-wide row-major matrix.
#[inline(always)]
fn row(x: &[f32], width: usize, i: usize) -> &[f32] {
    &x[i * width..(i + 1) * width]
}

/// Outputs `j0..j0+O` of rows `i0..i0+R` into `z` (`n × c`), bias added.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_tile<const R: usize, const O: usize>(
    x: &[f32],
    d: usize,
    idx: &[usize],
    wt: &[f32],
    bias: &[f32],
    z: &mut [f32],
    (i0, j0): (usize, usize),
    fused: bool,
) {
    let c = bias.len();
    let xs: [&[f32]; R] = std::array::from_fn(|r| row(x, d, idx[i0 + r]));
    let ws: [&[f32]; O] = std::array::from_fn(|o| row(wt, d, j0 + o));
    let t = dot_tile::<R, O>(xs, ws, fused);
    for r in 0..R {
        for o in 0..O {
            z[(i0 + r) * c + j0 + o] = t[r][o] + bias[j0 + o];
        }
    }
}

/// Rows `i0..i0+R` against every output, in tiles of 8, 4 and 1 outputs.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn forward_rows<const R: usize>(
    x: &[f32],
    d: usize,
    idx: &[usize],
    wt: &[f32],
    bias: &[f32],
    z: &mut [f32],
    i0: usize,
    fused: bool,
) {
    let c = bias.len();
    let mut j = 0;
    while j + 8 <= c {
        forward_tile::<R, 8>(x, d, idx, wt, bias, z, (i0, j), fused);
        j += 8;
    }
    while j + 4 <= c {
        forward_tile::<R, 4>(x, d, idx, wt, bias, z, (i0, j), fused);
        j += 4;
    }
    while j < c {
        forward_tile::<R, 1>(x, d, idx, wt, bias, z, (i0, j), fused);
        j += 1;
    }
}

/// [`forward`] as portable loops (shapes checked by `forward_with`).
#[multiversion(targets = "simd")]
fn portable_forward(x: &[f32], d: usize, idx: &[usize], wt: &[f32], bias: &[f32], z: &mut [f32]) {
    let fused = target_cfg_f!(target_feature = "fma");
    let n = idx.len();
    let mut i = 0;
    while i + 2 <= n {
        forward_rows::<2>(x, d, idx, wt, bias, z, i, fused);
        i += 2;
    }
    if i < n {
        forward_rows::<1>(x, d, idx, wt, bias, z, i, fused);
    }
}

/// `g[j0+o][k..k+W]` for `O` outputs and `W = LANES·P` columns from `k`:
/// `Σ_i dz[i][j0+o] · x[idx[i]][k..k+W]`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tile<const O: usize, const P: usize>(
    x: &[f32],
    d: usize,
    idx: &[usize],
    dz: &[f32],
    c: usize,
    g: &mut [f32],
    (j0, k): (usize, usize),
    fused: bool,
) {
    let mut acc = [[V::ZERO; P]; O];
    let dz = &dz[..idx.len() * c];
    for (&r, dzi) in idx.iter().zip(dz.chunks_exact(c)) {
        let xr = &x[r * d + k..r * d + k + LANES * P];
        let dzi = &dzi[j0..j0 + O];
        let xp: [V; P] = std::array::from_fn(|p| V::load(xr, p * LANES));
        for o in 0..O {
            let s = V::splat(dzi[o]);
            for p in 0..P {
                acc[o][p] = s.mac(xp[p], acc[o][p], fused);
            }
        }
    }
    for o in 0..O {
        let out = &mut g[(j0 + o) * d + k..(j0 + o) * d + k + LANES * P];
        for p in 0..P {
            out[p * LANES..(p + 1) * LANES].copy_from_slice(&acc[o][p].0);
        }
    }
}

/// Columns `k..k + LANES·P` of every output, in tiles of 8, 4 and 1.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_columns<const P: usize>(
    x: &[f32],
    d: usize,
    idx: &[usize],
    dz: &[f32],
    c: usize,
    g: &mut [f32],
    k: usize,
    fused: bool,
) {
    let mut j = 0;
    while j + 8 <= c {
        grad_tile::<8, P>(x, d, idx, dz, c, g, (j, k), fused);
        j += 8;
    }
    while j + 4 <= c {
        grad_tile::<4, P>(x, d, idx, dz, c, g, (j, k), fused);
        j += 4;
    }
    while j < c {
        grad_tile::<1, P>(x, d, idx, dz, c, g, (j, k), fused);
        j += 1;
    }
}

/// [`weight_grad`] as portable loops (shapes checked by
/// `weight_grad_with`).
#[multiversion(targets = "simd")]
fn portable_weight_grad(x: &[f32], d: usize, idx: &[usize], dz: &[f32], c: usize, g: &mut [f32]) {
    let fused = target_cfg_f!(target_feature = "fma");
    let mut k = 0;
    while k + 2 * LANES <= d {
        grad_columns::<2>(x, d, idx, dz, c, g, k, fused);
        k += 2 * LANES;
    }
    while k + LANES <= d {
        grad_columns::<1>(x, d, idx, dz, c, g, k, fused);
        k += LANES;
    }
    grad_tail(x, d, idx, dz, c, g, k, fused);
}

/// [`weight_grad`] for the columns from `from` on, one value at a time:
/// what is left of `d` after the whole vectors of a kernel.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn grad_tail(
    x: &[f32],
    d: usize,
    idx: &[usize],
    dz: &[f32],
    c: usize,
    g: &mut [f32],
    from: usize,
    fused: bool,
) {
    for kk in from..d {
        for j in 0..c {
            let mut s = 0.0f32;
            for (i, &r) in idx.iter().enumerate() {
                s = mac(dz[i * c + j], x[r * d + kk], s, fused);
            }
            g[j * d + kk] = s;
        }
    }
}

/// `dh[i] = Σ_j dz[i][j] · wt[j]` (`dz`: `n × c`, `wt`: `c × h`, `dh`:
/// `n × h`): the gradient a dense layer passes back to its inputs.
#[multiversion(targets = "simd")]
pub(crate) fn input_grad(dz: &[f32], c: usize, wt: &[f32], dh: &mut [f32]) {
    let fused = target_cfg_f!(target_feature = "fma");
    let h = wt.len() / c.max(1);
    for (dzi, out) in dz.chunks_exact(c).zip(dh.chunks_exact_mut(h)) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for (&s, w) in dzi.iter().zip(wt.chunks_exact(h)) {
            for (o, &wv) in out.iter_mut().zip(w) {
                *o = mac(s, wv, *o, fused);
            }
        }
    }
}

/// `out[j·rows + i] = a[i·cols + j]`: a row-major `rows × cols` matrix
/// transposed (Keras's input-major kernel to output-major and back).
pub(crate) fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; a.len()];
    for (i, r) in a.chunks_exact(cols).enumerate() {
        for (j, &v) in r.iter().enumerate() {
            out[j * rows + i] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_levels_are_named_and_others_refused() {
        assert_eq!(cap(None), Ok(Level::Avx512));
        assert_eq!(cap(Some("")), Ok(Level::Avx512));
        assert_eq!(cap(Some("avx512")), Ok(Level::Avx512));
        assert_eq!(cap(Some("avx2")), Ok(Level::Avx2));
        assert_eq!(cap(Some("portable")), Ok(Level::Portable));
        for bad in ["bogus", "AVX2", "sse", " avx2"] {
            assert_eq!(cap(Some(bad)), Err(bad.to_string()));
        }
    }

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `got` within float32 rounding of a sum of ~2048 products.
    fn assert_close(got: f32, want: f64, shape: (usize, usize, usize), at: (usize, usize)) {
        let got = f64::from(got);
        assert!(
            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
            "shape {shape:?} at {at:?}: {got} vs {want}"
        );
    }

    /// Every shape class: widths below, at and past the lane and tile
    /// sizes, odd row counts, rows picked out of order and repeated.
    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1, 1),
        (3, 5, 2),
        (7, 16, 10),
        (2, 33, 9),
        (5, 48, 13),
        (32, 2048, 10),
        (4, 100, 100),
    ];

    #[test]
    fn forward_is_the_definition() {
        for (n, d, c) in SHAPES {
            let rows = n + 3;
            let x = values(rows * d, 1);
            let wt = values(c * d, 2);
            let bias = values(c, 3);
            let idx: Vec<usize> = (0..n).map(|i| (i * 7 + 2) % rows).collect();
            for level in levels_here() {
                let mut z = vec![f32::NAN; n * c];
                forward_with(level, &x, d, &idx, &wt, &bias, &mut z);
                for i in 0..n {
                    for j in 0..c {
                        let want: f64 = bias[j] as f64
                            + (0..d)
                                .map(|k| x[idx[i] * d + k] as f64 * wt[j * d + k] as f64)
                                .sum::<f64>();
                        assert_close(z[i * c + j], want, (n, d, c), (i, j));
                    }
                }
            }
        }
    }

    #[test]
    fn weight_grad_is_the_definition() {
        for (n, d, c) in SHAPES {
            let rows = n + 3;
            let x = values(rows * d, 4);
            let dz = values(n * c, 5);
            let idx: Vec<usize> = (0..n).map(|i| (i * 5 + 1) % rows).collect();
            for level in levels_here() {
                let mut g = vec![f32::NAN; c * d];
                weight_grad_with(level, &x, d, &idx, &dz, c, &mut g);
                for j in 0..c {
                    for k in 0..d {
                        let want: f64 = (0..n)
                            .map(|i| dz[i * c + j] as f64 * x[idx[i] * d + k] as f64)
                            .sum();
                        assert_close(g[j * d + k], want, (n, d, c), (j, k));
                    }
                }
            }
        }
    }

    #[test]
    fn input_grad_and_transpose_are_the_definition() {
        let (n, c, h) = (3, 4, 7);
        let dz = values(n * c, 6);
        let wt = values(c * h, 7);
        let mut dh = vec![f32::NAN; n * h];
        input_grad(&dz, c, &wt, &mut dh);
        for i in 0..n {
            for k in 0..h {
                let want: f32 = (0..c).map(|j| dz[i * c + j] * wt[j * h + k]).sum();
                assert!((dh[i * h + k] - want).abs() < 1e-5);
            }
        }
        let t = transpose(&wt, c, h);
        assert_eq!(t[3 * c + 2], wt[2 * h + 3]);
        assert_eq!(transpose(&t, h, c), wt);
    }
}
