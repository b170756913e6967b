//! The HTTP routes and the state they share.
//!
//! `POST /predict` receives the body (`upload.rs`), decodes it on the
//! decoding pool (the pixels of `xfer extract` and `xfer predict`, through
//! [`xfer_extract::pixels`]), queues the model input for the batcher
//! (`batch.rs`) and answers with the JSON object of `xfer predict --json`
//! less `path`, built by the same function. The other routes are small:
//! `GET /health`, `GET /metrics`, and `GET /` (the upload page, compiled
//! into the binary).
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::oneshot;
use xfer_extract::pixels::{self, PixelSpec};

use crate::batch::{Batcher, Job, Refused};
use crate::metrics::Metrics;
use crate::upload::{self, Rejection};

/// The upload page: plain HTML and script, no external resources.
const PAGE: &str = include_str!("page.html");

/// What every handler shares.
pub(crate) struct App {
    pub(crate) batcher: Batcher,
    pub(crate) metrics: Arc<Metrics>,
    /// Decoding threads (beside the inference thread).
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) spec: PixelSpec,
    pub(crate) classes: Vec<String>,
    pub(crate) max_body: usize,
    pub(crate) read_timeout: Duration,
    /// False once shutdown has begun.
    pub(crate) ready: AtomicBool,
    /// `/health`'s facts about the model.
    pub(crate) model: PathBuf,
    pub(crate) head: PathBuf,
    pub(crate) provider: String,
    pub(crate) backbone: String,
    pub(crate) max_batch: usize,
}

/// The router over `app`.
pub(crate) fn router(app: Arc<App>) -> Router {
    let max_body = app.max_body;
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/predict", post(predict))
        // Our own reading enforces the limit (upload.rs); this makes axum's
        // multipart parser, given the body already received, agree with it.
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

async fn page(State(app): State<Arc<App>>) -> Html<&'static str> {
    app.metrics.count_request("page", 200);
    Html(PAGE)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    app.metrics.count_request("health", 200);
    let body = serde_json::json!({
        "model": app.model.display().to_string(),
        "head": app.head.display().to_string(),
        "backbone": app.backbone,
        "classes": app.classes,
        "size": app.spec.size,
        "decode": app.spec.decode.name(),
        "provider": app.provider,
        "max_batch": app.max_batch,
        "ready": app.ready.load(Ordering::Relaxed),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    app.metrics.count_request("metrics", 200);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

/// Keeps the in-flight gauge right even when the client goes away and the
/// handler is dropped mid-way.
struct InFlight<'a>(&'a Metrics);

impl<'a> InFlight<'a> {
    fn new(m: &'a Metrics) -> Self {
        m.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(m)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn predict(State(app): State<Arc<App>>, req: Request) -> Response {
    let start = Instant::now();
    let guard = InFlight::new(&app.metrics);
    let response = match classify(&app, req).await {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(r) => {
            app.metrics.count_error(r.reason);
            r.into_response()
        }
    };
    drop(guard);
    app.metrics.latency.observe_duration(start.elapsed());
    app.metrics
        .count_request("predict", response.status().as_u16());
    response
}

async fn classify(app: &App, req: Request) -> Result<String, Rejection> {
    let top = top_param(req.uri(), app.classes.len())?;
    let bytes = upload::image_bytes(req, app.max_body, app.read_timeout).await?;

    let decoded = Instant::now();
    let (tx, rx) = oneshot::channel();
    let spec = app.spec;
    app.pool.spawn(move || {
        // A panic in a decoder must not take the pool down with it (rayon
        // aborts on a panicking spawned job); the dropped sender says it.
        let r = catch_unwind(AssertUnwindSafe(|| pixels::from_bytes(&bytes, &spec)));
        if let Ok(r) = r {
            let _ = tx.send(r);
        }
    });
    let tensor = rx
        .await
        .map_err(|_| {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                "broken",
                "the decoder failed on this image",
            )
        })?
        .map_err(|e| upload::bad_image(e.0))?;
    app.metrics.decode.observe_duration(decoded.elapsed());

    let (reply, answer) = oneshot::channel();
    let job = Job {
        tensor,
        top,
        reply,
        queued: Instant::now(),
    };
    app.batcher.submit(job).map_err(|why| match why {
        Refused::Busy => Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many requests waiting for the model; retry shortly",
        ),
        Refused::Stopped => stopped(),
    })?;
    match answer.await {
        Ok(Ok(classes)) => xfer_predict::output::json_object(None, &Ok(classes)).map_err(|e| {
            Rejection::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        }),
        Ok(Err(msg)) => Err(Rejection::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "inference",
            msg,
        )),
        Err(_) => Err(stopped()),
    }
}

fn stopped() -> Rejection {
    Rejection::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "stopped",
        "the model is no longer running (the server is stopping)",
    )
}

/// `?top=K` (default 3, as `xfer predict`), at most the number of classes.
fn top_param(uri: &Uri, classes: usize) -> Result<usize, Rejection> {
    let bad = |msg: String| Rejection::new(StatusCode::BAD_REQUEST, "bad_request", msg);
    let Query(q) = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map_err(|e| bad(format!("query string: {}", e.body_text())))?;
    match q.get("top") {
        None => Ok(3.min(classes)),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&k| k >= 1)
            .map(|k| k.min(classes))
            .ok_or_else(|| bad(format!("top={v:?} is not a positive number of classes"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_is_checked_and_capped() {
        let top = |q: &str| top_param(&q.parse::<Uri>().unwrap(), 4).map_err(|r| r.status);
        assert_eq!(top("/predict"), Ok(3));
        assert_eq!(top("/predict?top=2"), Ok(2));
        assert_eq!(top("/predict?top=10"), Ok(4));
        assert_eq!(top("/predict?top=0"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(top("/predict?top=-1"), Err(StatusCode::BAD_REQUEST));
        assert_eq!(top("/predict?top=x"), Err(StatusCode::BAD_REQUEST));
    }
}
