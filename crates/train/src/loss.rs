//! Categorical cross-entropy from logits, and its gradient.
//!
//! Keras's `CategoricalCrossentropy(from_logits=True)` with one-hot labels,
//! reduced by `sum_over_batch_size` (the mean over the batch). For a row of
//! logits `z` with true class `y`, using the row's own maximum `m` so that
//! `exp` never overflows (a matrix-wide maximum would underflow other rows):
//!
//! ```text
//! log_softmax(z)_j = (z_j - m) - ln Σ_k exp(z_k - m)
//! loss             = -log_softmax(z)_y
//! ```
//!
//! The gradient of the batch mean `L = (1/B) Σ_i loss_i` with respect to the
//! logits is, row by row,
//!
//! ```text
//! ∂L/∂z_ij = (softmax(z_i)_j - [j = y_i]) / B
//! ```
//!
//! which is what the dense layers back-propagate (linfa's
//! `multi_logistic_grad` documents the same `softmax(H) - Y`).

/// What one batch contributes to the epoch's running numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BatchStats {
    /// Sum of the per-row losses.
    pub(crate) loss_sum: f64,
    /// Rows whose largest logit (first one on ties, as `argmax`) is the label.
    pub(crate) correct: usize,
}

/// Loss and accuracy of `labels.len()` rows of `classes` logits; when `grad`
/// is given, writes `(softmax - onehot) * scale` into it (use
/// `scale = 1 / B` for the gradient of the batch mean).
pub(crate) fn cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    mut grad: Option<(&mut [f32], f32)>,
) -> BatchStats {
    let mut stats = BatchStats {
        loss_sum: 0.0,
        correct: 0,
    };
    for (i, (row, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let y = y as usize;
        let (mut arg, mut max) = (0, f32::NEG_INFINITY);
        for (j, &v) in row.iter().enumerate() {
            if v > max {
                (arg, max) = (j, v);
            }
        }
        let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
        let log_sum = sum.ln();
        stats.loss_sum += f64::from(-((row[y] - max) - log_sum));
        stats.correct += usize::from(arg == y);
        if let Some((g, scale)) = grad.as_mut() {
            let g = &mut g[i * classes..(i + 1) * classes];
            for (j, (gj, &v)) in g.iter_mut().zip(row).enumerate() {
                let p = (v - max).exp() / sum;
                let g = (p - f32::from(u8::from(j == y))) * *scale;
                // A class far below the row's best gets a subnormal
                // gradient; every product with one takes x86's slow
                // microcode path (the weight gradient ran 4× slower on
                // loss-60 batches). Below 1.2e-38 it is zero to any
                // float32 sum it joins.
                *gj = if g.abs() < f32::MIN_POSITIVE { 0.0 } else { g };
            }
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn loss_by_hand() {
        // two classes, logits [0, ln 3]: softmax [1/4, 3/4]
        let z = [0.0, 3f32.ln(), 2.0, 2.0];
        let s = cross_entropy(&z, &[1, 0], 2, None);
        // -ln(3/4) + -ln(1/2); row 2 ties -> argmax 0 = label
        assert_abs_diff_eq!(s.loss_sum, -(0.75f64.ln()) + 2f64.ln(), epsilon = 1e-6);
        assert_eq!(s.correct, 2);
    }

    #[test]
    fn huge_logits_stay_finite() {
        let z = [1e30, -1e30, 0.0, 88.0, 89.0, 90.0];
        let s = cross_entropy(&z, &[1, 0], 3, None);
        assert!(s.loss_sum.is_finite());
        assert_abs_diff_eq!(s.loss_sum, 2e30, epsilon = 1e25);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let z: Vec<f32> = vec![
            0.3, -1.2, 2.0, 0.1, 0.5, 0.5, -0.7, 1.9, -2.2, 0.0, 0.4, 1.1,
        ];
        let labels = [2, 0, 1, 1];
        let (b, c) = (4, 3);
        let mut g = vec![0.0; z.len()];
        cross_entropy(&z, &labels, c, Some((&mut g, 1.0 / b as f32)));
        let mean = |z: &[f32]| cross_entropy(z, &labels, c, None).loss_sum / b as f64;
        let h = 1e-2f32;
        for k in 0..z.len() {
            let (mut up, mut down) = (z.clone(), z.clone());
            up[k] += h;
            down[k] -= h;
            let numeric = (mean(&up) - mean(&down)) / (2.0 * h as f64);
            assert_abs_diff_eq!(g[k] as f64, numeric, epsilon = 1e-4);
        }
        // each row's gradient sums to zero
        for row in g.chunks(c) {
            assert_abs_diff_eq!(row.iter().sum::<f32>(), 0.0, epsilon = 1e-7);
        }
    }
}
