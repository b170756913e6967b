//! Adam, written out exactly as `keras.optimizers.Adam` computes it.
//!
//! This is Adam (Kingma & Ba), not AdamW: there is no weight decay at all.
//! Keras 3 (`keras/src/optimizers/adam.py`, `update_step`) folds both bias
//! corrections into the step size and adds epsilon to the *uncorrected*
//! `sqrt(v)`, which is not PyTorch's placement (`sqrt(v̂) + eps`). With
//! `t` counted from 1 and everything in float32:
//!
//! ```text
//! alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
//! m    += (g - m) * (1 - beta_1)
//! v    += (g² - v) * (1 - beta_2)
//! w    -= (m * alpha) / (sqrt(v) + epsilon)
//! ```
//!
//! Moments that decay below `f32::MIN_POSITIVE` are set to zero (see
//! [`flush`]), which only avoids slow subnormal arithmetic.
//!
//! Defaults are Keras's: beta_1 0.9, beta_2 0.999, epsilon 1e-7 (the
//! learning rate default of `xfer train` is 0.01, the course's). The
//! operations keep Keras's order so the float32 results agree to rounding.

/// Hyperparameters; `Default` is `keras.optimizers.Adam()` with lr 0.01.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub(crate) struct AdamParams {
    /// Learning rate.
    pub(crate) lr: f32,
    /// Decay of the first moment.
    pub(crate) beta_1: f64,
    /// Decay of the second moment.
    pub(crate) beta_2: f64,
    /// Added to `sqrt(v)` in the denominator.
    pub(crate) epsilon: f64,
}

impl Default for AdamParams {
    fn default() -> Self {
        AdamParams {
            lr: 0.01,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Adam state: one first and second moment per parameter tensor, and the
/// step count shared by all of them (Keras's `iterations`).
#[derive(Debug, Clone)]
pub(crate) struct Adam {
    params: AdamParams,
    iterations: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

/// The per-step scalars, computed once per step for every tensor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    alpha: f32,
    one_minus_beta_1: f32,
    one_minus_beta_2: f32,
    epsilon: f32,
}

impl Adam {
    /// Zero moments for tensors of the given lengths.
    pub(crate) fn new(params: AdamParams, sizes: &[usize]) -> Adam {
        Adam {
            params,
            iterations: 0,
            m: sizes.iter().map(|&n| vec![0.0; n]).collect(),
            v: sizes.iter().map(|&n| vec![0.0; n]).collect(),
        }
    }

    /// Starts a step: counts it and computes the bias-corrected step size.
    pub(crate) fn begin_step(&mut self) -> Step {
        self.iterations += 1;
        let p = &self.params;
        let t = self.iterations as f32;
        let beta_1_power = (p.beta_1 as f32).powf(t);
        let beta_2_power = (p.beta_2 as f32).powf(t);
        Step {
            alpha: p.lr * (1.0 - beta_2_power).sqrt() / (1.0 - beta_1_power),
            one_minus_beta_1: (1.0 - p.beta_1) as f32,
            one_minus_beta_2: (1.0 - p.beta_2) as f32,
            epsilon: p.epsilon as f32,
        }
    }

    /// Applies the step to tensor `index` given its gradient.
    pub(crate) fn update(&mut self, step: Step, index: usize, var: &mut [f32], grad: &[f32]) {
        let (m, v) = (&mut self.m[index], &mut self.v[index]);
        // Elementwise: a big tensor updates as two halves side by side, to
        // the same numbers.
        if var.len() >= SPLIT_FROM {
            let mid = var.len() / 2;
            let (w1, w2) = var.split_at_mut(mid);
            let (g1, g2) = grad.split_at(mid);
            let (m1, m2) = m.split_at_mut(mid);
            let (v1, v2) = v.split_at_mut(mid);
            rayon::join(
                || update(step, w1, g1, m1, v1),
                || update(step, w2, g2, m2, v2),
            );
        } else {
            update(step, var, grad, m, v);
        }
    }
}

/// Tensors from this many values update in two halves at once.
const SPLIT_FROM: usize = 16 * 1024;

/// The elementwise update, compiled for the CPU's widest vectors (square
/// root and division included). Operations stay unfused and in Keras's
/// order: only the vector width changes, not a single rounding.
#[multiversion::multiversion(targets = "simd")]
fn update(step: Step, var: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((w, &g), m), v) in var.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = flush(*m + (g - *m) * step.one_minus_beta_1);
        *v = flush(*v + (g * g - *v) * step.one_minus_beta_2);
        *w -= (*m * step.alpha) / (v.sqrt() + step.epsilon);
    }
}

/// Zero for subnormal values. A unit whose gradient stays 0 (a dead relu,
/// say) has moments that decay geometrically into the subnormal range,
/// where every x86 operation on them takes a slow microcode path: a run
/// became 3× slower that way. Flushing changes values below 1.2e-38 only,
/// far under anything the history can show.
#[inline]
fn flush(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    /// Two steps against Keras 3.15 (JAX backend), computed with:
    ///
    /// ```python
    /// import os; os.environ["KERAS_BACKEND"] = "jax"
    /// import numpy as np, keras
    /// w = keras.Variable(np.array([0.5, -1.0, 2.0], dtype="float32"))
    /// opt = keras.optimizers.Adam(learning_rate=0.01)
    /// for g in ([0.1, -0.2, 3.0], [-0.05, 0.4, 1e-4]):
    ///     opt.apply_gradients([(np.array(g, dtype="float32"), w)])
    ///     print([float(x) for x in np.asarray(w)])
    /// ```
    #[test]
    fn two_steps_equal_keras() {
        let mut w = [0.5f32, -1.0, 2.0];
        let mut adam = Adam::new(AdamParams::default(), &[3]);
        let keras = [
            [0.4900003969669342, -0.9900002479553223, 1.9900001287460327],
            [0.4873371422290802, -0.9936612248420715, 1.9832993745803833],
        ];
        for (g, expected) in [[0.1, -0.2, 3.0], [-0.05, 0.4, 1e-4]].iter().zip(keras) {
            let step = adam.begin_step();
            adam.update(step, 0, &mut w, g);
            for (a, b) in w.iter().zip(expected) {
                assert_abs_diff_eq!(*a as f64, b, epsilon = 1e-7);
            }
        }
    }

    #[test]
    fn decaying_moments_flush_to_zero() {
        let mut w = [1.0f32];
        let mut adam = Adam::new(AdamParams::default(), &[1]);
        let step = adam.begin_step();
        adam.update(step, 0, &mut w, &[1e-3]);
        for _ in 0..2000 {
            let step = adam.begin_step();
            adam.update(step, 0, &mut w, &[0.0]);
        }
        assert_eq!(
            adam.m[0][0], 0.0,
            "0.9^2000 is far below f32's normal range"
        );
        assert!(adam.v[0][0] > 0.0, "0.999^2000 is not");
    }

    #[test]
    fn epsilon_sits_outside_the_bias_correction() {
        // First step with a tiny gradient: Keras's placement gives
        // lr * sqrt(1-b2)/(1-b1) * 0.1g / (sqrt(0.001) g + eps), PyTorch's
        // lr * g / (g + eps); they differ visibly when g ~ eps.
        let g = 1e-7f32;
        let mut w = [0.0f32];
        let mut adam = Adam::new(
            AdamParams {
                lr: 1.0,
                ..AdamParams::default()
            },
            &[1],
        );
        let step = adam.begin_step();
        adam.update(step, 0, &mut w, &[g]);
        let keras = -(0.1 * g * (0.001f32.sqrt() / 0.1)) / ((0.001 * g * g).sqrt() + 1e-7);
        assert_abs_diff_eq!(w[0], keras, epsilon = 1e-6);
        assert!(
            (w[0] - (-0.5)).abs() > 0.1,
            "PyTorch placement would give -0.5"
        );
    }
}
