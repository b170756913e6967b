//! The head as training holds it: kernels output-major.
//!
//! [`Head`] keeps Keras's layout (`kernel[k·outputs + j]`, input-major), the
//! one head files and `xfer predict` use. The training kernels
//! ([`crate::kernels`]) want each output's weights in one contiguous row, so
//! a fit converts the head once at the start and back only when it keeps a
//! snapshot (best and last epoch). Adam is elementwise, so its moments live
//! in the same transposed layout without any change to the update.
use crate::head::{Dense, Head};
use crate::kernels;

/// A dense layer with its kernel output-major: `wt[j·inputs..(j+1)·inputs]`
/// is output `j`'s weights.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) inputs: usize,
    pub(crate) wt: Vec<f32>,
    pub(crate) bias: Vec<f32>,
}

impl Layer {
    fn from_dense(d: &Dense) -> Layer {
        Layer {
            inputs: d.inputs,
            wt: kernels::transpose(&d.kernel, d.inputs, d.outputs),
            bias: d.bias.clone(),
        }
    }

    fn to_dense(&self) -> Dense {
        Dense {
            inputs: self.inputs,
            outputs: self.outputs(),
            kernel: kernels::transpose(&self.wt, self.outputs(), self.inputs),
            bias: self.bias.clone(),
        }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `z[i] = x[idx[i]]·kernel + bias` for the rows `idx` of `x`.
    pub(crate) fn forward(&self, x: &[f32], idx: &[usize], z: &mut [f32]) {
        kernels::forward(x, self.inputs, idx, &self.wt, &self.bias, z);
    }
}

/// A head's layers, output-major.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub(crate) inner: Option<Layer>,
    pub(crate) dense: Layer,
}

impl Net {
    pub(crate) fn from_head(head: &Head) -> Net {
        Net {
            inner: head.inner().map(Layer::from_dense),
            dense: Layer::from_dense(head.dense()),
        }
    }

    /// The head with these weights, in Keras's layout; `like` gives the
    /// metadata.
    pub(crate) fn to_head(&self, like: &Head) -> Head {
        let mut head = like.clone();
        head.inner = self.inner.as_ref().map(Layer::to_dense);
        head.dense = self.dense.to_dense();
        head
    }

    /// Input width (the vector dimension).
    pub(crate) fn inputs(&self) -> usize {
        self.inner.as_ref().map_or(self.dense.inputs, |l| l.inputs)
    }

    /// Width of the inner layer, 0 without one.
    pub(crate) fn hidden(&self) -> usize {
        self.inner.as_ref().map_or(0, Layer::outputs)
    }

    /// Number of classes.
    pub(crate) fn classes(&self) -> usize {
        self.dense.outputs()
    }

    /// Parameter tensors in Adam's order: inner kernel, inner bias, dense
    /// kernel, dense bias (empty when there is no inner layer).
    pub(crate) fn sizes(&self) -> [usize; 4] {
        let (ik, ib) = self
            .inner
            .as_ref()
            .map_or((0, 0), |l| (l.wt.len(), l.bias.len()));
        [ik, ib, self.dense.wt.len(), self.dense.bias.len()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer_features::FeatureMeta;

    #[test]
    fn round_trips_and_computes_the_heads_logits() {
        let meta = FeatureMeta::new(vec!["a".into(), "b".into(), "c".into()], 5);
        for inner in [None, Some(4)] {
            let head = Head::glorot(meta.clone(), inner, 7);
            let net = Net::from_head(&head);
            assert_eq!(net.to_head(&head), head);
            let x: Vec<f32> = (0..10).map(|i| i as f32 / 10.0 - 0.4).collect();
            let want = head.logits(&x, 2);
            let idx = [0, 1];
            let mut z = vec![0.0; 6];
            match &net.inner {
                None => net.dense.forward(&x, &idx, &mut z),
                Some(l) => {
                    let mut h = vec![0.0; 8];
                    l.forward(&x, &idx, &mut h);
                    h.iter_mut().for_each(|v| *v = v.max(0.0));
                    net.dense.forward(&h, &idx, &mut z);
                }
            }
            for (a, b) in z.iter().zip(&want) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
    }
}
