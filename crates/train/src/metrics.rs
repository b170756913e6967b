//! Classification metrics: accuracy, per-class precision, recall and F1,
//! and the confusion matrix with rows = true class, columns = predicted.
//!
//! The overall accuracy comes from linfa's `ConfusionMatrix`. The matrix
//! itself and the per-class numbers are counted here, because linfa 0.8's
//! `ConfusionMatrix` cannot give them in the contract's form: its matrix is
//! private, indexed `[predicted, true]`, restricted to the labels that occur
//! (a class never seen shifts every index), reversed for two labels, and its
//! one-vs-all `precision()`/`recall()` are swapped relative to the usual
//! definitions (its own test expects precision 1.0 for a class predicted 3
//! times with 2 right). `linfa_agrees` pins those facts in a test, so an
//! upgrade that changes them is noticed. Definitions here are
//! scikit-learn's: precision = TP / predicted, recall = TP / true, F1 their
//! harmonic mean, 0 where a denominator is 0.
use linfa::prelude::ToConfusionMatrix;
use ndarray::Array1;

/// One class's numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ClassMetrics {
    pub(crate) class: String,
    pub(crate) precision: f64,
    pub(crate) recall: f64,
    pub(crate) f1: f64,
    /// Rows whose true class this is.
    pub(crate) support: usize,
}

/// Metrics of predictions against true labels.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Metrics {
    pub(crate) rows: usize,
    pub(crate) accuracy: f64,
    pub(crate) classes: Vec<String>,
    pub(crate) per_class: Vec<ClassMetrics>,
    /// Unweighted means of the per-class numbers.
    pub(crate) macro_precision: f64,
    pub(crate) macro_recall: f64,
    pub(crate) macro_f1: f64,
    /// `confusion[true][predicted]` counts.
    pub(crate) confusion: Vec<Vec<usize>>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Index of the largest value of each row of `classes` logits (first on ties).
pub(crate) fn argmax_rows(logits: &[f32], classes: usize) -> Vec<u32> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// Metrics of `predicted` against `truth` (both indexes into `classes`).
pub(crate) fn compute(classes: &[String], truth: &[u32], predicted: &[u32]) -> Metrics {
    let c = classes.len();
    let mut confusion = vec![vec![0usize; c]; c];
    for (&t, &p) in truth.iter().zip(predicted) {
        confusion[t as usize][p as usize] += 1;
    }
    let correct: usize = (0..c).map(|k| confusion[k][k]).sum();
    let per_class: Vec<ClassMetrics> = (0..c)
        .map(|k| {
            let tp = confusion[k][k];
            let support: usize = confusion[k].iter().sum();
            let predicted: usize = confusion.iter().map(|row| row[k]).sum();
            let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                class: classes[k].clone(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let mean = |f: fn(&ClassMetrics) -> f64| per_class.iter().map(f).sum::<f64>() / c.max(1) as f64;
    let accuracy = linfa_accuracy(truth, predicted).unwrap_or_else(|| ratio(correct, truth.len()));
    Metrics {
        rows: truth.len(),
        accuracy,
        classes: classes.to_vec(),
        macro_precision: mean(|m| m.precision),
        macro_recall: mean(|m| m.recall),
        macro_f1: mean(|m| m.f1),
        per_class,
        confusion,
    }
}

/// Accuracy through linfa's confusion matrix (`None` for no rows).
fn linfa_accuracy(truth: &[u32], predicted: &[u32]) -> Option<f64> {
    if truth.is_empty() {
        return None;
    }
    let t = Array1::from_iter(truth.iter().map(|&v| v as usize));
    let p = Array1::from_iter(predicted.iter().map(|&v| v as usize));
    p.confusion_matrix(&t)
        .ok()
        .map(|cm| f64::from(cm.accuracy()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn small_case_by_hand() {
        // truth:     0 0 0 1 1 2
        // predicted: 0 0 1 1 2 2    (class 3 never occurs)
        let m = compute(&names(4), &[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2]);
        assert_eq!(
            m.confusion,
            vec![
                vec![2, 1, 0, 0],
                vec![0, 1, 1, 0],
                vec![0, 0, 1, 0],
                vec![0; 4]
            ]
        );
        assert_abs_diff_eq!(m.accuracy, 4.0 / 6.0, epsilon = 1e-6);
        let p: Vec<f64> = m.per_class.iter().map(|c| c.precision).collect();
        let r: Vec<f64> = m.per_class.iter().map(|c| c.recall).collect();
        assert_eq!(p, vec![1.0, 0.5, 0.5, 0.0]);
        assert_eq!(r, vec![2.0 / 3.0, 0.5, 1.0, 0.0]);
        assert_abs_diff_eq!(m.per_class[0].f1, 0.8, epsilon = 1e-12);
        assert_eq!(m.per_class[3].f1, 0.0);
        assert_eq!(
            m.per_class.iter().map(|c| c.support).collect::<Vec<_>>(),
            vec![3, 2, 1, 0]
        );
    }

    #[test]
    fn argmax_takes_the_first_of_ties() {
        assert_eq!(argmax_rows(&[1.0, 3.0, 3.0, 0.0, 0.0, 0.0], 3), vec![1, 0]);
    }

    /// linfa's own example (metrics_classification.rs, `test_cm_metrices`):
    /// truth `[1,1,0,1,0,1]`, predicted `[0,1,0,1,0,1]`. Class 0 is predicted
    /// 3 times, 2 right: precision 2/3, recall 1. linfa reports the two
    /// swapped, which is why the per-class numbers are counted here.
    #[test]
    fn linfa_agrees_on_accuracy_and_swaps_precision_and_recall() {
        let truth = [1u32, 1, 0, 1, 0, 1];
        let pred = [0u32, 1, 0, 1, 0, 1];
        let m = compute(&names(2), &truth, &pred);
        assert_abs_diff_eq!(m.accuracy, 5.0 / 6.0, epsilon = 1e-6);
        assert_abs_diff_eq!(m.per_class[0].precision, 2.0 / 3.0, epsilon = 1e-12);
        assert_abs_diff_eq!(m.per_class[0].recall, 1.0, epsilon = 1e-12);
        let t = Array1::from_iter(truth.iter().map(|&v| v as usize));
        let p = Array1::from_iter(pred.iter().map(|&v| v as usize));
        let cm = p.confusion_matrix(&t).unwrap();
        // members are [1, 0] (reversed for two labels); split index 1 = class 0
        let class0 = &cm.split_one_vs_all()[1];
        assert_abs_diff_eq!(class0.precision(), 1.0, epsilon = 1e-6);
        assert_abs_diff_eq!(class0.recall(), 2.0 / 3.0, epsilon = 1e-6);
    }
}
