//! The product of inference, `x·W`, on row-major `f32` slices.
//!
//! Scoring a head on many rows at once ([`crate::Head::logits`], used by
//! `xfer predict` and `xfer eval`) goes through ndarray's `general_mat_mul`
//! (matrixmultiply's packed sgemm) on borrowed views: no copy of the data.
//! Training, whose thin products suit a general sgemm poorly, has its own
//! kernels ([`crate::kernels`]).
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};

fn view(a: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), &a[..rows * cols]).expect("slice holds rows*cols floats")
}

fn view_mut(a: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut a[..rows * cols])
        .expect("slice holds rows*cols floats")
}

/// `c[m×n] = a[m×k] · b[k×n]`.
pub(crate) fn ab(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    general_mat_mul(
        1.0,
        &view(a, m, k),
        &view(b, k, n),
        0.0,
        &mut view_mut(c, m, n),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_the_definition() {
        // a 2×3, b 3×2
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = [0.0; 4];
        ab(&a, &b, &mut c, 2, 3, 2);
        assert_eq!(c, [4.0, 5.0, 10.0, 11.0]);
    }
}
