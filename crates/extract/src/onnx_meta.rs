//! The `metadata_props` of an ONNX file, read without ONNX Runtime.
//!
//! Building a session costs a third of a second and hundreds of megabytes
//! for Xception, and a rerun with nothing to encode needs none: it needs
//! only the model's `xfer.*` entries, to know which cached vectors are this
//! model's. An ONNX file is a protobuf `ModelProto` whose field 14,
//! `metadata_props`, holds `StringStringEntryProto { key = 1; value = 2; }`
//! entries. This walks the top-level fields and skips the others (the graph
//! and its weights) by seeking past them, so it reads a few kilobytes of a
//! model of any size.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use crate::{Error, Result};

const METADATA_PROPS: u64 = 14;

fn varint(r: &mut impl Read) -> std::io::Result<Option<u64>> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        if r.read(&mut b)? == 0 {
            return if shift == 0 {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        v |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "varint longer than 10 bytes",
    ))
}

/// One `StringStringEntryProto`: (key, value).
fn entry(bytes: &[u8]) -> std::result::Result<(String, String), String> {
    let mut r = bytes;
    let (mut key, mut value) = (String::new(), String::new());
    while let Some(tag) = varint(&mut r).map_err(|e| e.to_string())? {
        let (field, wire) = (tag >> 3, tag & 7);
        let len = match wire {
            2 => varint(&mut r)
                .map_err(|e| e.to_string())?
                .ok_or("truncated entry")?,
            _ => return Err(format!("unexpected wire type {wire} in a metadata entry")),
        };
        let len = usize::try_from(len).map_err(|_| "entry too long")?;
        if len > r.len() {
            return Err("truncated entry".into());
        }
        let (s, rest) = r.split_at(len);
        r = rest;
        let s = String::from_utf8(s.to_vec()).map_err(|_| "entry is not UTF-8")?;
        match field {
            1 => key = s,
            2 => value = s,
            _ => {}
        }
    }
    Ok((key, value))
}

/// The key-value metadata of the ONNX file at `path`.
///
/// # Errors
/// [`Error::Io`] when it cannot be read; [`Error::Model`] when it is not a
/// protobuf file.
pub(crate) fn read(path: &Path) -> Result<BTreeMap<String, String>> {
    let bad = |reason: String| Error::Model {
        path: path.into(),
        reason: format!("not an ONNX file: {reason}"),
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut props = BTreeMap::new();
    loop {
        let tag = match varint(&mut r) {
            Ok(Some(t)) => t,
            Ok(None) => break,
            Err(e) => return Err(bad(e.to_string())),
        };
        let (field, wire) = (tag >> 3, tag & 7);
        let skip = match wire {
            0 => {
                varint(&mut r)
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad("truncated".into()))?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let n = varint(&mut r)
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad("truncated".into()))?;
                let pos = r.stream_position().map_err(|e| Error::io(path, e))?;
                if n > len.saturating_sub(pos) {
                    return Err(bad(format!("field {field} runs past the end of the file")));
                }
                if field == METADATA_PROPS {
                    let mut buf = vec![0u8; n as usize];
                    r.read_exact(&mut buf).map_err(|e| Error::io(path, e))?;
                    let (k, v) = entry(&buf).map_err(bad)?;
                    props.insert(k, v);
                    0
                } else {
                    n
                }
            }
            w => return Err(bad(format!("unexpected wire type {w} at field {field}"))),
        };
        if skip > 0 {
            let skip = i64::try_from(skip).map_err(|_| bad("field too long".into()))?;
            r.seek_relative(skip).map_err(|e| Error::io(path, e))?;
        }
    }
    Ok(props)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
        put_varint(out, field << 3 | 2);
        put_varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    #[test]
    fn reads_props_and_skips_every_other_field() {
        let mut m = Vec::new();
        put_varint(&mut m, 1 << 3); // ir_version = 9
        put_varint(&mut m, 9);
        put_bytes(&mut m, 7, &vec![0xAB; 300_000]); // a "graph"
        for (k, v) in [("xfer.backbone", "tiny"), ("xfer.dim", "8")] {
            let mut e = Vec::new();
            put_bytes(&mut e, 1, k.as_bytes());
            put_bytes(&mut e, 2, v.as_bytes());
            put_bytes(&mut m, METADATA_PROPS, &e);
        }
        put_varint(&mut m, 20 << 3 | 5); // a fixed32 field
        m.extend_from_slice(&[0; 4]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.onnx");
        std::fs::write(&f, &m).unwrap();
        let props = read(&f).unwrap();
        assert_eq!(props["xfer.backbone"], "tiny");
        assert_eq!(props["xfer.dim"], "8");
        assert_eq!(props.len(), 2);

        std::fs::write(&f, &m[..1000]).unwrap();
        let err = read(&f).unwrap_err().to_string();
        assert!(
            err.contains("m.onnx") && err.contains("past the end"),
            "{err}"
        );
        std::fs::write(&f, b"hello, not a model").unwrap();
        assert!(read(&f).map_or(true, |p| p.is_empty()));
    }
}
