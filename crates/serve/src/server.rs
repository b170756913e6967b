//! Start and stop: the model loaded before the port opens, the threads and
//! the runtime, and the graceful shutdown.
//!
//! The listening line (`xfer serve: listening on http://ADDR`) goes to
//! stdout once the socket is bound, with the real port when `--addr` asked
//! for port 0, so scripts and tests can wait for it. Signals are registered
//! before that line, so a SIGTERM sent as soon as it appears is not lost.
//! On SIGTERM or Ctrl-C the listener closes, requests already received are
//! answered (their images still batched), `/health` says `ready: false`
//! meanwhile, and the inference thread ends when the last handler is gone.
use std::future::IntoFuture;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use xfer_extract::model::Device;
use xfer_predict::Classifier;

use crate::batch::Batcher;
use crate::metrics::Metrics;
use crate::routes::{router, App};
use crate::turns::Turns;
use crate::{Error, Result, ServeConfig};

pub(crate) fn run(cfg: ServeConfig) -> Result<u8> {
    let mut classifier = Classifier::open(&cfg.model, &cfg.head, &cfg.session)?;
    classifier.set_max_pixels(cfg.max_pixels);
    if let (Some(why), false) = (classifier.model().fallback(), cfg.quiet) {
        debug_assert_eq!(cfg.session.device, Device::Auto);
        eprintln!("xfer serve: running on CPU: the CUDA provider did not load: {why}");
    }
    let metrics = Arc::new(Metrics::new(cfg.max_batch));
    let spec = *classifier.spec();
    let classes = classifier.head().classes().to_vec();
    let provider = classifier.model().provider().to_string();
    let backbone = classifier.model().info().backbone.clone();
    let pool = xfer_predict::decode_pool(cfg.threads)?;
    let turns = Arc::new(Turns::new(classifier.model().takes_turns()));
    let (batcher, inference) = Batcher::start(
        classifier,
        cfg.max_batch,
        cfg.max_wait,
        metrics.clone(),
        turns.clone(),
    )
    .map_err(|e| Error::io("starting the inference thread", e))?;
    let app = Arc::new(App {
        batcher,
        metrics,
        pool,
        turns,
        spec,
        classes,
        max_body: cfg.max_body,
        read_timeout: cfg.read_timeout,
        ready: AtomicBool::new(true),
        model: cfg.model.clone(),
        head: cfg.head.clone(),
        provider,
        backbone,
        max_batch: cfg.max_batch,
    });
    // The HTTP side is light (reading bodies, answering): a few threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.clamp(1, 4))
        .thread_name("xfer-http")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    runtime.block_on(serve(&cfg, app))?;
    drop(runtime);
    // Every handler has finished, so the batcher's last sender is gone and
    // the inference thread is ending; wait for it, boundedly.
    let until = Instant::now() + Duration::from_secs(30);
    while !inference.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    if inference.is_finished() {
        inference
            .join()
            .map_err(|p| Error::Inference(panic_text(&*p)))?;
    }
    if !cfg.quiet {
        eprintln!("xfer serve: stopped");
    }
    Ok(0)
}

async fn serve(cfg: &ServeConfig, app: Arc<App>) -> Result<()> {
    let stop = Stop::register().map_err(|e| Error::io("registering signal handlers", e))?;
    let listener = tokio::net::TcpListener::bind(&cfg.addr)
        .await
        .map_err(|source| Error::Bind {
            addr: cfg.addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| Error::Bind {
        addr: cfg.addr.clone(),
        source,
    })?;
    if !cfg.quiet {
        eprintln!(
            "xfer serve: {} ({} classes, {}x{} input) on {}; batches of up to {} images, \
             waiting at most {} ms",
            app.backbone,
            app.classes.len(),
            app.spec.size,
            app.spec.size,
            app.provider,
            app.max_batch,
            cfg.max_wait.as_millis()
        );
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "xfer serve: listening on http://{local}");
    let _ = out.flush();
    drop(out);
    let quiet = cfg.quiet;
    let ready = app.clone();
    let (stopping, mut stopped) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(app)).with_graceful_shutdown(async move {
        stop.wait().await;
        ready.ready.store(false, Ordering::Relaxed);
        let _ = stopping.send(true);
        if !quiet {
            eprintln!("xfer serve: stopping: answering the requests in flight");
        }
    });
    // A connection that never completes its request head (hyper's header
    // timeout needs a timer axum::serve does not set) would hold the
    // graceful shutdown forever: after the signal, in-flight work gets the
    // body timeout plus 30 s, then the rest is closed.
    let grace = cfg.read_timeout + Duration::from_secs(30);
    tokio::select! {
        r = server.into_future() => r.map_err(|e| Error::io("serving", e)),
        () = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            if !quiet {
                eprintln!(
                    "xfer serve: connections still open {} s after the signal; closing them",
                    grace.as_secs()
                );
            }
            Ok(())
        }
    }
}

/// SIGTERM and SIGINT (Ctrl-C), registered at once.
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Stop {
    #[cfg(unix)]
    fn register() -> std::io::Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Stop {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn register() -> std::io::Result<Stop> {
        Ok(Stop {})
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "panic".into())
}
