//! Counters and histograms for `GET /metrics`, in Prometheus's text format
//! (version 0.0.4), written by hand: a handful of series do not need a
//! metrics framework.
//!
//! The batch-size histogram is the one that shows batching at work: its
//! `_count` is the number of `session.run` calls and its `_sum` the images
//! they ran, so `_sum / _count` is the mean batch. Time is split into
//! decoding, waiting for a batch, and the ONNX Runtime call, so a slow
//! server says where its time goes.
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Seconds buckets for the latency histograms.
const SECONDS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug)]
pub(crate) struct Histogram {
    bounds: Vec<f64>,
    state: Mutex<HistState>,
}

#[derive(Debug, Default)]
struct HistState {
    /// Observations per bucket (not cumulative; the last is +Inf).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: Vec<f64>) -> Self {
        let n = bounds.len() + 1;
        Histogram {
            bounds,
            state: Mutex::new(HistState {
                counts: vec![0; n],
                ..HistState::default()
            }),
        }
    }

    pub(crate) fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.counts[i] += 1;
        s.sum += v;
        s.count += 1;
    }

    pub(crate) fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (b, c) in self.bounds.iter().zip(&s.counts) {
            cum += c;
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "{name}_sum {}", s.sum);
        let _ = writeln!(out, "{name}_count {}", s.count);
    }
}

/// Everything `/metrics` reports.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Answers by (route, status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Refused or failed predictions by reason.
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// `/predict` requests being handled now.
    pub(crate) in_flight: AtomicI64,
    /// Images per ONNX Runtime call.
    pub(crate) batch_size: Histogram,
    /// Whole `/predict` requests, body received to answer ready.
    pub(crate) latency: Histogram,
    /// Decoding one image (bytes to model input).
    pub(crate) decode: Histogram,
    /// From a decoded image's arrival at the batcher to its call starting.
    pub(crate) queue: Histogram,
    /// One ONNX Runtime call (base + head), per batch.
    pub(crate) inference: Histogram,
}

impl Metrics {
    /// Batch-size buckets in powers of two up to `max_batch`.
    pub(crate) fn new(max_batch: usize) -> Self {
        let mut sizes = Vec::new();
        let mut b = 1usize;
        while b < max_batch {
            sizes.push(b as f64);
            b *= 2;
        }
        sizes.push(max_batch as f64);
        Metrics {
            requests: Mutex::default(),
            errors: Mutex::default(),
            in_flight: AtomicI64::new(0),
            batch_size: Histogram::new(sizes),
            latency: Histogram::new(SECONDS.to_vec()),
            decode: Histogram::new(SECONDS.to_vec()),
            queue: Histogram::new(SECONDS.to_vec()),
            inference: Histogram::new(SECONDS.to_vec()),
        }
    }

    pub(crate) fn count_request(&self, route: &'static str, status: u16) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((route, status))
            .or_default() += 1;
    }

    pub(crate) fn count_error(&self, reason: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// The text `GET /metrics` answers with.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP xfer_requests_total HTTP requests answered, by route and status.\n\
             # TYPE xfer_requests_total counter\n",
        );
        for ((route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "xfer_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str(
            "# HELP xfer_errors_total Predictions refused or failed, by reason.\n\
             # TYPE xfer_errors_total counter\n",
        );
        for (reason, n) in self.errors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "xfer_errors_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP xfer_in_flight /predict requests being handled.\n\
             # TYPE xfer_in_flight gauge\nxfer_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        self.batch_size.render(
            &mut out,
            "xfer_batch_size",
            "Images per ONNX Runtime call (_count = calls).",
        );
        self.latency.render(
            &mut out,
            "xfer_request_duration_seconds",
            "POST /predict, from the request's start to its answer.",
        );
        self.decode.render(
            &mut out,
            "xfer_decode_seconds",
            "Decoding one image into model input.",
        );
        self.queue.render(
            &mut out,
            "xfer_queue_seconds",
            "A decoded image waiting for its ONNX Runtime call to start.",
        );
        self.inference.render(
            &mut out,
            "xfer_inference_seconds",
            "One ONNX Runtime call (base and head) for a batch.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new(5);
        for b in [1.0, 3.0, 3.0, 5.0] {
            m.batch_size.observe(b);
        }
        m.count_request("predict", 200);
        m.count_request("predict", 200);
        m.count_error("empty");
        let text = m.render();
        for line in [
            "xfer_batch_size_bucket{le=\"1\"} 1",
            "xfer_batch_size_bucket{le=\"2\"} 1",
            "xfer_batch_size_bucket{le=\"4\"} 3",
            "xfer_batch_size_bucket{le=\"5\"} 4",
            "xfer_batch_size_bucket{le=\"+Inf\"} 4",
            "xfer_batch_size_sum 12",
            "xfer_batch_size_count 4",
            "xfer_requests_total{route=\"predict\",status=\"200\"} 2",
            "xfer_errors_total{reason=\"empty\"} 1",
            "xfer_in_flight 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }
}
