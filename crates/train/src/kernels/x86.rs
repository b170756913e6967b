//! The kernels with x86-64 intrinsics: AVX-512 where the CPU has it
//! (32 registers of 16 floats), else AVX2 and FMA (x86-64 CPUs since
//! 2013-2015), the same code for both written once through a macro.
//!
//! Why intrinsics: written as portable lane loops, the tiles are too big
//! for the compiler to unroll before it vectorises, so it keeps the
//! accumulators in memory and the products ran at a fifth of the speed.
//! One intrinsic per operation keeps every accumulator in a register.
//!
//! Safety: callers check, before any call, that every row index and every
//! output range lies inside its slice (`super::check_rows` and the shape
//! asserts), and that the CPU has the features; within that, each pointer
//! below stays in bounds.
#![allow(unsafe_code)]
// Tiles index several arrays in step; index loops say so most plainly.
#![allow(clippy::needless_range_loop, clippy::int_plus_one)]

use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn hsum512(v: __m512) -> f32 {
    _mm512_reduce_add_ps(v)
}

/// One set of kernels for a vector width: the module name, the target
/// features, floats per register and the register's intrinsics.
macro_rules! kernels {
    ($name:ident, $feature:literal, $lanes:literal,
     $zero:ident, $load:ident, $store:ident, $fmadd:ident, $set1:ident, $hsum:ident) => {
        pub(super) mod $name {
            use super::*;

            const LANES: usize = $lanes;

            /// `z[i0+r][j0+o] = bias[j0+o] + x_row(i0+r) · wt[j0+o]` for an `R × O`
            /// tile.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn forward_tile<const R: usize, const O: usize>(
                xs: [*const f32; R],
                ws: [*const f32; O],
                d: usize,
            ) -> [[f32; O]; R] {
                let body = d - d % LANES;
                let mut acc = [[$zero(); O]; R];
                let mut k = 0;
                while k < body {
                    let mut xk = [$zero(); R];
                    for r in 0..R {
                        xk[r] = $load(xs[r].add(k));
                    }
                    for o in 0..O {
                        let w = $load(ws[o].add(k));
                        for r in 0..R {
                            acc[r][o] = $fmadd(xk[r], w, acc[r][o]);
                        }
                    }
                    k += LANES;
                }
                let mut out = [[0.0f32; O]; R];
                for r in 0..R {
                    for o in 0..O {
                        let mut s = $hsum(acc[r][o]);
                        for k in body..d {
                            s = (*xs[r].add(k)).mul_add(*ws[o].add(k), s);
                        }
                        out[r][o] = s;
                    }
                }
                out
            }

            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn forward_rows<const R: usize>(
                x: *const f32,
                d: usize,
                idx: *const usize,
                wt: *const f32,
                bias: &[f32],
                z: *mut f32,
            ) {
                let mut xs = [x; R];
                for r in 0..R {
                    xs[r] = x.add(*idx.add(r) * d);
                }
                let mut j = 0;
                forward_outputs::<R, 4>(xs, wt, bias, z, d, &mut j);
                forward_outputs::<R, 2>(xs, wt, bias, z, d, &mut j);
                forward_outputs::<R, 1>(xs, wt, bias, z, d, &mut j);
            }

            /// Outputs from `*j` on, `O` at a time while `O` fit, for the
            /// rows `xs`; advances `*j`.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn forward_outputs<const R: usize, const O: usize>(
                xs: [*const f32; R],
                wt: *const f32,
                bias: &[f32],
                z: *mut f32,
                d: usize,
                j: &mut usize,
            ) {
                let c = bias.len();
                while *j + O <= c {
                    let mut ws = [wt; O];
                    for o in 0..O {
                        ws[o] = wt.add((*j + o) * d);
                    }
                    let t = forward_tile::<R, O>(xs, ws, d);
                    for r in 0..R {
                        for o in 0..O {
                            *z.add(r * c + *j + o) = t[r][o] + bias[*j + o];
                        }
                    }
                    *j += O;
                }
            }

            /// See [`super::forward`]; bounds checked by the caller.
            #[target_feature(enable = $feature)]
            pub(in crate::kernels) unsafe fn forward(
                x: &[f32],
                d: usize,
                idx: &[usize],
                wt: &[f32],
                bias: &[f32],
                z: &mut [f32],
            ) {
                let (n, c) = (idx.len(), bias.len());
                let (xp, wp, ip, zp) = (x.as_ptr(), wt.as_ptr(), idx.as_ptr(), z.as_mut_ptr());
                let mut i = 0;
                while i + 4 <= n {
                    forward_rows::<4>(xp, d, ip.add(i), wp, bias, zp.add(i * c));
                    i += 4;
                }
                while i < n {
                    forward_rows::<1>(xp, d, ip.add(i), wp, bias, zp.add(i * c));
                    i += 1;
                }
            }

            /// `g[o][k..k+8P] = Σ_i dz[i][o] · x_row(i)[k..k+8P]` for `O` outputs
            /// (`g`, `dz` already offset to the tile's first output).
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn grad_tile<const O: usize, const P: usize>(
                rows: &[*const f32],
                k: usize,
                dz: *const f32,
                c: usize,
                g: *mut f32,
                d: usize,
            ) {
                let mut acc = [[$zero(); P]; O];
                for (i, &xr) in rows.iter().enumerate() {
                    let mut xp = [$zero(); P];
                    for p in 0..P {
                        xp[p] = $load(xr.add(k + p * LANES));
                    }
                    for o in 0..O {
                        let s = $set1(*dz.add(i * c + o));
                        for p in 0..P {
                            acc[o][p] = $fmadd(s, xp[p], acc[o][p]);
                        }
                    }
                }
                for o in 0..O {
                    for p in 0..P {
                        $store(g.add(o * d + k + p * LANES), acc[o][p]);
                    }
                }
            }

            /// All whole vectors of columns of `O` outputs, `P` vectors at a time
            /// (`O·P` = 8 accumulators: enough independent sums to hide the FMA
            /// latency, few enough to stay in AVX2's 16 registers).
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn grad_outputs<const O: usize, const P: usize>(
                rows: &[*const f32],
                dz: *const f32,
                c: usize,
                g: *mut f32,
                d: usize,
            ) {
                let mut k = 0;
                while k + P * LANES <= d {
                    grad_tile::<O, P>(rows, k, dz, c, g, d);
                    k += P * LANES;
                }
                while k + LANES <= d {
                    grad_tile::<O, 1>(rows, k, dz, c, g, d);
                    k += LANES;
                }
            }

            /// See [`super::weight_grad`]; bounds checked by the caller.
            #[target_feature(enable = $feature)]
            pub(in crate::kernels) unsafe fn weight_grad(
                x: &[f32],
                d: usize,
                idx: &[usize],
                dz: &[f32],
                c: usize,
                g: &mut [f32],
            ) {
                const STACK: usize = 64;
                let mut ptrs = [std::ptr::null::<f32>(); STACK];
                let mut heap = Vec::new();
                let rows: &mut [*const f32] = if idx.len() <= STACK {
                    &mut ptrs[..idx.len()]
                } else {
                    heap.resize(idx.len(), std::ptr::null());
                    &mut heap
                };
                for (p, &r) in rows.iter_mut().zip(idx) {
                    *p = x.as_ptr().add(r * d);
                }
                let (dp, gp) = (dz.as_ptr(), g.as_mut_ptr());
                let mut j = 0;
                while j + 4 <= c {
                    grad_outputs::<4, 2>(rows, dp.add(j), c, gp.add(j * d), d);
                    j += 4;
                }
                while j + 2 <= c {
                    grad_outputs::<2, 4>(rows, dp.add(j), c, gp.add(j * d), d);
                    j += 2;
                }
                while j < c {
                    grad_outputs::<1, 8>(rows, dp.add(j), c, gp.add(j * d), d);
                    j += 1;
                }
                crate::kernels::grad_tail(x, d, idx, dz, c, g, d - d % LANES, true);
            }
        }
    };
}

kernels!(
    avx2,
    "avx2,fma",
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps,
    _mm256_set1_ps,
    hsum256
);
kernels!(
    avx512,
    "avx512f",
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps,
    _mm512_set1_ps,
    hsum512
);
