//! Image file to model input: the pixels Keras would have fed the model.
//!
//! Keras reads an image with `load_img(path, target_size=(S, S))` (PIL:
//! open, `convert('RGB')`, `resize((S, S), NEAREST)`) and the application's
//! `preprocess_input`. Any difference here shows up in every vector, so each
//! step copies PIL's arithmetic, not just its idea: JPEG through
//! libjpeg-turbo's decoder (what Pillow bundles), PIL's mode conversions
//! (the private `decode` module), PIL's resampling code (`resize`), and the
//! preprocessing formulas evaluated in `float32` in Keras's order
//! ([`Preprocess::apply`]).
//!
//! This module is the stable entry point that `xfer predict` shares with
//! `xfer extract`:
//!
//! ```no_run
//! use xfer_extract::pixels::{PixelSpec, Preprocess, Resize};
//! let spec = PixelSpec::new(150, Resize::Nearest, Preprocess::Tf);
//! let chw: Vec<f32> = xfer_extract::pixels::load(std::path::Path::new("a.jpg"), &spec)?;
//! assert_eq!(chw.len(), 3 * 150 * 150);
//! # Ok::<(), xfer_extract::pixels::BadImage>(())
//! ```
use std::fmt;
use std::path::Path;

/// Largest model input side xfer builds (`--size`, or a head's `xfer.size`):
/// a 4096 x 4096 batch of 32 is already 6 GiB of floats.
pub const MAX_SIDE: u32 = 4096;

/// PIL's `Image.MAX_IMAGE_PIXELS * 2`: above this many pixels PIL raises
/// `DecompressionBombError`, so Keras could not read the image either.
pub const DEFAULT_MAX_PIXELS: u64 = 2 * 89_478_485;

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8 {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 3` bytes.
    pub data: Vec<u8>,
}

/// Why one image could not be turned into pixels (the reason written to
/// `errors.csv`). The run goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadImage(pub String);

/// The resampling filter of `load_img(..., interpolation=...)`, with PIL's
/// arithmetic. Keras's default is `nearest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Resize {
    /// PIL `Image.NEAREST` (Keras's default).
    #[default]
    Nearest,
    /// PIL `Image.BILINEAR`.
    Bilinear,
    /// PIL `Image.BICUBIC`.
    Bicubic,
    /// PIL `Image.LANCZOS`.
    Lanczos,
    /// PIL `Image.BOX`.
    Box,
    /// PIL `Image.HAMMING`.
    Hamming,
}

impl Resize {
    /// The name used on the command line and in the `xfer.resize` metadata.
    pub fn name(self) -> &'static str {
        match self {
            Resize::Nearest => "nearest",
            Resize::Bilinear => "bilinear",
            Resize::Bicubic => "bicubic",
            Resize::Lanczos => "lanczos",
            Resize::Box => "box",
            Resize::Hamming => "hamming",
        }
    }

    /// Every filter, in the order of the command-line help.
    pub const ALL: [Resize; 6] = [
        Resize::Nearest,
        Resize::Bilinear,
        Resize::Bicubic,
        Resize::Lanczos,
        Resize::Box,
        Resize::Hamming,
    ];

    /// The filter named `name` (as written by [`Resize::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Resize::ALL.into_iter().find(|r| r.name() == name)
    }
}

impl fmt::Display for Resize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How JPEG files are decoded before the resize (`--decode`).
///
/// `Full` is Keras's `load_img`: every pixel decoded, then resized. `Draft`
/// is PIL's `Image.draft('RGB', (S, S))` before `convert` and `resize`:
/// libjpeg decodes at 1/2, 1/4 or 1/8 of the size with its scaled inverse
/// DCT (the largest of 8, 4, 2, 1 not above `min(w // S, h // S)`), so
/// large JPEGs cost a fraction of the work, and the resize then starts from
/// that smaller image. Other formats are decoded in full either way (PIL's
/// `draft` does nothing for them). The pixels differ from `Full`, so the
/// mode is part of the vectors' metadata (`xfer.decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Decode {
    /// Decode every pixel (Keras's `load_img`).
    #[default]
    Full,
    /// PIL's `Image.draft('RGB', (S, S))`: JPEG decoded at 1/2, 1/4 or 1/8
    /// size where the image is at least 2, 4 or 8 times the input side.
    Draft,
}

impl Decode {
    /// The name on the command line and in the `xfer.decode` metadata.
    pub fn name(self) -> &'static str {
        match self {
            Decode::Full => "full",
            Decode::Draft => "draft",
        }
    }

    /// The mode named `name` (as written by [`Decode::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [Decode::Full, Decode::Draft]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

impl fmt::Display for Decode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The model's input scaling, named in its `xfer.preprocess` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preprocess {
    /// Keras `mode="tf"` (Xception): `x / 127.5 - 1`, in [-1, 1].
    Tf,
    /// Keras `mode="torch"`: `x / 255`, then ImageNet mean and std per channel.
    Torch,
    /// EfficientNet-Lite: `(x - 127) / 128`.
    Lite,
    /// No scaling: 0..255.
    Raw,
}

/// ImageNet channel means of Keras's `torch` mode.
const TORCH_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations of Keras's `torch` mode.
const TORCH_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Preprocess {
    /// The metadata name (`tf`, `torch`, `lite`, `raw`).
    pub fn name(self) -> &'static str {
        match self {
            Preprocess::Tf => "tf",
            Preprocess::Torch => "torch",
            Preprocess::Lite => "lite",
            Preprocess::Raw => "raw",
        }
    }

    /// The mode named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Preprocess::Tf,
            Preprocess::Torch,
            Preprocess::Lite,
            Preprocess::Raw,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    /// One channel value `v` (0..=255) of channel `c` (0 = R), scaled as
    /// Keras does it on a `float32` array: `tf` is `x /= 127.5; x -= 1.0`,
    /// `torch` is `x /= 255.0; x -= mean[c]; x /= std[c]`, each step rounded
    /// to `f32` (NumPy keeps Python-float scalars "weak", so the arithmetic
    /// stays in `float32`).
    #[inline]
    pub fn apply(self, v: u8, c: usize) -> f32 {
        self.apply_f32(f32::from(v), c)
    }

    /// [`Preprocess::apply`] on a value that is no longer an integer: an
    /// augmented view's pixels come out of the affine transform as
    /// `float32` (Keras applies `preprocessing_function` after
    /// `random_transform`, without rounding to 8 bits in between).
    #[inline]
    pub fn apply_f32(self, x: f32, c: usize) -> f32 {
        match self {
            Preprocess::Tf => x / 127.5 - 1.0,
            Preprocess::Torch => (x / 255.0 - TORCH_MEAN[c]) / TORCH_STD[c],
            Preprocess::Lite => (x - 127.0) / 128.0,
            Preprocess::Raw => x,
        }
    }
}

impl fmt::Display for Preprocess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How images become model input: square side, filter, JPEG decoding,
/// scaling, and the decompression-bomb limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelSpec {
    /// Output side `S` (the model sees `S x S`).
    pub size: u32,
    /// Resampling filter.
    pub resize: Resize,
    /// Full decoding (Keras's) or PIL's draft mode for JPEG.
    pub decode: Decode,
    /// Input scaling.
    pub preprocess: Preprocess,
    /// Images with more pixels than this are refused (PIL's limit by default).
    pub max_pixels: u64,
}

impl PixelSpec {
    /// A spec with full decoding and PIL's default pixel limit.
    pub fn new(size: u32, resize: Resize, preprocess: Preprocess) -> Self {
        PixelSpec {
            size,
            resize,
            decode: Decode::Full,
            preprocess,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }

    /// Floats per image: `3 * size * size`.
    pub fn tensor_len(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }
}

/// Reads, decodes, resizes and scales one image file into a CHW `f32`
/// tensor of [`PixelSpec::tensor_len`] values (R plane, G plane, B plane).
///
/// # Errors
/// [`BadImage`] when the file cannot be read, is not an image PIL would
/// read the same way, or is over the pixel limit.
pub fn load(path: &Path, spec: &PixelSpec) -> Result<Vec<f32>, BadImage> {
    let bytes = read_image_file(path)?;
    from_bytes(&bytes, spec)
}

/// [`load`] on bytes already in memory.
///
/// # Errors
/// As [`load`], less the reading.
pub fn from_bytes(bytes: &[u8], spec: &PixelSpec) -> Result<Vec<f32>, BadImage> {
    let mut out = vec![0.0; spec.tensor_len()];
    from_bytes_into(bytes, spec, &mut out)?;
    Ok(out)
}

/// [`from_bytes`] writing into `out` (a slot of a batch buffer).
///
/// # Errors
/// As [`from_bytes`].
///
/// # Panics
/// When `out.len() != spec.tensor_len()` (a caller bug, not bad input).
pub fn from_bytes_into(bytes: &[u8], spec: &PixelSpec, out: &mut [f32]) -> Result<(), BadImage> {
    assert_eq!(
        out.len(),
        spec.tensor_len(),
        "output slot of the wrong length"
    );
    let rgb = rgb_from_bytes(bytes, spec)?;
    to_chw(&rgb, spec.preprocess, out);
    Ok(())
}

/// Decode and resize only: the 8-bit RGB image `load_img` returns (with
/// [`Decode::Draft`], PIL's `draft` + `convert` + `resize`).
///
/// # Errors
/// As [`from_bytes`].
pub fn rgb_from_bytes(bytes: &[u8], spec: &PixelSpec) -> Result<Rgb8, BadImage> {
    if spec.size == 0 {
        return Err(BadImage("target size 0".into()));
    }
    let draft = match spec.decode {
        Decode::Full => None,
        Decode::Draft => Some(spec.size),
    };
    let img = crate::decode::decode(bytes, spec.max_pixels, draft)?;
    Ok(crate::resize::resize(
        &img,
        spec.size,
        spec.size,
        spec.resize,
    ))
}

/// HWC bytes to planar CHW floats with the model's scaling.
///
/// A channel value has 256 possible results per channel, so they are
/// computed once ([`Preprocess::apply`], bit for bit) and looked up: the
/// per-pixel division and `match` cost more than the resize did
/// (docs/decode.md).
///
/// # Panics
/// When `out` does not hold `3 * width * height` values.
pub fn to_chw(img: &Rgb8, preprocess: Preprocess, out: &mut [f32]) {
    let plane = img.width as usize * img.height as usize;
    assert_eq!(out.len(), 3 * plane, "output of the wrong length");
    let mut table = [[0f32; 256]; 3];
    for (c, t) in table.iter_mut().enumerate() {
        for (v, x) in (0..=255u8).zip(t.iter_mut()) {
            *x = preprocess.apply(v, c);
        }
    }
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let rgb = r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut());
    for (px, ((r, g), b)) in img.data.chunks_exact(3).zip(rgb) {
        *r = table[0][usize::from(px[0])];
        *g = table[1][usize::from(px[1])];
        *b = table[2][usize::from(px[2])];
    }
}

/// Reads an image file's bytes, refusing what is not a regular file (a FIFO
/// named `x.jpg` would block forever) and turning OS errors into reasons.
///
/// # Errors
/// [`BadImage`] with the reason.
pub fn read_image_file(path: &Path) -> Result<Vec<u8>, BadImage> {
    image_file_meta(path)?;
    read_bytes(path)
}

/// The metadata of an image file, or why it cannot be one (missing, not a
/// regular file).
pub(crate) fn image_file_meta(path: &Path) -> Result<std::fs::Metadata, BadImage> {
    let meta = std::fs::metadata(path).map_err(|e| BadImage(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(BadImage("not a regular file".into()));
    }
    Ok(meta)
}

/// The bytes of a file already checked by [`image_file_meta`].
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, BadImage> {
    std::fs::read(path).map_err(|e| BadImage(format!("cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf_mode_is_keras_float32_arithmetic() {
        // keras.applications.xception.preprocess_input on float32:
        // np.array([0, 1, 127, 128, 254, 255], 'float32') / 127.5 - 1
        // Bit patterns printed by NumPy (`x.view(np.uint32)`), exact.
        let want = [
            0xbf80_0000u32,
            0xbf7d_fdfe,
            0xbb80_8080,
            0x3b80_8100,
            0x3f7d_fdfe,
            0x3f80_0000,
        ];
        for (v, w) in [0u8, 1, 127, 128, 254, 255].into_iter().zip(want) {
            assert_eq!(Preprocess::Tf.apply(v, 0).to_bits(), w, "value {v}");
        }
    }

    #[test]
    fn torch_and_lite_modes() {
        assert_eq!(Preprocess::Torch.apply(0, 0), (0.0f32 - 0.485) / 0.229);
        assert_eq!(Preprocess::Torch.apply(255, 2), (1.0f32 - 0.406) / 0.225);
        assert_eq!(Preprocess::Lite.apply(127, 1), 0.0);
        assert_eq!(Preprocess::Lite.apply(255, 1), 1.0);
        assert_eq!(Preprocess::Raw.apply(200, 1), 200.0);
    }

    #[test]
    fn names_round_trip() {
        for r in Resize::ALL {
            assert_eq!(Resize::from_name(r.name()), Some(r));
        }
        for d in [Decode::Full, Decode::Draft] {
            assert_eq!(Decode::from_name(d.name()), Some(d));
        }
        assert_eq!(Decode::from_name("fast"), None);
        for p in [
            Preprocess::Tf,
            Preprocess::Torch,
            Preprocess::Lite,
            Preprocess::Raw,
        ] {
            assert_eq!(Preprocess::from_name(p.name()), Some(p));
        }
        assert_eq!(Preprocess::from_name("caffe"), None);
    }

    #[test]
    fn chw_layout_is_planar() {
        let img = Rgb8 {
            width: 2,
            height: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        };
        let mut out = vec![0.0; 6];
        to_chw(&img, Preprocess::Raw, &mut out);
        assert_eq!(out, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn chw_table_is_apply_bit_for_bit() {
        let img = Rgb8 {
            width: 256,
            height: 1,
            data: (0..=255u8).flat_map(|v| [v, 255 - v, v ^ 0x5a]).collect(),
        };
        for p in [
            Preprocess::Tf,
            Preprocess::Torch,
            Preprocess::Lite,
            Preprocess::Raw,
        ] {
            let mut out = vec![0.0; 3 * 256];
            to_chw(&img, p, &mut out);
            for (i, px) in img.data.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    assert_eq!(
                        out[c * 256 + i].to_bits(),
                        p.apply(px[c], c).to_bits(),
                        "{p} value {} channel {c}",
                        px[c]
                    );
                }
            }
        }
    }

    #[test]
    fn fifo_and_missing_files_are_bad_images() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_image_file(&dir.path().join("none.jpg")).unwrap_err();
        assert!(err.0.starts_with("cannot read"), "{err}");
        let err = read_image_file(dir.path()).unwrap_err();
        assert_eq!(err.0, "not a regular file");
    }
}
