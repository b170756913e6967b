//! Image bytes to 8-bit RGB, exactly as PIL's `Image.open(...).convert('RGB')`.
//!
//! PIL decides the format from the bytes, not the file name, so we do too.
//! JPEG goes through libjpeg-turbo's decoder (the MozJPEG build of it, the
//! library Pillow bundles): ISLOW IDCT and fancy upsampling, the defaults
//! PIL uses, give byte-identical pixels (measured on the clothing images),
//! which the `image` crate's own JPEG decoder does not (off by up to 7).
//! PNG, BMP and PNM go through the `image` crate and TIFF through the `tiff`
//! crate; what differs between formats is PIL's *mode* after opening and its
//! conversion to RGB, reproduced here:
//!
//! | PIL mode | `convert('RGB')` |
//! | --- | --- |
//! | `1`, `L`, `LA`, `P`, `RGBA` | gray replicated / palette looked up / alpha dropped |
//! | `I;16` (16-bit gray) | values clipped to 255 (not scaled!) |
//! | 16-bit RGB, RGBA, LA | high byte (PIL unpacks `RGB;16B` etc.) |
//! | `CMYK` | inverted Adobe JPEG samples, then `nk - c*nk/255` per channel |
//!
//! With a draft side `S` ([`crate::pixels::Decode::Draft`]), JPEG follows
//! PIL's `Image.draft('RGB', (S, S))` instead ([`draft_scale`]): libjpeg
//! decodes at 1/2, 1/4 or 1/8 of the size with its scaled inverse DCT,
//! ISLOW and fancy upsampling kept (PIL asks for its fast settings only
//! with a draft flag that `Image.draft` leaves at 0). Other formats have
//! no draft mode in PIL and are decoded in full.
//!
//! A file PIL could not read (or that xfer does not read the way PIL does:
//! GIF, WebP, floating-point TIFF...) is a [`BadImage`] with the reason.
use std::cell::Cell;
use std::io::{BufRead, Cursor, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageFormat, ImageReader};

use crate::pixels::{BadImage, Rgb8};

fn bad(reason: impl Into<String>) -> BadImage {
    BadImage(reason.into())
}

/// The formats PIL recognizes by their first bytes (the ones we meet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sniffed {
    Jpeg,
    Png,
    Bmp,
    Pnm,
    Tiff,
    Unsupported(&'static str),
}

fn sniff(b: &[u8]) -> Option<Sniffed> {
    Some(if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Sniffed::Jpeg
    } else if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Sniffed::Png
    } else if b.starts_with(b"BM") {
        Sniffed::Bmp
    } else if b.len() >= 2 && b[0] == b'P' && (b'1'..=b'6').contains(&b[1]) {
        Sniffed::Pnm
    } else if b.starts_with(b"II*\0") || b.starts_with(b"MM\0*") {
        Sniffed::Tiff
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Sniffed::Unsupported("GIF")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Sniffed::Unsupported("WebP")
    } else if b.starts_with(b"II+\0") || b.starts_with(b"MM\0+") {
        Sniffed::Unsupported("BigTIFF")
    } else {
        return None;
    })
}

/// Refuses empty images and images over the pixel limit before any pixel
/// is decoded (PIL's `DecompressionBombError` check, done at open time).
fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), BadImage> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels == 0 {
        return Err(bad(format!("image of {width}x{height} pixels")));
    }
    if pixels > max_pixels {
        return Err(bad(format!(
            "{width}x{height} = {pixels} pixels is over the limit of {max_pixels} \
             (decompression bomb; raise --max-pixels to accept it)"
        )));
    }
    Ok(())
}

/// Decodes `bytes` to RGB as PIL's `open` + `convert('RGB')` would; with
/// `draft: Some(S)`, as `open` + `draft('RGB', (S, S))` + `convert('RGB')`.
pub(crate) fn decode(bytes: &[u8], max_pixels: u64, draft: Option<u32>) -> Result<Rgb8, BadImage> {
    if bytes.is_empty() {
        return Err(bad("empty file (0 bytes)"));
    }
    match sniff(bytes) {
        Some(Sniffed::Jpeg) => decode_jpeg(bytes, max_pixels, draft),
        Some(Sniffed::Png) => decode_with_image(bytes, ImageFormat::Png, max_pixels),
        Some(Sniffed::Bmp) => decode_with_image(bytes, ImageFormat::Bmp, max_pixels),
        Some(Sniffed::Pnm) => decode_with_image(bytes, ImageFormat::Pnm, max_pixels),
        Some(Sniffed::Tiff) => decode_tiff(bytes, max_pixels),
        Some(Sniffed::Unsupported(name)) => Err(bad(format!(
            "{name} data: not read by xfer (convert it to PNG or JPEG)"
        ))),
        None => Err(bad(
            "cannot identify image file (not JPEG, PNG, BMP, PNM or TIFF data)",
        )),
    }
}

// --- JPEG -----------------------------------------------------------------

/// The input of the JPEG decoder: the file's bytes, remembering whether the
/// decoder asked for more than there is. PIL feeds libjpeg a suspending
/// source and raises "image file is truncated" when the file ends before
/// the last scanline; libjpeg's own sources instead pad with a fake end
/// marker and decode gray. This flag lets us refuse what PIL refuses.
struct EofWatch<'a> {
    data: &'a [u8],
    pos: usize,
    ran_out: &'a Cell<bool>,
}

impl Read for EofWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.data.len() - self.pos);
        if n == 0 && !buf.is_empty() {
            self.ran_out.set(true);
        }
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl BufRead for EofWatch<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.pos >= self.data.len() {
            self.ran_out.set(true);
        }
        Ok(&self.data[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.data.len());
    }
}

/// PIL's `MULDIV255`: `a * b / 255`, rounded, in integers.
#[inline]
fn muldiv255(a: i32, b: i32) -> i32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// PIL's `cmyk2rgb` on samples already in PIL's CMYK polarity.
#[inline]
fn cmyk_to_rgb(c: u8, m: u8, y: u8, k: u8) -> [u8; 3] {
    let nk = 255 - i32::from(k);
    let f = |v: u8| (nk - muldiv255(i32::from(v), nk)).clamp(0, 255) as u8;
    [f(c), f(m), f(y)]
}

/// The JPEG scale denominator PIL's `JpegImageFile.draft(mode, (S, S))`
/// picks for a `width x height` image: the largest of 8, 4, 2, 1 not above
/// `min(width // S, height // S)` (1 when the image is smaller than `S`).
/// libjpeg's output is then `ceil(width / scale) x ceil(height / scale)`.
pub(crate) fn draft_scale(width: u32, height: u32, side: u32) -> u32 {
    let fits = (width / side).min(height / side);
    [8, 4, 2].into_iter().find(|&s| fits >= s).unwrap_or(1)
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64, draft: Option<u32>) -> Result<Rgb8, BadImage> {
    let ran_out = Cell::new(false);
    // libjpeg reports fatal errors by unwinding out of the C code (the
    // mozjpeg crate's error manager); catch it and keep the message.
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<Rgb8, BadImage> {
        let io = |e: std::io::Error| bad(format!("broken JPEG data: {e}"));
        let reader = EofWatch {
            data: bytes,
            pos: 0,
            ran_out: &ran_out,
        };
        let mut d = mozjpeg::Decompress::new_reader(reader).map_err(io)?;
        let (w, h) = d.size();
        check_size(w as u32, h as u32, max_pixels)?;
        if let Some(side) = draft {
            // PIL: scale_num = 1, scale_denom = scale; libjpeg compares the
            // ratio, so numerator 8 / scale over 8 is the same setting.
            let scale = draft_scale(w as u32, h as u32, side);
            if scale > 1 {
                d.scale((8 / scale) as u8);
            }
        }
        let layers = d.components().len();
        let (width, height, data) = match layers {
            1 | 3 => {
                // PIL opens these as "L" / "RGB"; gray to RGB replicates,
                // which is what libjpeg's gray -> RGB output does too.
                let mut s = d.rgb().map_err(io)?;
                let px: Vec<u8> = s.read_scanlines().map_err(io)?;
                (s.width() as u32, s.height() as u32, px)
            }
            4 => {
                let mut s = d.to_colorspace(mozjpeg::ColorSpace::JCS_CMYK).map_err(io)?;
                let cmyk: Vec<u8> = s.read_scanlines().map_err(io)?;
                // PIL unpacks with "CMYK;I" ("assume adobe conventions").
                let rgb = cmyk
                    .chunks_exact(4)
                    .flat_map(|p| cmyk_to_rgb(255 - p[0], 255 - p[1], 255 - p[2], 255 - p[3]))
                    .collect();
                (s.width() as u32, s.height() as u32, rgb)
            }
            n => return Err(bad(format!("cannot handle {n}-layer JPEG images"))),
        };
        if ran_out.get() {
            return Err(bad("image file is truncated"));
        }
        if data.len() != width as usize * height as usize * 3 {
            return Err(bad("broken JPEG data: short image"));
        }
        Ok(Rgb8 {
            width,
            height,
            data,
        })
    }));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("libjpeg error");
            let msg = msg.strip_prefix("libjpeg fatal error: ").unwrap_or(msg);
            Err(bad(format!("broken JPEG data: {msg}")))
        }
    }
}

// --- PNG, BMP, PNM (image crate) ------------------------------------------

fn decode_with_image(bytes: &[u8], format: ImageFormat, max_pixels: u64) -> Result<Rgb8, BadImage> {
    let name = format!("{format:?}").to_uppercase();
    let err = |e: image::ImageError| bad(format!("broken {name} data: {e}"));
    if format == ImageFormat::Png && bytes.len() >= 24 && &bytes[12..16] == b"IHDR" {
        // PIL checks the pixel count from IHDR at open, before any data is
        // read; the decoder below would first want the image data.
        let be =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        check_size(be(16), be(20), max_pixels)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    // Our own limit (PIL's) is checked below; the crate's default 512 MiB
    // allocation cap would refuse images PIL reads.
    reader.no_limits();
    let decoder = reader.into_decoder().map_err(err)?;
    let (width, height) = decoder.dimensions();
    check_size(width, height, max_pixels)?;
    let original = decoder.original_color_type();
    let img = DynamicImage::from_decoder(decoder).map_err(err)?;
    let data = match img {
        DynamicImage::ImageLuma8(b) => gray_to_rgb(b.as_raw()),
        DynamicImage::ImageLumaA8(b) => {
            b.as_raw().chunks_exact(2).flat_map(|p| [p[0]; 3]).collect()
        }
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        // PIL opens 16-bit gray as "I;16" and convert('RGB') clips at 255.
        DynamicImage::ImageLuma16(b) => b
            .as_raw()
            .iter()
            .flat_map(|&v| [v.min(255) as u8; 3])
            .collect(),
        DynamicImage::ImageLumaA16(b) if original == ExtendedColorType::L16 => {
            // 16-bit gray with a tRNS colour: still "I;16" for PIL.
            b.as_raw()
                .chunks_exact(2)
                .flat_map(|p| [p[0].min(255) as u8; 3])
                .collect()
        }
        DynamicImage::ImageLumaA16(b) => b
            .as_raw()
            .chunks_exact(2)
            .flat_map(|p| [(p[0] >> 8) as u8; 3])
            .collect(),
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| (v >> 8) as u8).collect(),
        DynamicImage::ImageRgba16(b) => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            .collect(),
        other => {
            return Err(bad(format!(
                "{name} with {:?} pixels: not read by xfer",
                other.color()
            )));
        }
    };
    Ok(Rgb8 {
        width,
        height,
        data,
    })
}

fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    gray.iter().flat_map(|&v| [v; 3]).collect()
}

// --- TIFF -----------------------------------------------------------------

fn decode_tiff(bytes: &[u8], max_pixels: u64) -> Result<Rgb8, BadImage> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    use tiff::tags::Tag;
    use tiff::{ColorType, TiffError};
    let err = |e: TiffError| match e {
        TiffError::UnsupportedError(u) => bad(format!(
            "TIFF variant not read by xfer ({u}); convert it to PNG"
        )),
        other => bad(format!("broken TIFF data: {other}")),
    };
    let mut d = Decoder::new(Cursor::new(bytes))
        .map_err(err)?
        .with_limits(Limits::unlimited());
    let (width, height) = d.dimensions().map_err(err)?;
    check_size(width, height, max_pixels)?;
    // JPEG inside TIFF goes through another JPEG decoder than libjpeg-turbo:
    // close to PIL's pixels but not equal, so it is refused, not guessed.
    if let Ok(Some(6 | 7)) = d.find_tag_unsigned::<u16>(Tag::Compression) {
        return Err(bad(
            "JPEG-compressed TIFF: not decoded exactly as PIL does; convert it to PNG or JPEG",
        ));
    }
    let color = d.colortype().map_err(err)?;
    let (w, pixels) = (width as usize, width as usize * height as usize);
    let samples = d.read_image().map_err(err)?;
    let data = match (color, samples) {
        // Packed bits, rows padded to whole bytes; the crate has already
        // turned WhiteIsZero around, so 1 is white (PIL mode "1").
        (ColorType::Gray(1), DecodingResult::U8(v)) => v
            .chunks(w.div_ceil(8))
            .take(height as usize)
            .flat_map(|row| {
                (0..w).map(move |x| {
                    if row[x / 8] & (0x80 >> (x % 8)) != 0 {
                        255
                    } else {
                        0
                    }
                })
            })
            .flat_map(|g: u8| [g; 3])
            .collect(),
        (ColorType::Gray(8), DecodingResult::U8(v)) => gray_to_rgb(&v),
        (
            ColorType::GrayA(8)
            | ColorType::Multiband {
                bit_depth: 8,
                num_samples: 2,
            },
            DecodingResult::U8(v),
        ) => v.chunks_exact(2).flat_map(|p| [p[0]; 3]).collect(),
        (ColorType::RGB(8), DecodingResult::U8(v)) => v,
        (ColorType::RGBA(8), DecodingResult::U8(v)) => {
            v.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()
        }
        (ColorType::CMYK(8), DecodingResult::U8(v)) => v
            .chunks_exact(4)
            .flat_map(|p| cmyk_to_rgb(p[0], p[1], p[2], p[3]))
            .collect(),
        // PIL: "I;16" and "I" clip to 0..255 on convert('RGB').
        (ColorType::Gray(16), DecodingResult::U16(v)) => {
            v.iter().flat_map(|&x| [x.min(255) as u8; 3]).collect()
        }
        (ColorType::Gray(32), DecodingResult::I32(v)) => {
            v.iter().flat_map(|&x| [x.clamp(0, 255) as u8; 3]).collect()
        }
        (ColorType::Gray(32), DecodingResult::U32(v)) => {
            v.iter().flat_map(|&x| [x.min(255) as u8; 3]).collect()
        }
        (ColorType::RGB(16), DecodingResult::U16(v)) => v.iter().map(|&x| (x >> 8) as u8).collect(),
        (ColorType::RGBA(16), DecodingResult::U16(v)) => v
            .chunks_exact(4)
            .flat_map(|p| [(p[0] >> 8) as u8, (p[1] >> 8) as u8, (p[2] >> 8) as u8])
            .collect(),
        (c, _) => {
            return Err(bad(format!(
                "TIFF with {c:?} samples: not read by xfer; convert it to PNG"
            )))
        }
    };
    if data.len() != pixels * 3 {
        return Err(bad("broken TIFF data: short image"));
    }
    Ok(Rgb8 {
        width,
        height,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn pil_cmyk_formula() {
        // PIL: Image.new('CMYK', (1, 1), (c, m, y, k)).convert('RGB')
        assert_eq!(cmyk_to_rgb(0, 0, 0, 0), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(255, 255, 255, 255), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(10, 100, 200, 50), [197, 125, 44]);
    }

    #[test]
    fn sixteen_bit_gray_png_clips_like_pil() {
        let raw: Vec<u16> = vec![0, 100, 255, 256, 1000, 65535];
        let img = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(6, 1, raw).unwrap();
        let rgb = decode(&png(DynamicImage::ImageLuma16(img)), u64::MAX, None).unwrap();
        let r: Vec<u8> = rgb.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(r, [0, 100, 255, 255, 255, 255]);
    }

    #[test]
    fn sixteen_bit_rgb_png_keeps_high_byte() {
        let raw: Vec<u16> = vec![0x1234, 0xff00, 0x00ff];
        let img = image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(1, 1, raw).unwrap();
        let rgb = decode(&png(DynamicImage::ImageRgb16(img)), u64::MAX, None).unwrap();
        assert_eq!(rgb.data, [0x12, 0xff, 0x00]);
    }

    #[test]
    fn rgba_drops_alpha_and_gray_replicates() {
        let img = image::RgbaImage::from_raw(1, 1, vec![1, 2, 3, 0]).unwrap();
        assert_eq!(
            decode(&png(DynamicImage::ImageRgba8(img)), 100, None)
                .unwrap()
                .data,
            [1, 2, 3]
        );
        let img = image::GrayImage::from_raw(1, 1, vec![7]).unwrap();
        assert_eq!(
            decode(&png(DynamicImage::ImageLuma8(img)), 100, None)
                .unwrap()
                .data,
            [7, 7, 7]
        );
    }

    #[test]
    fn bad_inputs_have_reasons() {
        assert_eq!(decode(b"", 10, None).unwrap_err().0, "empty file (0 bytes)");
        assert!(decode(b"hello, I am text", 10, None)
            .unwrap_err()
            .0
            .starts_with("cannot identify"));
        assert!(decode(b"GIF89a....", 10, None)
            .unwrap_err()
            .0
            .starts_with("GIF data"));
        let img = image::GrayImage::from_raw(4, 4, vec![0; 16]).unwrap();
        let err = decode(&png(DynamicImage::ImageLuma8(img)), 15, None)
            .unwrap_err()
            .0;
        assert!(
            err.contains("4x4 = 16 pixels is over the limit of 15"),
            "{err}"
        );
    }

    #[test]
    fn draft_scale_is_pils() {
        // JpegImageFile.draft: scale = min(w // S, h // S), then the largest
        // of 8, 4, 2, 1 not above it.
        for ((w, h, side), want) in [
            ((400, 533, 150), 2),
            ((400, 533, 299), 1),
            ((100, 100, 150), 1),
            ((599, 1000, 150), 2),
            ((600, 1000, 150), 4),
            ((1199, 1200, 150), 4),
            ((1200, 5000, 150), 8),
            ((9000, 9000, 150), 8),
        ] {
            assert_eq!(draft_scale(w, h, side), want, "{w}x{h} at {side}");
        }
    }

    #[test]
    fn draft_decodes_at_libjpegs_scaled_size() {
        let img = image::RgbImage::from_fn(200, 150, |x, y| {
            image::Rgb([(x ^ y) as u8, (x * 3) as u8, (y * 5) as u8])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Jpeg)
            .unwrap();
        let jpeg = out.into_inner();
        // ceil(200 / s) x ceil(150 / s), as PIL's draft sets the size.
        for (side, want) in [
            (None, (200, 150)),
            (Some(100), (200, 150)),
            (Some(75), (100, 75)),
            (Some(37), (50, 38)),
            (Some(18), (25, 19)),
            (Some(1), (25, 19)),
        ] {
            let rgb = decode(&jpeg, u64::MAX, side).unwrap();
            assert_eq!((rgb.width, rgb.height), want, "draft {side:?}");
            assert_eq!(rgb.data.len(), (want.0 * want.1 * 3) as usize);
        }
        // The pixel limit is checked on the file's own size, as PIL does.
        let err = decode(&jpeg, 200 * 150 - 1, Some(18)).unwrap_err().0;
        assert!(err.contains("200x150"), "{err}");
        // Other formats have no draft mode: decoded in full.
        let gray = image::GrayImage::from_raw(40, 40, vec![9; 1600]).unwrap();
        let rgb = decode(&png(DynamicImage::ImageLuma8(gray)), u64::MAX, Some(5)).unwrap();
        assert_eq!((rgb.width, rgb.height), (40, 40));
    }

    #[test]
    fn truncated_and_corrupt_jpeg_are_refused() {
        let img = image::RgbImage::from_fn(200, 150, |x, y| {
            image::Rgb([((x * 7) ^ (y * 13)) as u8, (x * y) as u8, (x + 3 * y) as u8])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Jpeg)
            .unwrap();
        let jpeg = out.into_inner();
        let ok = decode(&jpeg, u64::MAX, None).unwrap();
        assert_eq!((ok.width, ok.height), (200, 150));
        let err = decode(&jpeg[..jpeg.len() / 2], u64::MAX, None)
            .unwrap_err()
            .0;
        assert_eq!(err, "image file is truncated");
        let mut junk = jpeg[..40].to_vec();
        junk.extend(std::iter::repeat_n(0x5a, 200));
        assert!(decode(&junk, u64::MAX, None).is_err());
    }
}
