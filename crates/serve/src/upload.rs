//! An upload, received defensively: the body within `--max-body` bytes and
//! `--read-timeout-ms`, the image taken from it (raw bytes or a multipart
//! field `image`), and every refusal turned into a status, a reason for the
//! metrics and a message for the client.
//!
//! A body announced larger than the limit (`Content-Length`) is refused
//! before a byte of it is read; a body without a length (chunked) is read
//! through `http_body_util::Limited`, which stops at the limit. Either way
//! the server never holds more than `--max-body` bytes for one request. The
//! body is received before the image joins a batch, so a slow client costs
//! a connection and a timer, never a batch's time.
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// A request refused or failed: what the client is told and what the
/// metrics count.
#[derive(Debug)]
pub(crate) struct Rejection {
    pub(crate) status: StatusCode,
    /// Metrics label (`xfer_errors_total{reason=...}`).
    pub(crate) reason: &'static str,
    /// The `error` of the JSON answer.
    pub(crate) message: String,
}

impl Rejection {
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Rejection {
            status,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = xfer_predict::output::json_object(None, &Err(self.message))
            .unwrap_or_else(|_| "{\"error\":\"?\"}".into());
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

fn too_large(max_body: usize) -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body over the limit of {max_body} bytes (--max-body)"),
    )
}

/// The image bytes of a `POST /predict`.
///
/// # Errors
/// 413 over `max_body`, 408 when the body takes longer than `timeout`, 400
/// for a broken body or a multipart form without an `image` field.
pub(crate) async fn image_bytes(
    req: Request,
    max_body: usize,
    timeout: Duration,
) -> Result<Bytes, Rejection> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max_body as u64) {
        return Err(too_large(max_body));
    }
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(timeout, Limited::new(body, max_body).collect()).await;
    let bytes = match collected {
        Err(_) => {
            return Err(Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "request body not received within {} ms (--read-timeout-ms)",
                    timeout.as_millis()
                ),
            ))
        }
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(too_large(max_body))
        }
        Ok(Err(e)) => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("reading the request body: {e}"),
            ))
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let multipart = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if multipart {
        field_image(Request::from_parts(parts, Body::from(bytes))).await
    } else {
        Ok(bytes)
    }
}

/// The field `image` of a multipart form already received whole.
async fn field_image(req: Request) -> Result<Bytes, Rejection> {
    let bad = |msg: String| Rejection::new(StatusCode::BAD_REQUEST, "bad_request", msg);
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| bad(format!("multipart form: {}", e.body_text())))?;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("multipart form: {}", e.body_text())))?
    {
        if field.name() == Some("image") {
            return field
                .bytes()
                .await
                .map_err(|e| bad(format!("multipart field `image`: {}", e.body_text())));
        }
    }
    Err(bad("multipart form without a field `image`".into()))
}

/// Status and metrics reason for an image `xfer_extract::pixels` refused,
/// from its message (the decoder's reasons are the same text `xfer extract`
/// writes to `errors.csv`; the unit test below pins each one to real data).
pub(crate) fn bad_image(message: String) -> Rejection {
    let m = message.as_str();
    let (status, reason) = if m.starts_with("empty file") {
        (StatusCode::BAD_REQUEST, "empty")
    } else if m.contains("over the limit of") {
        (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels")
    } else if m.starts_with("cannot identify image file") {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_image")
    } else if m.contains("not read by xfer") || m.contains("not decoded exactly") {
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported")
    } else {
        // Truncated or corrupt data of a format xfer reads.
        (StatusCode::BAD_REQUEST, "broken")
    };
    Rejection::new(status, reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xfer_extract::pixels::{self, PixelSpec, Preprocess, Resize};

    fn reason_of(bytes: &[u8], max_pixels: u64) -> (StatusCode, &'static str) {
        let mut spec = PixelSpec::new(8, Resize::Nearest, Preprocess::Raw);
        spec.max_pixels = max_pixels;
        let r = bad_image(pixels::from_bytes(bytes, &spec).unwrap_err().0);
        (r.status, r.reason)
    }

    /// A 4x4 gray PNG (PIL: `Image.new('L', (4, 4), 7).save(f, 'PNG')`).
    const PNG_4X4: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, 0x8c,
        0x9a, 0xc1, 0xa2, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x64,
        0x67, 0x60, 0x60, 0x60, 0x62, 0x40, 0x21, 0x00, 0x00, 0xe9, 0x00, 0x0f, 0x7a, 0x81, 0xbe,
        0xe7, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];

    #[test]
    fn each_refusal_has_its_status() {
        assert!(pixels::from_bytes(
            PNG_4X4,
            &PixelSpec::new(8, Resize::Nearest, Preprocess::Raw)
        )
        .is_ok());
        assert_eq!(reason_of(b"", 100), (StatusCode::BAD_REQUEST, "empty"));
        assert_eq!(
            reason_of(b"hello, I am text", 100),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_image")
        );
        assert_eq!(
            reason_of(b"GIF89a\x01\x00\x01\x00", 100),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported")
        );
        assert_eq!(
            reason_of(PNG_4X4, 15),
            (StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels")
        );
        assert_eq!(
            reason_of(&PNG_4X4[..45], 100),
            (StatusCode::BAD_REQUEST, "broken")
        );
    }
}
