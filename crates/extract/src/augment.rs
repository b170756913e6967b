//! Augmented views of the training images, as Keras's `ImageDataGenerator`
//! makes them, computed once and cached like the plain vectors.
//!
//! **Why views.** Augmentation seems to forbid caching: Keras draws a new
//! random transform of every image in every epoch. `xfer extract --augment K`
//! instead stores K transformed *views* of each training image (view 0 is the
//! plain image, in `train.parquet`; views 1..=K go to `views/train.parquet`),
//! and `xfer train --views` draws one view per image per epoch. Head
//! experiments stay as fast as without augmentation.
//!
//! **What a view is.** The pixels Keras's `DirectoryIterator` would feed the
//! model: `load_img(path, target_size=(S, S))` (PIL's resize, shared with the
//! plain path), `img_to_array` (`float32`), `random_transform` (affine
//! transform, then flips), then the model's `preprocess_input` on the
//! `float32` values, never rounded back to 8 bits. The defaults are the
//! course's last generator (lesson 8.11, the 299 model):
//! `ImageDataGenerator(shear_range=10, zoom_range=0.1, horizontal_flip=True)`;
//! rotation and shifts (lesson 8.10 tried `rotation_range=30`,
//! `width_shift_range=10`, `height_shift_range=10`) are off unless asked for.
//!
//! **Parameters** follow `ImageDataGenerator.get_random_transform`: `theta ~
//! U(-rotation, rotation)` degrees; `tx ~ U(-height_shift, height_shift)` and
//! `ty ~ U(-width_shift, width_shift)`, each times the image side when the
//! range is below 1 (a fraction), in pixels otherwise (Keras's float
//! semantics; Keras draws integers for an `int` range, we always draw
//! reals); `shear ~ U(-shear, shear)` degrees; `zx, zy ~ U(1 - zoom, 1 +
//! zoom)` independently; each flip with probability 1/2 when enabled. The
//! uniform numbers do not come from NumPy's global generator but from
//! sha256 of (seed, view, image path relative to DATA) ([`uniforms`]), so a
//! view is the same whatever the order, the threads, the sharding or K.
//!
//! **Geometry** is `apply_affine_transform`'s, matrix for matrix
//! ([`Params::matrix`]): `M = R(theta) · T(tx, ty) · Shear(shear) ·
//! Zoom(zx, zy)` in Keras's (x, y) frame, moved to the image centre (`h/2 -
//! 0.5`, `w/2 - 0.5`), x and y swapped for row-major arrays, and handed to
//! `scipy.ndimage.affine_transform(order=1)`, which maps each *output*
//! pixel to the input point it samples. Order 1 is bilinear interpolation
//! ([`warp`]); `fill_mode` `nearest` (Keras's default) clamps the point into
//! the image, `reflect` mirrors it (scipy's half-sample symmetric rule),
//! `constant` gives `cval` outside `[0, len - 1]`. One Keras quirk is kept
//! on purpose: after the swap, `tx` (drawn from the *height* shift range)
//! moves the image along columns and `ty` along rows; with equal ranges, the
//! course's setting, this makes no difference. The interpolation is ours,
//! in `f64`, rounded to `f32` as scipy's output is. Bit equality with
//! scipy is not promised (another implementation), but measured:
//! `scripts/check_augment.py` (`make check-augment`) recomputes every view
//! of sampled clothing images with Keras 3.15 and scipy 1.17 and finds no
//! difference at all, in each fill mode, at 150 and 299.
use std::fmt;

use sha2::{Digest, Sha256};

use xfer_features::FeatureMeta;

use crate::pipeline::Job;
use crate::pixels::{self, BadImage, PixelSpec, Rgb8};
use crate::walk::Item;

/// Metadata key holding the settings of a views file (JSON).
pub(crate) const META_KEY: &str = "xfer.augment";

/// Version of the parameter derivation ([`uniforms`]); part of the cache key.
const PARAMS_VERSION: u64 = 1;

/// Keras's `fill_mode`: what an output pixel whose source point falls
/// outside the image gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FillMode {
    /// The nearest edge pixel (Keras's default).
    #[default]
    Nearest,
    /// `--cval` (0 by default).
    Constant,
    /// The image mirrored at its edges (`d c b a | a b c d | d c b a`).
    Reflect,
}

impl FillMode {
    /// The name on the command line and in the metadata.
    pub fn name(self) -> &'static str {
        match self {
            FillMode::Nearest => "nearest",
            FillMode::Constant => "constant",
            FillMode::Reflect => "reflect",
        }
    }
}

impl fmt::Display for FillMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The augmentation settings of a run, validated.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Augment {
    /// Augmented views per image (view 0, the plain image, not counted).
    pub(crate) views: u32,
    /// Seed of the per-image parameters.
    pub(crate) seed: u64,
    /// `rotation_range`, degrees.
    pub(crate) rotation: f64,
    /// `width_shift_range`: a fraction of the width below 1, pixels from 1.
    pub(crate) width_shift: f64,
    /// `height_shift_range`, as `width_shift`.
    pub(crate) height_shift: f64,
    /// `shear_range`, degrees.
    pub(crate) shear: f64,
    /// `zoom_range` as one number `z`: zooms drawn from `[1 - z, 1 + z]`.
    pub(crate) zoom: f64,
    pub(crate) horizontal_flip: bool,
    pub(crate) vertical_flip: bool,
    pub(crate) fill: FillMode,
    /// `cval` of `fill_mode="constant"`, on the 0..255 scale.
    pub(crate) cval: f64,
}

/// One view's transform, Keras's `transform_parameters`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Params {
    /// Rotation, degrees.
    pub(crate) theta: f64,
    /// Keras's `tx` (from the height shift range), pixels.
    pub(crate) tx: f64,
    /// Keras's `ty` (from the width shift range), pixels.
    pub(crate) ty: f64,
    /// Shear, degrees.
    pub(crate) shear: f64,
    pub(crate) zx: f64,
    pub(crate) zy: f64,
    pub(crate) flip_horizontal: bool,
    pub(crate) flip_vertical: bool,
}

/// Eight uniform numbers in `[0, 1)` for (seed, view, path): the first 64
/// bits of each 8-byte word of `sha256("xfer.augment/v1\0" || seed (u64 LE)
/// || view (u32 LE) || block (u8) || path)` for blocks 0 and 1, as `(w >>
/// 11) · 2^-53`. Spelled out so that any tool (a Python check, say) can
/// recompute a view's parameters, and so that no library upgrade changes
/// them.
pub(crate) fn uniforms(seed: u64, view: u32, rel: &str) -> [f64; 8] {
    let mut out = [0.0; 8];
    for block in 0..2u8 {
        let mut h = Sha256::new();
        h.update(b"xfer.augment/v1\0");
        h.update(seed.to_le_bytes());
        h.update(view.to_le_bytes());
        h.update([block]);
        h.update(rel.as_bytes());
        let d = h.finalize();
        for j in 0..4 {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d[8 * j..8 * j + 8]);
            let u = u64::from_le_bytes(w) >> 11;
            out[4 * usize::from(block) + j] = u as f64 / (1u64 << 53) as f64;
        }
    }
    out
}

/// `np.random.uniform(-r, r)` from `u` in `[0, 1)`.
fn symmetric(r: f64, u: f64) -> f64 {
    -r + 2.0 * r * u
}

impl Augment {
    /// The transform of view `view` (from 1) of the image at `rel`, for an
    /// image of `rows x cols` pixels, drawn as `get_random_transform` does.
    pub(crate) fn params(&self, rel: &str, view: u32, rows: u32, cols: u32) -> Params {
        let u = uniforms(self.seed, view, rel);
        let shift = |range: f64, u: f64, side: u32| {
            if range == 0.0 {
                return 0.0;
            }
            let t = symmetric(range, u);
            if range < 1.0 {
                t * f64::from(side)
            } else {
                t
            }
        };
        let (zx, zy) = if self.zoom == 0.0 {
            (1.0, 1.0)
        } else {
            let lo = 1.0 - self.zoom;
            (lo + 2.0 * self.zoom * u[4], lo + 2.0 * self.zoom * u[5])
        };
        Params {
            theta: if self.rotation == 0.0 {
                0.0
            } else {
                symmetric(self.rotation, u[0])
            },
            tx: shift(self.height_shift, u[1], rows),
            ty: shift(self.width_shift, u[2], cols),
            shear: if self.shear == 0.0 {
                0.0
            } else {
                symmetric(self.shear, u[3])
            },
            zx,
            zy,
            flip_horizontal: self.horizontal_flip && u[6] < 0.5,
            flip_vertical: self.vertical_flip && u[7] < 0.5,
        }
    }

    /// The model input of view `view` (from 1) of an image: decode and
    /// resize as `load_img`, transform, flip, preprocess; CHW `f32`.
    ///
    /// # Errors
    /// [`BadImage`] as [`pixels::from_bytes`].
    #[cfg(test)]
    pub(crate) fn pixels(
        &self,
        bytes: &[u8],
        spec: &PixelSpec,
        rel: &str,
        view: u32,
    ) -> Result<Vec<f32>, BadImage> {
        let mut out = vec![0.0; spec.tensor_len()];
        self.pixels_into(bytes, spec, rel, view, &mut out)?;
        Ok(out)
    }

    /// [`Augment::pixels`] writing into `out` (a slot of a batch buffer).
    ///
    /// # Errors
    /// As [`Augment::pixels`].
    pub(crate) fn pixels_into(
        &self,
        bytes: &[u8],
        spec: &PixelSpec,
        rel: &str,
        view: u32,
        out: &mut [f32],
    ) -> Result<(), BadImage> {
        let rgb = pixels::rgb_from_bytes(bytes, spec)?;
        let p = self.params(rel, view, rgb.height, rgb.width);
        let mut hwc = match p.matrix(rgb.height, rgb.width) {
            Some((a, offset)) => warp(&rgb, a, offset, self.fill, self.cval),
            None => rgb.data.iter().map(|&v| f32::from(v)).collect(),
        };
        flip(&mut hwc, rgb.width, rgb.height, p);
        let plane = rgb.width as usize * rgb.height as usize;
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            for (c, &v) in px.iter().enumerate() {
                out[c * plane + i] = spec.preprocess.apply_f32(v, c);
            }
        }
        Ok(())
    }

    /// The settings as the JSON of the views file's `xfer.augment` entry.
    pub(crate) fn to_json(&self) -> String {
        serde_json::json!({
            "views": self.views,
            "seed": self.seed,
            "rotation": self.rotation,
            "width_shift": self.width_shift,
            "height_shift": self.height_shift,
            "shear": self.shear,
            "zoom": self.zoom,
            "horizontal_flip": self.horizontal_flip,
            "vertical_flip": self.vertical_flip,
            "fill_mode": self.fill.name(),
            "cval": self.cval,
            "interpolation": "bilinear",
            "params": format!("sha256-v{PARAMS_VERSION}"),
        })
        .to_string()
    }
}

/// Folder of the views files inside FEATURES_DIR: `views/<split>.parquet`
/// (or its shards) sits apart from the contract's `<split>.parquet`, so
/// readers that know nothing of views never see them.
pub(crate) const VIEWS_DIR: &str = "views";

/// The job writing the views of one output file (`name`: the split or
/// shard name of the plain job): every image of the plain job except those
/// it could not read (`failed`, indexes into `plain`), once per view 1..=K,
/// in flow order with an image's views together.
pub(crate) fn views_job<'a>(
    name: &str,
    plain: &[(usize, &'a Item)],
    failed: &[usize],
    augment: &'a Augment,
) -> Job<'a> {
    let k = augment.views as usize;
    let mut images = Vec::with_capacity(plain.len() * k);
    let mut views = Vec::with_capacity(plain.len() * k);
    let mut failed = failed.iter().peekable();
    for (i, &entry) in plain.iter().enumerate() {
        if failed.next_if_eq(&&i).is_some() {
            continue;
        }
        for v in 1..=augment.views {
            images.push(entry);
            views.push(v as i32);
        }
    }
    Job {
        name: format!("{VIEWS_DIR}/{name}"),
        images,
        skipped: Vec::new(),
        views,
        augment: Some(augment),
    }
}

/// The metadata of a views file: the plain file's, plus `xfer.augment`.
pub(crate) fn views_meta(plain: &FeatureMeta, augment: &Augment) -> FeatureMeta {
    let mut m = plain.clone();
    m.extra.insert(META_KEY.into(), augment.to_json());
    m
}

/// What must be equal for the views of two files to be interchangeable:
/// every setting except the number of views (view `v` of an image does not
/// depend on K, so going from 2 to 3 views re-encodes only view 3).
/// `None` for a file without (readable) augmentation settings.
pub(crate) fn cache_key(json: Option<&String>) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(json?).ok()?;
    v.as_object_mut()?.remove("views");
    Some(v)
}

/// Why a views file made with settings `old` cannot serve a run with
/// settings `new` (each the `xfer.augment` JSON, if any), naming only the
/// settings that differ.
pub(crate) fn difference(old: Option<&String>, new: Option<&String>) -> String {
    let parse = |j: Option<&String>| {
        j.and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .and_then(|v| v.as_object().cloned())
    };
    let (Some(a), Some(b)) = (parse(old), parse(new)) else {
        let show = |j: Option<&String>| j.map_or("none".to_string(), String::clone);
        return format!(
            "made with {META_KEY}={}, this run has {}",
            show(old),
            show(new)
        );
    };
    let none = serde_json::Value::Null;
    let changed: Vec<String> = a
        .keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .filter(|k| *k != "views" && a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k} {} -> {}",
                a.get(k).unwrap_or(&none),
                b.get(k).unwrap_or(&none)
            )
        })
        .collect();
    format!(
        "made with other {META_KEY} settings ({})",
        changed.join(", ")
    )
}

impl Params {
    /// The `(matrix, offset)` handed to `scipy.ndimage.affine_transform`
    /// by Keras's `apply_affine_transform` for an image of `rows x cols`
    /// pixels: an output pixel `(r, c)` samples the input at `matrix ·
    /// (r, c) + offset`. `None` when there is no affine part (Keras then
    /// leaves the pixels untouched).
    pub(crate) fn matrix(&self, rows: u32, cols: u32) -> Option<([[f64; 2]; 2], [f64; 2])> {
        type M = [[f64; 3]; 3];
        fn dot(a: &M, b: &M) -> M {
            let mut c = [[0.0; 3]; 3];
            for i in 0..3 {
                for j in 0..3 {
                    c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
                }
            }
            c
        }
        let mut m: Option<M> = None;
        let mut then = |n: M| {
            m = Some(match m {
                None => n,
                Some(a) => dot(&a, &n),
            })
        };
        if self.theta != 0.0 {
            let t = self.theta.to_radians();
            then([
                [t.cos(), -t.sin(), 0.0],
                [t.sin(), t.cos(), 0.0],
                [0.0, 0.0, 1.0],
            ]);
        }
        if self.tx != 0.0 || self.ty != 0.0 {
            then([[1.0, 0.0, self.tx], [0.0, 1.0, self.ty], [0.0, 0.0, 1.0]]);
        }
        if self.shear != 0.0 {
            let s = self.shear.to_radians();
            then([[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]]);
        }
        if self.zx != 1.0 || self.zy != 1.0 {
            then([[self.zx, 0.0, 0.0], [0.0, self.zy, 0.0], [0.0, 0.0, 1.0]]);
        }
        let m = m?;
        // transform_matrix_offset_center(m, h, w)
        let ox = f64::from(rows) / 2.0 - 0.5;
        let oy = f64::from(cols) / 2.0 - 0.5;
        let offset = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
        let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
        let c = dot(&dot(&offset, &m), &reset);
        // x and y swapped for (row, col) arrays: M' = P M P.
        Some(([[c[1][1], c[1][0]], [c[0][1], c[0][0]]], [c[1][2], c[0][2]]))
    }
}

/// Where coordinate `t` of an axis of `len` samples reads, or `None` for
/// `cval` (scipy's boundary modes at spline order 1).
#[inline]
fn boundary(t: f64, len: usize, fill: FillMode) -> Option<f64> {
    let last = (len - 1) as f64;
    match fill {
        FillMode::Nearest => Some(t.clamp(0.0, last)),
        FillMode::Constant => (0.0..=last).contains(&t).then_some(t),
        FillMode::Reflect => {
            let period = 2.0 * len as f64;
            let mut m = t.rem_euclid(period);
            if m >= len as f64 {
                m = period - 1.0 - m;
            }
            Some(m.clamp(0.0, last))
        }
    }
}

/// `scipy.ndimage.affine_transform(order=1)` of each channel of `img`:
/// output `(r, c)` is the bilinear interpolation of the input at `a · (r,
/// c) + offset`, after the fill mode's boundary rule; HWC `f32` on the
/// 0..255 scale.
pub(crate) fn warp(
    img: &Rgb8,
    a: [[f64; 2]; 2],
    offset: [f64; 2],
    fill: FillMode,
    cval: f64,
) -> Vec<f32> {
    let (h, w) = (img.height as usize, img.width as usize);
    let mut out = vec![0.0f32; h * w * 3];
    let px = |r: usize, c: usize, ch: usize| f64::from(img.data[(r * w + c) * 3 + ch]);
    for r in 0..h {
        for c in 0..w {
            let (rf, cf) = (r as f64, c as f64);
            let rin = a[0][0] * rf + a[0][1] * cf + offset[0];
            let cin = a[1][0] * rf + a[1][1] * cf + offset[1];
            let o = &mut out[(r * w + c) * 3..(r * w + c) * 3 + 3];
            let (Some(rin), Some(cin)) = (boundary(rin, h, fill), boundary(cin, w, fill)) else {
                o.iter_mut().for_each(|v| *v = cval as f32);
                continue;
            };
            let (r0, c0) = (rin.floor(), cin.floor());
            let (fr, fc) = (rin - r0, cin - c0);
            let (r0, c0) = (r0 as usize, c0 as usize);
            let (r1, c1) = ((r0 + 1).min(h - 1), (c0 + 1).min(w - 1));
            for (ch, v) in o.iter_mut().enumerate() {
                let top = (1.0 - fc) * px(r0, c0, ch) + fc * px(r0, c1, ch);
                let bottom = (1.0 - fc) * px(r1, c0, ch) + fc * px(r1, c1, ch);
                *v = ((1.0 - fr) * top + fr * bottom) as f32;
            }
        }
    }
    out
}

/// Keras's `flip_axis` after the affine part: columns reversed for a
/// horizontal flip, rows for a vertical one.
fn flip(hwc: &mut [f32], width: u32, height: u32, p: Params) {
    let (w, h) = (width as usize, height as usize);
    if p.flip_horizontal {
        for row in hwc.chunks_exact_mut(w * 3) {
            for c in 0..w / 2 {
                for ch in 0..3 {
                    row.swap(c * 3 + ch, (w - 1 - c) * 3 + ch);
                }
            }
        }
    }
    if p.flip_vertical {
        for r in 0..h / 2 {
            let (top, bottom) = hwc.split_at_mut((h - 1 - r) * w * 3);
            top[r * w * 3..(r + 1) * w * 3].swap_with_slice(&mut bottom[..w * 3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course() -> Augment {
        Augment {
            views: 2,
            seed: 1,
            rotation: 0.0,
            width_shift: 0.0,
            height_shift: 0.0,
            shear: 10.0,
            zoom: 0.1,
            horizontal_flip: true,
            vertical_flip: false,
            fill: FillMode::Nearest,
            cval: 0.0,
        }
    }

    /// `x = np.arange(72, dtype="float32").reshape(4, 6, 3)`: channel 0 is
    /// `3 · (6r + c)`, channel 1 that plus 1, channel 2 plus 2.
    fn ramp() -> Rgb8 {
        Rgb8 {
            width: 6,
            height: 4,
            data: (0..72).collect(),
        }
    }

    fn params(theta: f64, tx: f64, ty: f64, shear: f64, zx: f64, zy: f64) -> Params {
        Params {
            theta,
            tx,
            ty,
            shear,
            zx,
            zy,
            flip_horizontal: false,
            flip_vertical: false,
        }
    }

    /// The matrix and offset Keras 3.15's `apply_affine_transform` passes
    /// to scipy, captured by wrapping `scipy.ndimage.affine_transform`:
    ///
    /// ```python
    /// from keras.src.legacy.preprocessing import image as kimg
    /// x = np.arange(72, dtype="float32").reshape(4, 6, 3)
    /// kimg.apply_affine_transform(x, theta=30, tx=1.5, ty=-2, shear=10,
    ///     zx=0.9, zy=1.1, row_axis=0, col_axis=1, channel_axis=2,
    ///     fill_mode="nearest", order=1)
    /// # matrix [[0.842648887430876, 0.44999999999999996],
    /// #         [-0.7070663706551933, 0.7794228634059949]]
    /// # offset [-1.2636730261460674, 4.397569737205649]
    /// ```
    ///
    /// By hand: `R·S·Z = [[0.7794, -0.7071], [0.45, 0.8426]]` (cos 30° ·
    /// 0.9, ...), swapped to `[[0.8426, 0.45], [-0.7071, 0.7794]]`; the
    /// translation is `R·(1.5, -2) + o - (R·S·Z)·o` with `o = (1.5, 2.5)`,
    /// `(4.3976, -1.2637)`, swapped.
    #[test]
    fn matrix_is_kerass() {
        let (a, off) = params(30.0, 1.5, -2.0, 10.0, 0.9, 1.1)
            .matrix(4, 6)
            .unwrap();
        let want_a = [
            [0.842648887430876, 0.44999999999999996],
            [-0.7070663706551933, 0.7794228634059949],
        ];
        let want_off = [-1.2636730261460674, 4.397569737205649];
        for i in 0..2 {
            assert!((off[i] - want_off[i]).abs() < 1e-12, "{off:?}");
            for j in 0..2 {
                assert!((a[i][j] - want_a[i][j]).abs() < 1e-12, "{a:?}");
            }
        }
        assert_eq!(params(0.0, 0.0, 0.0, 0.0, 1.0, 1.0).matrix(4, 6), None);
        // A shift alone: after Keras's swap, tx moves columns.
        let (a, off) = params(0.0, 2.0, 0.0, 0.0, 1.0, 1.0).matrix(4, 6).unwrap();
        assert_eq!((a, off), ([[1.0, 0.0], [0.0, 1.0]], [0.0, 2.0]));
    }

    /// Channel 0 of the same call's output (scipy 1.17, float32, equal bit
    /// for bit), per fill mode; and
    /// a plain zoom-out (`zx=1.7, zy=1.4`) that reaches past every edge.
    #[test]
    fn pixels_are_kerass() {
        #[rustfmt::skip]
        let cases: [(FillMode, Params, [f64; 24]); 5] = [
            (FillMode::Nearest, params(30.0, 1.5, -2.0, 10.0, 0.9, 1.1), [
                13.192708969116211, 15.0, 15.0, 16.55388641357422, 24.653884887695312,
                32.75388717651367, 11.071510314941406, 13.931344032287598, 23.621564865112305,
                31.72156524658203, 39.821563720703125, 47.921566009521484, 16.5395565032959,
                26.977825164794922, 37.41609191894531, 46.889244079589844, 54.9892463684082,
                63.0892448425293, 29.586036682128906, 40.02430725097656, 50.46257400512695,
                60.90084457397461, 69.0, 69.0]),
            (FillMode::Constant, params(30.0, 1.5, -2.0, 10.0, 0.9, 1.1), [
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 13.931344032287598, 0.0, 0.0, 0.0, 0.0,
                16.5395565032959, 26.977825164794922, 37.41609191894531, 0.0, 0.0, 0.0,
                29.586036682128906, 40.02430725097656, 50.46257400512695, 60.90084457397461,
                0.0, 0.0]),
            (FillMode::Reflect, params(30.0, 1.5, -2.0, 10.0, 0.9, 1.1), [
                17.938823699951172, 15.0, 15.0, 14.346370697021484, 20.108102798461914,
                25.86983299255371, 11.071510314941406, 13.931344032287598, 23.621564865112305,
                31.635250091552734, 37.39698028564453, 43.158714294433594, 16.5395565032959,
                26.977825164794922, 37.41609191894531, 46.889244079589844, 54.68585968017578,
                60.44758987426758, 29.586036682128906, 40.02430725097656, 50.46257400512695,
                60.90084457397461, 69.0, 68.47954559326172]),
            (FillMode::Constant, params(0.0, 0.0, 0.0, 0.0, 1.7, 1.4), [
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.149999618530273, 14.25, 19.350000381469727,
                0.0, 0.0, 0.0, 34.349998474121094, 39.45000076293945, 44.54999923706055, 0.0,
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            (FillMode::Reflect, params(0.0, 0.0, 0.0, 0.0, 1.7, 1.4), [
                0.15000000596046448, 1.9500000476837158, 7.050000190734863, 12.149999618530273,
                15.0, 10.649999618530273, 7.349999904632568, 9.149999618530273, 14.25,
                19.350000381469727, 22.200000762939453, 17.850000381469727, 32.54999923706055,
                34.349998474121094, 39.45000076293945, 44.54999923706055, 47.400001525878906,
                43.04999923706055, 54.150001525878906, 55.95000076293945, 61.04999923706055,
                66.1500015258789, 69.0, 64.6500015258789]),
        ];
        for (fill, p, want) in cases {
            let (a, off) = p.matrix(4, 6).unwrap();
            let got = warp(&ramp(), a, off, fill, 0.0);
            for (k, w) in want.iter().enumerate() {
                let g = f64::from(got[k * 3]);
                assert_eq!(g, *w, "{fill} pixel {k}: scipy's float32, bit for bit");
                // The other channels carry the same weights.
                assert!((f64::from(got[k * 3 + 2]) - g - 2.0).abs() < 1e-4 || *w == 0.0);
            }
        }
    }

    #[test]
    fn flips_reverse_columns_then_rows() {
        let mut x: Vec<f32> = ramp().data.iter().map(|&v| f32::from(v)).collect();
        let mut p = params(0.0, 0.0, 0.0, 0.0, 1.0, 1.0);
        p.flip_horizontal = true;
        flip(&mut x, 6, 4, p);
        assert_eq!(&x[..6], &[15.0, 16.0, 17.0, 12.0, 13.0, 14.0]);
        p.flip_horizontal = false;
        p.flip_vertical = true;
        flip(&mut x, 6, 4, p);
        assert_eq!(&x[..3], &[69.0, 70.0, 71.0], "last row, first column");
    }

    #[test]
    fn params_follow_the_ranges_and_the_seed() {
        let a = course();
        let p = a.params("t-shirt/1.jpg", 1, 150, 150);
        assert_eq!((p.theta, p.tx, p.ty), (0.0, 0.0, 0.0));
        assert!(p.shear.abs() <= 10.0 && (0.9..=1.1).contains(&p.zx));
        assert!(!p.flip_vertical);
        assert_eq!(p, a.params("t-shirt/1.jpg", 1, 150, 150), "deterministic");
        assert_ne!(p, a.params("t-shirt/1.jpg", 2, 150, 150), "views differ");
        assert_ne!(p, a.params("t-shirt/2.jpg", 1, 150, 150), "images differ");
        let other_k = Augment {
            views: 5,
            ..a.clone()
        };
        assert_eq!(p, other_k.params("t-shirt/1.jpg", 1, 150, 150), "K-free");
        let reseeded = Augment {
            seed: 2,
            ..a.clone()
        };
        assert_ne!(p, reseeded.params("t-shirt/1.jpg", 1, 150, 150));

        // Fractional shifts scale with the side, pixel shifts do not.
        let frac = Augment {
            width_shift: 0.5,
            height_shift: 0.5,
            rotation: 30.0,
            ..a.clone()
        };
        let pixels = Augment {
            width_shift: 10.0,
            height_shift: 10.0,
            ..a
        };
        let mut flips = 0;
        for k in 0..400 {
            let rel = format!("x/{k}.png");
            let p = frac.params(&rel, 1, 100, 200);
            assert!(p.tx.abs() <= 50.0 && p.ty.abs() <= 100.0 && p.theta.abs() <= 30.0);
            let q = pixels.params(&rel, 1, 100, 200);
            assert!(q.tx.abs() <= 10.0 && q.ty.abs() <= 10.0);
            flips += usize::from(q.flip_horizontal);
        }
        assert!((150..250).contains(&flips), "{flips} of 400 flipped");
    }

    /// The first numbers of the derivation, for tools that recompute them:
    /// `hashlib.sha256(b"xfer.augment/v1\0" + (1).to_bytes(8, "little") +
    /// (1).to_bytes(4, "little") + bytes([0]) + b"a/b.jpg").digest()`, first
    /// 8 bytes little-endian, `>> 11`, `/ 2**53`.
    #[test]
    fn uniforms_are_spelled_out() {
        let mut h = Sha256::new();
        h.update(b"xfer.augment/v1\0");
        h.update(1u64.to_le_bytes());
        h.update(1u32.to_le_bytes());
        h.update([0u8]);
        h.update(b"a/b.jpg");
        let d = h.finalize();
        let w = u64::from_le_bytes(d[..8].try_into().unwrap());
        let u = uniforms(1, 1, "a/b.jpg");
        assert_eq!(u[0], (w >> 11) as f64 / 9007199254740992.0);
        // The same numbers pinned in scripts/tests/test_check_augment.py.
        assert_eq!((u[0], u[7]), (0.6177548484216161, 0.8790697617772154));
        assert!(u.iter().all(|x| (0.0..1.0).contains(x)));
    }

    #[test]
    fn identity_view_is_the_plain_image() {
        let a = Augment {
            shear: 0.0,
            zoom: 0.0,
            horizontal_flip: false,
            ..course()
        };
        let mut png = Vec::new();
        let img =
            image::RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 7]));
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let spec = PixelSpec::new(
            5,
            crate::pixels::Resize::Nearest,
            crate::pixels::Preprocess::Tf,
        );
        let plain = pixels::from_bytes(&png, &spec).unwrap();
        assert_eq!(a.pixels(&png, &spec, "a/x.png", 1).unwrap(), plain);
        let b = course();
        assert_ne!(b.pixels(&png, &spec, "a/x.png", 1).unwrap(), plain);
    }

    #[test]
    fn cache_key_ignores_the_number_of_views() {
        let a = course();
        let b = Augment {
            views: 7,
            ..a.clone()
        };
        let c = Augment {
            zoom: 0.2,
            ..a.clone()
        };
        let key = |x: &Augment| cache_key(Some(&x.to_json()));
        assert!(key(&a).is_some());
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(cache_key(None), None);
        assert_eq!(cache_key(Some(&"not json".to_string())), None);
    }
}
