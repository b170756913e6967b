//! PIL's `Image.resize` on 8-bit RGB, operation for operation.
//!
//! `load_img` resizes with `NEAREST` unless told otherwise. PIL's nearest
//! neighbour is not "round the scaled coordinate": it walks the source with
//! an accumulated `f64` step (`ImagingScaleAffine` in Geometry.c), and the
//! accumulated rounding decides which column is picked at exact ties. The
//! other filters are PIL's two-pass convolution (Resample.c): `f64`
//! coefficients normalised per output pixel, turned into 22-bit fixed point,
//! horizontal pass first (on the rows the vertical pass needs), each pass
//! rounded and clipped to 8 bits. Both are copied here so that `--resize`
//! gives PIL's bytes, not merely a similar picture.
use crate::pixels::{Resize, Rgb8};

/// Resizes `img` to `width x height` with PIL's `filter` arithmetic.
pub(crate) fn resize(img: &Rgb8, width: u32, height: u32, filter: Resize) -> Rgb8 {
    if img.width == width && img.height == height {
        return img.clone(); // PIL: same size and box -> copy
    }
    match filter {
        Resize::Nearest => nearest(img, width, height),
        Resize::Bilinear => convolve(img, width, height, &BILINEAR),
        Resize::Bicubic => convolve(img, width, height, &BICUBIC),
        Resize::Lanczos => convolve(img, width, height, &LANCZOS),
        Resize::Box => convolve(img, width, height, &BOX),
        Resize::Hamming => convolve(img, width, height, &HAMMING),
    }
}

/// C's `COORD(v)`: truncation toward zero, -1 for negative values.
#[inline]
fn coord(v: f64) -> i64 {
    if v < 0.0 {
        -1
    } else {
        v as i64
    }
}

/// `ImagingScaleAffine` with `a = [w_in / w_out, 0, 0, 0, h_in / h_out, 0]`.
fn nearest(img: &Rgb8, width: u32, height: u32) -> Rgb8 {
    // `box` is a float[4] in PIL; integer sides below 2^24 are exact.
    let a0 = f64::from(img.width as f32) / f64::from(width);
    let a4 = f64::from(img.height as f32) / f64::from(height);
    let mut xin = vec![None; width as usize];
    let mut xo = 0.0 + a0 * 0.5;
    for slot in &mut xin {
        let x = coord(xo);
        if x >= 0 && x < i64::from(img.width) {
            *slot = Some(x as usize);
        }
        xo += a0;
    }
    let (w_in, w_out) = (img.width as usize, width as usize);
    let mut data = vec![0u8; w_out * height as usize * 3];
    let mut yo = 0.0 + a4 * 0.5;
    for row in data.chunks_exact_mut(w_out * 3) {
        let y = coord(yo);
        if y >= 0 && y < i64::from(img.height) {
            let src = &img.data[y as usize * w_in * 3..(y as usize + 1) * w_in * 3];
            for (out, x) in row.chunks_exact_mut(3).zip(&xin) {
                if let Some(x) = *x {
                    out.copy_from_slice(&src[x * 3..x * 3 + 3]);
                }
            }
        }
        yo += a4;
    }
    Rgb8 {
        width,
        height,
        data,
    }
}

/// A resampling kernel and its support (Resample.c's `struct filter`).
struct Filter {
    f: fn(f64) -> f64,
    support: f64,
}

const BOX: Filter = Filter {
    f: box_filter,
    support: 0.5,
};
const BILINEAR: Filter = Filter {
    f: bilinear_filter,
    support: 1.0,
};
const HAMMING: Filter = Filter {
    f: hamming_filter,
    support: 1.0,
};
const BICUBIC: Filter = Filter {
    f: bicubic_filter,
    support: 2.0,
};
const LANCZOS: Filter = Filter {
    f: lanczos_filter,
    support: 3.0,
};

fn box_filter(x: f64) -> f64 {
    if x > -0.5 && x <= 0.5 {
        1.0
    } else {
        0.0
    }
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

fn hamming_filter(x: f64) -> f64 {
    let x = x.abs();
    if x == 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        return 0.0;
    }
    let x = x * std::f64::consts::PI;
    // `0.54f + 0.46f * cos(x)`: float literals promoted to double.
    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
}

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

fn lanczos_filter(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

/// Fixed-point fraction bits of PIL's 8-bit convolution.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, tap count, and fixed-point taps.
struct Coeffs {
    ksize: usize,
    bounds: Vec<(usize, usize)>,
    taps: Vec<i32>,
}

/// `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `[0, in_size]`.
fn coeffs(in_size: u32, out_size: u32, filter: &Filter) -> Coeffs {
    let (in0, in1) = (0.0f32, in_size as f32);
    let scale = f64::from(in1 - in0) / f64::from(out_size);
    let filterscale = scale.max(1.0);
    let support = filter.support * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size as usize);
    let mut taps = vec![0i32; out_size as usize * ksize];
    let mut k = vec![0f64; ksize];
    for xx in 0..out_size as usize {
        let center = f64::from(in0) + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(i64::from(in_size)) - xmin;
        let xmax = xmax.max(0) as usize;
        let mut ww = 0.0;
        for (x, kx) in k.iter_mut().enumerate().take(xmax) {
            let w = (filter.f)(((x as i64 + xmin) as f64 - center + 0.5) * ss);
            *kx = w;
            ww += w;
        }
        let row = &mut taps[xx * ksize..(xx + 1) * ksize];
        for (x, t) in row.iter_mut().enumerate().take(xmax) {
            let v = if ww != 0.0 { k[x] / ww } else { k[x] };
            let fixed = v * f64::from(1u32 << PRECISION_BITS);
            *t = if v < 0.0 {
                (-0.5 + fixed) as i32
            } else {
                (0.5 + fixed) as i32
            };
        }
        bounds.push((xmin as usize, xmax));
    }
    Coeffs {
        ksize,
        bounds,
        taps,
    }
}

/// `clip8`: the 22-bit fixed-point sum to a byte.
#[inline]
fn clip8(ss: i32) -> u8 {
    (ss >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `ImagingResampleInner`: horizontal pass on the rows the vertical pass
/// reads, then the vertical pass; a pass whose size does not change is
/// skipped.
fn convolve(img: &Rgb8, width: u32, height: u32, filter: &Filter) -> Rgb8 {
    let need_h = width != img.width;
    let need_v = height != img.height;
    let vert = coeffs(img.height, height, filter);
    let ybox_first = vert.bounds[0].0;
    let last = vert.bounds[height as usize - 1];
    let ybox_last = last.0 + last.1;
    let half = 1i32 << (PRECISION_BITS - 1);

    let mut cur = img.clone();
    let mut row_offset = 0;
    if need_h {
        let hor = coeffs(img.width, width, filter);
        let rows = ybox_last - ybox_first;
        let (w_in, w_out) = (img.width as usize, width as usize);
        let mut data = vec![0u8; w_out * rows * 3];
        for (yy, out_row) in data.chunks_exact_mut(w_out * 3).enumerate() {
            let src = &img.data[(yy + ybox_first) * w_in * 3..(yy + ybox_first + 1) * w_in * 3];
            for (xx, out) in out_row.chunks_exact_mut(3).enumerate() {
                let (xmin, n) = hor.bounds[xx];
                let k = &hor.taps[xx * hor.ksize..xx * hor.ksize + n];
                let mut ss = [half; 3];
                for (x, &kx) in k.iter().enumerate() {
                    let p = &src[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    for c in 0..3 {
                        ss[c] += i32::from(p[c]) * kx;
                    }
                }
                for c in 0..3 {
                    out[c] = clip8(ss[c]);
                }
            }
        }
        cur = Rgb8 {
            width,
            height: rows as u32,
            data,
        };
        row_offset = ybox_first;
    }
    if need_v {
        let w = cur.width as usize;
        let mut data = vec![0u8; w * height as usize * 3];
        for (yy, out_row) in data.chunks_exact_mut(w * 3).enumerate() {
            let (ymin, n) = vert.bounds[yy];
            let ymin = ymin - row_offset;
            let k = &vert.taps[yy * vert.ksize..yy * vert.ksize + n];
            for (i, out) in out_row.iter_mut().enumerate() {
                let mut ss = half;
                for (y, &ky) in k.iter().enumerate() {
                    ss += i32::from(cur.data[(y + ymin) * w * 3 + i]) * ky;
                }
                *out = clip8(ss);
            }
        }
        cur = Rgb8 {
            width: cur.width,
            height,
            data,
        };
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: u32, h: u32) -> Rgb8 {
        let data = (0..w * h)
            .flat_map(|i| [(i % 251) as u8, (i * 7 % 256) as u8, (i / w) as u8])
            .collect();
        Rgb8 {
            width: w,
            height: h,
            data,
        }
    }

    #[test]
    fn nearest_picks_pil_columns() {
        // PIL: Image.frombytes on a 10-pixel row, resize((4, 1), NEAREST)
        // picks source columns 1, 3, 6, 8 (centres at 1.25, 3.75, 6.25, 8.75).
        let img = ramp(10, 1);
        let out = nearest(&img, 4, 1);
        let cols: Vec<u8> = out.data.chunks(3).map(|p| p[0]).collect();
        assert_eq!(cols, [1, 3, 6, 8]);
    }

    #[test]
    fn same_size_is_a_copy_and_sizes_are_right() {
        let img = ramp(7, 5);
        assert_eq!(resize(&img, 7, 5, Resize::Lanczos), img);
        for f in Resize::ALL {
            for (w, h) in [(3, 2), (7, 9), (14, 5), (1, 1)] {
                let out = resize(&img, w, h, f);
                assert_eq!(
                    (out.width, out.height, out.data.len()),
                    (w, h, (w * h * 3) as usize),
                    "{f:?}"
                );
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = Rgb8 {
            width: 9,
            height: 6,
            data: vec![77; 9 * 6 * 3],
        };
        for f in [
            Resize::Bilinear,
            Resize::Bicubic,
            Resize::Lanczos,
            Resize::Box,
            Resize::Hamming,
        ] {
            let out = resize(&img, 4, 11, f);
            assert!(out.data.iter().all(|&v| v == 77), "{f:?}");
        }
    }
}
