//! `xfer serve` end to end: the binary on a free loopback port with the tiny
//! base and generated images, driven by a real HTTP client (ureq; a raw
//! socket only where a client must misbehave: a slow body, a body announced
//! too large). Every wait is bounded in count and time.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::predict::{hand_head, predict_json, setup};
use crate::util::{ort_lib, run_python};

/// A running `xfer serve`, stopped (SIGKILL) if a test fails half-way.
struct Server {
    child: Child,
    url: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `xfer serve --addr 127.0.0.1:0` and waits (at most 60 s) for
    /// its listening line.
    fn start(root: &Path, model: &Path, head: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xfer"))
            .env("XDG_CACHE_HOME", root)
            .env("ORT_DYLIB_PATH", ort_lib())
            .arg("serve")
            .arg("--model")
            .arg(model)
            .arg("--head")
            .arg(head)
            .args(["--addr", "127.0.0.1:0", "--threads", "2", "--device", "cpu"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start xfer serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            sink.lock().unwrap().push_str(&s);
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
        let url = line
            .trim()
            .strip_prefix("xfer serve: listening on ")
            .map(str::to_string);
        let mut server = Server {
            child,
            url: String::new(),
            stderr,
        };
        match url {
            Some(u) => server.url = u,
            None => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "no listening line (got {line:?}); stderr:\n{}",
                    server.stderr.lock().unwrap()
                );
            }
        }
        server
    }

    fn addr(&self) -> &str {
        self.url.strip_prefix("http://").unwrap()
    }

    /// Waits at most 30 s for the exit.
    fn wait(&mut self) -> ExitStatus {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < until, "xfer serve did not stop in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// POSTs `body` to `url` (with `content_type`); (status, body text).
fn post(url: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut r = agent()
        .post(url)
        .header("content-type", content_type)
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap())
}

fn get(url: &str) -> (u16, String) {
    let mut r = agent()
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON: {text}: {e}"))
}

/// The value of an unlabelled metric line `name value`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// The PNG files of the generated dataset, in `xfer predict`'s order.
fn pngs(data: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for split in ["train", "validation"] {
        for class in ["blue", "red"] {
            let mut files: Vec<PathBuf> = std::fs::read_dir(data.join(split).join(class))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            v.extend(files);
        }
    }
    v
}

/// The server's answer is `xfer predict --json`'s object for the same file
/// less `path`: the same classes, in the same order, with the same
/// probabilities to the bit (each image's numbers do not depend on the
/// batch it ran in).
fn assert_same(want: &Value, got: &Value, what: &str) {
    let mut want = want.clone();
    want.as_object_mut().unwrap().remove("path");
    assert_eq!(&want, got, "{what}");
}

#[test]
fn concurrent_predictions_equal_predict_json_and_share_calls() {
    let (tmp, model, data, features) = setup();
    let root = tmp.path();
    let head = hand_head(root, &features, Some(6));
    let files = pngs(&data);
    let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, want, stderr) = predict_json(root, &model, &head, &inputs, &["--top", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(want.len(), files.len());

    // A long wait and room for every image: the burst shares few calls.
    let server = Server::start(
        root,
        &model,
        &head,
        &["--max-batch", "32", "--max-wait-ms", "300"],
    );
    let url = format!("{}/predict?top=2", server.url);
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .map(|f| {
                let url = &url;
                s.spawn(move || post(url, "image/png", &std::fs::read(f).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((status, body), (want, file)) in answers.iter().zip(want.iter().zip(&files)) {
        assert_eq!(*status, 200, "{}: {body}", file.display());
        assert_same(want, &json(body), &file.display().to_string());
    }

    let (_, metrics) = get(&format!("{}/metrics", server.url));
    let calls = metric(&metrics, "xfer_batch_size_count");
    let images = metric(&metrics, "xfer_batch_size_sum");
    assert_eq!(images, files.len() as f64, "{metrics}");
    assert!(
        calls < images,
        "{images} concurrent requests took {calls} session.run calls:\n{metrics}"
    );
    assert!(metrics.contains("xfer_requests_total{route=\"predict\",status=\"200\"} 22"));

    // The same image as a multipart form, `?top` defaulting to 3 (all 2
    // classes here), and /health.
    let bytes = std::fs::read(&files[0]).unwrap();
    let mut form = b"--XFERb0undary\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
--XFERb0undary\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
Content-Type: image/png\r\n\r\n"
        .to_vec();
    form.extend_from_slice(&bytes);
    form.extend_from_slice(b"\r\n--XFERb0undary--\r\n");
    let (status, body) = post(
        &format!("{}/predict", server.url),
        "multipart/form-data; boundary=XFERb0undary",
        &form,
    );
    assert_eq!(status, 200, "{body}");
    assert_same(&want[0], &json(&body), "multipart");
    let (status, body) = post(
        &format!("{}/predict?top=1", server.url),
        "image/png",
        &bytes,
    );
    assert_eq!(status, 200);
    assert_eq!(json(&body)["top"].as_array().unwrap().len(), 1);

    let (status, body) = get(&format!("{}/health", server.url));
    assert_eq!(status, 200);
    let h = json(&body);
    assert_eq!(h["classes"], serde_json::json!(["blue", "red"]));
    assert_eq!(h["ready"], true);
    assert_eq!(h["provider"], "CPU");
    assert_eq!(h["size"], 32);
    let (status, page) = get(&server.url);
    assert_eq!(status, 200);
    assert!(page.contains("<title>xfer serve</title>") && page.contains("textContent"));
    assert!(
        !page.contains("innerHTML"),
        "the page must not build markup"
    );
}

/// A 40000x40000 RGB PNG of a few KB: a valid header, a few rows of data.
fn bomb_png(path: &Path) {
    let script = r#"
import struct, sys, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
w = h = 40000
rows = zlib.compress(b'\x00' * ((1 + 3 * w) * 4), 9)
png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
       + chunk(b'IDAT', rows) + chunk(b'IEND', b''))
open(sys.argv[1], 'wb').write(png)
"#;
    run_python(&["-c", script, path.to_str().unwrap()]);
}

/// Writes `head` (and `body`) on a fresh connection and reads the answer's
/// status line, waiting at most `wait`.
fn raw_status(addr: &str, head: &str, body: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}

#[test]
fn hostile_uploads_get_their_status_and_the_server_goes_on() {
    let (tmp, model, data, features) = setup();
    let root = tmp.path();
    let head = hand_head(root, &features, None);
    let server = Server::start(
        root,
        &model,
        &head,
        &["--max-body", "64KiB", "--read-timeout-ms", "2000"],
    );
    let url = format!("{}/predict", server.url);
    let good = std::fs::read(data.join("validation/red/00.png")).unwrap();
    let (status, body) = post(&url, "image/png", &good);
    assert_eq!(status, 200, "{body}");
    let good_answer = json(&body);
    let still_good = |case: &str| {
        let (status, body) = post(&url, "image/png", &good);
        assert_eq!(status, 200, "after {case}: {body}");
        assert_eq!(json(&body), good_answer, "after {case}");
    };

    let bomb = root.join("bomb.png");
    bomb_png(&bomb);
    let bomb = std::fs::read(&bomb).unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb is {} bytes", bomb.len());
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("empty", Vec::new(), "image/png", 400, "empty"),
        (
            "text",
            b"certainly not an image".to_vec(),
            "text/plain",
            415,
            "cannot identify",
        ),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "image/png",
            400,
            "PNG",
        ),
        (
            "gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            "image/gif",
            415,
            "GIF",
        ),
        ("bomb", bomb, "image/png", 422, "40000x40000"),
        (
            "form without image",
            b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n".to_vec(),
            "multipart/form-data; boundary=b",
            400,
            "field `image`",
        ),
        (
            "over max-body",
            vec![7u8; 100 * 1024],
            "image/png",
            413,
            "--max-body",
        ),
    ];
    for (case, body, ctype, want, says) in &cases {
        let (status, text) = post(&url, ctype, body);
        assert_eq!(status, *want, "{case}: {text}");
        let err = json(&text)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            err.contains(says),
            "{case}: {err:?} should mention {says:?}"
        );
        still_good(case);
    }
    let (status, text) = post(&format!("{url}?top=0"), "image/png", &good);
    assert_eq!(status, 400, "{text}");

    // A body announced far over the limit is refused before it is sent.
    let line = raw_status(
        server.addr(),
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 50000000\r\n\r\n",
        b"\x89PNG",
        Duration::from_secs(20),
    );
    assert!(line.starts_with("HTTP/1.1 413"), "{line:?}");
    // A chunked body (no length announced) is cut at the limit.
    let mut chunk = format!("{:x}\r\n", 70 * 1024).into_bytes();
    chunk.extend(std::iter::repeat_n(b'x', 70 * 1024));
    chunk.extend_from_slice(b"\r\n");
    let line = raw_status(
        server.addr(),
        "POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        &chunk,
        Duration::from_secs(20),
    );
    assert!(line.starts_with("HTTP/1.1 413"), "{line:?}");
    still_good("the raw oversized bodies");

    // A slow client: 10 of 1000 bytes, then nothing. Others are answered
    // meanwhile; it gets 408 after --read-timeout-ms.
    let mut slow = TcpStream::connect(server.addr()).unwrap();
    slow.write_all(
        b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n\x89PNG\r\n\x1a\n\0\0",
    )
    .unwrap();
    still_good("a slow client started");
    slow.set_nonblocking(true).unwrap();
    let mut probe = [0u8; 1];
    let pending = slow.read(&mut probe);
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow client was answered before its timeout: {pending:?}"
    );
    slow.set_nonblocking(false).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(slow).read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 408"), "{line:?}");
    still_good("the slow client");

    let (_, metrics) = get(&format!("{}/metrics", server.url));
    for reason in [
        "empty",
        "not_image",
        "broken",
        "unsupported",
        "too_many_pixels",
        "bad_request",
        "body_too_large",
        "timeout",
    ] {
        assert!(
            metrics.contains(&format!("xfer_errors_total{{reason=\"{reason}\"}}")),
            "{reason} not counted:\n{metrics}"
        );
    }
    assert_eq!(metric(&metrics, "xfer_in_flight"), 0.0, "{metrics}");
}

#[test]
fn sigterm_finishes_requests_in_flight_and_exits_0() {
    let (tmp, model, data, features) = setup();
    let root = tmp.path();
    let head = hand_head(root, &features, None);
    let files: Vec<PathBuf> = pngs(&data).into_iter().take(7).collect();
    let inputs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (_, want, _) = predict_json(root, &model, &head, &inputs, &[]);
    let mut server = Server::start(
        root,
        &model,
        &head,
        &["--max-batch", "64", "--max-wait-ms", "3000"],
    );
    let url = format!("{}/predict", server.url);
    let metrics_url = format!("{}/metrics", server.url);
    // One upload is half sent when the signal comes: the decoded images
    // wait (up to 3 s) for it to join their batch, so they are in flight
    // too.
    let slow_body = std::fs::read(&files[0]).unwrap();
    let half = slow_body.len() / 2;
    let mut slow = TcpStream::connect(server.addr()).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        slow,
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        slow_body.len()
    )
    .unwrap();
    slow.write_all(&slow_body[..half]).unwrap();
    std::thread::scope(|s| {
        let clients: Vec<_> = files[1..]
            .iter()
            .map(|f| {
                let url = &url;
                s.spawn(move || post(url, "image/png", &std::fs::read(f).unwrap()))
            })
            .collect();
        let n = clients.len() as f64;
        let mut m = String::new();
        for _ in 0..500 {
            m = get(&metrics_url).1;
            if metric(&m, "xfer_decode_seconds_count") == n {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(metric(&m, "xfer_decode_seconds_count"), n, "{m}");
        assert_eq!(metric(&m, "xfer_in_flight"), n + 1.0, "{m}");
        assert_eq!(
            metric(&m, "xfer_queue_seconds_count"),
            0.0,
            "a batch ran before the signal"
        );
        Command::new("kill")
            .args(["-TERM", &server.child.id().to_string()])
            .status()
            .unwrap();
        // Refused from now on, while the rest of the upload is still taken.
        let mut refused = false;
        for _ in 0..200 {
            if TcpStream::connect(server.addr()).is_err() {
                refused = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(refused, "still accepting connections after SIGTERM");
        slow.write_all(&slow_body[half..]).unwrap();
        let mut answer = String::new();
        slow.read_to_string(&mut answer).unwrap();
        let (head_lines, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head_lines.starts_with("HTTP/1.1 200"), "{answer}");
        assert_same(&want[0], &json(body), "the upload finished after SIGTERM");
        for ((h, want), file) in clients.into_iter().zip(&want[1..]).zip(&files[1..]) {
            let (status, body) = h.join().unwrap();
            assert_eq!(status, 200, "{}: {body}", file.display());
            assert_same(want, &json(&body), &file.display().to_string());
        }
    });
    let status = server.wait();
    assert!(
        status.success(),
        "exit {status:?}; stderr:\n{}",
        server.stderr()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(server.stderr().contains("stopping"), "{}", server.stderr());
}
