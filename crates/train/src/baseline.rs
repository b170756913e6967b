//! `--baseline`: linfa's multinomial logistic regression on the same
//! vectors, as a yardstick for the head.
//!
//! A softmax head without an inner layer is itself a multinomial logistic
//! regression; fitting it a second, independent way (L-BFGS on the L2
//! regularised full-batch loss, linfa's defaults: alpha 1, 100 iterations)
//! tells whether Adam's few epochs reached what this model class can do on
//! these vectors. Computed in f64 on a copy of the rows.
use linfa::prelude::{Fit, Predict};
use linfa::DatasetBase;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

use crate::data::Data;
use crate::{Error, Result};

/// What the baseline reached.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Baseline {
    /// Always `linfa-logistic MultiLogisticRegression`.
    pub(crate) model: &'static str,
    pub(crate) train_accuracy: f64,
    pub(crate) val_accuracy: f64,
    pub(crate) seconds: f64,
}

fn matrix(x: &[f32], rows: usize, dim: usize) -> Result<Array2<f64>> {
    Array2::from_shape_vec((rows, dim), x.iter().map(|&v| f64::from(v)).collect())
        .map_err(|e| Error::Baseline(e.to_string()))
}

fn accuracy(pred: &Array1<usize>, truth: &[u32]) -> f64 {
    let right = pred
        .iter()
        .zip(truth)
        .filter(|(p, t)| **p == **t as usize)
        .count();
    right as f64 / truth.len().max(1) as f64
}

/// Fits the baseline on the training split and scores both splits.
///
/// # Errors
/// [`Error::Baseline`] when linfa refuses the data or the solver fails.
pub(crate) fn fit(data: &Data) -> Result<Baseline> {
    let start = std::time::Instant::now();
    let d = data.dim();
    let x = matrix(&data.train.x, data.train.len(), d)?;
    let y = Array1::from_iter(data.train.y.iter().map(|&l| l as usize));
    let model = MultiLogisticRegression::<f64>::default()
        .fit(&DatasetBase::new(x.clone(), y))
        .map_err(|e| Error::Baseline(e.to_string()))?;
    let train_accuracy = accuracy(&model.predict(&x), &data.train.y);
    let xv = matrix(&data.val.x, data.val.len(), d)?;
    let val_accuracy = accuracy(&model.predict(&xv), &data.val.y);
    Ok(Baseline {
        model: "linfa-logistic MultiLogisticRegression",
        train_accuracy,
        val_accuracy,
        seconds: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{load, tests::folder};

    #[test]
    fn separable_vectors_are_learned() {
        let dir = folder(30, 3, |t, _| {
            for i in 0..t.len() {
                let l = t.labels[i] as usize;
                for j in 0..3 {
                    t.features[i * 3 + j] = if j == l { 1.0 } else { 0.0 } + (i % 5) as f32 * 0.01;
                }
            }
        });
        let data = load(dir.path(), "train", "validation").unwrap();
        let b = fit(&data).unwrap();
        assert_eq!(b.val_accuracy, 1.0);
    }
}
