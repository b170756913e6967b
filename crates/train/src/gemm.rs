//! Matrix products on row-major `f32` slices.
//!
//! Training spends nearly all its time in three products per layer
//! (forward `x·W`, weight gradient `xᵀ·dz`, input gradient `dz·Wᵀ`). They go
//! through ndarray's `general_mat_mul`, which runs matrixmultiply's packed
//! sgemm kernels on borrowed views: no copy of the data, no allocation in the
//! loop, and no `unsafe` in this crate. Transposes are stride swaps.
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

/// `c[k×n] = a[m×k]ᵀ · b[m×n]` (weight gradient: inputs transposed times
/// output gradient).
pub(crate) fn at_b(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) {
    general_mat_mul(
        1.0,
        &view(a, m, k).t(),
        &view(b, m, n),
        0.0,
        &mut view_mut(c, k, n),
    );
}

/// `c[m×k] = a[m×n] · b[k×n]ᵀ` (input gradient: output gradient times the
/// kernel transposed).
pub(crate) fn a_bt(a: &[f32], b: &[f32], c: &mut [f32], m: usize, n: usize, k: usize) {
    general_mat_mul(
        1.0,
        &view(a, m, n),
        &view(b, k, n).t(),
        0.0,
        &mut view_mut(c, m, k),
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
        // aᵀ (3×2) · d (2×2)
        let d = [1.0, 2.0, 3.0, 4.0];
        let mut e = [0.0; 6];
        at_b(&a, &d, &mut e, 2, 3, 2);
        assert_eq!(e, [13.0, 18.0, 17.0, 24.0, 21.0, 30.0]);
        // a (2×3) · fᵀ where f is 2×3
        let mut g = [0.0; 4];
        a_bt(&a, &a, &mut g, 2, 3, 2);
        assert_eq!(g, [14.0, 32.0, 32.0, 77.0]);
    }
}
