//! The vector column read straight into one buffer.
//!
//! Every `xfer train` starts by reading all the vectors of two splits (25 MB
//! for the clothing data). Through Arrow each float is copied three times,
//! each time into freshly allocated memory, and on the machines measured the
//! page faults of that memory cost more than the copies. The files xfer
//! writes hold the vectors PLAIN in version-1 data pages, so this reader
//! reads the pages one by one and copies their values once, into their
//! place in the table's buffer, with the row groups shared among threads.
//!
//! It checks what it relies on: every list exactly `dim` long (from the
//! repetition levels) and no empty list or null (values fill the page). On
//! any other layout (dictionary or other encodings, version-2 pages, another
//! schema) it declines with `Ok(None)` and the caller reads the column
//! through Arrow as before, so any valid Parquet file still reads.
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::{Page, PageReader};
use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::SchemaDescriptor;

use crate::table::columns;
use crate::{Error, Result};

/// What a row group's pages turned out to be.
enum Pages {
    /// Copied into place.
    Read,
    /// A layout this reader does not handle.
    Declined,
}

/// Whether leaf column `i` of `schema` belongs to the vector column.
pub(crate) fn is_vector_leaf(schema: &SchemaDescriptor, i: usize) -> bool {
    schema.column(i).path().parts().first().map(String::as_str) == Some(columns::FEATURES)
}

/// Every row's vector, row-major, or `None` when the file's layout is not
/// the one this reader handles. `meta` is the file's footer, already read.
///
/// # Errors
/// [`Error::Parquet`] when a page cannot be read; [`Error::Column`] when
/// the vector column's lists are not all `dim` long.
pub(crate) fn read(path: &Path, meta: &ParquetMetaData, dim: usize) -> Result<Option<Vec<f32>>> {
    let schema = meta.file_metadata().schema_descr();
    let Some(col) = (0..schema.num_columns()).find(|&i| is_vector_leaf(schema, i)) else {
        return Ok(None);
    };
    let descr = schema.column(col);
    if descr.physical_type() != PhysicalType::FLOAT
        || descr.max_rep_level() != 1
        || descr.max_def_level() != 1
        || dim == 0
    {
        return Ok(None);
    }
    let rows: Vec<usize> = meta
        .row_groups()
        .iter()
        .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
        .collect();
    // The footer's counts are the file's word: bound them by what the
    // column chunks hold (PLAIN floats take 4 bytes each) before
    // allocating, so a crafted footer is an error, not an abort.
    let stored: i64 = meta
        .row_groups()
        .iter()
        .map(|g| g.column(col).uncompressed_size().max(0))
        .sum();
    let floats = rows
        .iter()
        .sum::<usize>()
        .checked_mul(dim)
        .filter(|&n| n.checked_mul(4).is_some_and(|b| b as u64 <= stored as u64))
        .ok_or_else(|| Error::Column {
            path: path.into(),
            column: columns::FEATURES.into(),
            reason: format!(
                "the footer claims {} rows of {dim} floats, more than the column's {stored} bytes",
                rows.iter().sum::<usize>()
            ),
        })?;
    let mut out = vec![0.0f32; floats];
    // Each row group's slice of the buffer, then a contiguous share of them
    // per worker.
    let mut slices = Vec::with_capacity(rows.len());
    let mut rest = out.as_mut_slice();
    for &n in &rows {
        let (head, tail) = rest.split_at_mut(n * dim);
        slices.push(head);
        rest = tail;
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, rows.len().max(1));
    let per = rows.len().div_ceil(workers).max(1);
    let mut shares: Vec<Vec<(usize, &mut [f32])>> = Vec::new();
    let groups = meta.row_groups();
    for (g, s) in slices.into_iter().enumerate() {
        if g % per == 0 {
            shares.push(Vec::new());
        }
        shares.last_mut().expect("pushed above").push((g, s));
    }
    let outcomes: Vec<Result<Pages>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || -> Result<Pages> {
                    // Each worker its own handle; pages are read one at a
                    // time into a buffer the allocator recycles, so the only
                    // fresh memory is the output.
                    let file = Arc::new(File::open(path).map_err(|e| Error::io(path, e))?);
                    for (g, slice) in share {
                        let rg = &groups[g];
                        if let Pages::Declined = fill(&file, rg, g, col, dim, slice, path)? {
                            return Ok(Pages::Declined);
                        }
                    }
                    Ok(Pages::Read)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("reader thread does not panic"))
            .collect()
    });
    for outcome in outcomes {
        if let Pages::Declined = outcome? {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// Copies row group `g`'s (`rg`) vectors into `out` (exactly its rows ×
/// `dim`).
fn fill(
    file: &Arc<File>,
    rg: &RowGroupMetaData,
    g: usize,
    col: usize,
    dim: usize,
    out: &mut [f32],
    path: &Path,
) -> Result<Pages> {
    let parquet_err = |e| Error::Parquet {
        path: path.into(),
        source: e,
    };
    let bad = |reason: String| Error::Column {
        path: path.into(),
        column: columns::FEATURES.into(),
        reason: format!("row group {g}: {reason}"),
    };
    let rows = usize::try_from(rg.num_rows()).unwrap_or(0);
    let mut pages = SerializedPageReader::new(Arc::clone(file), rg.column(col), rows, None)
        .map_err(parquet_err)?;
    let mut pos = 0;
    while let Some(page) = pages.get_next_page().map_err(parquet_err)? {
        let Page::DataPage {
            buf,
            num_values,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            ..
        } = page
        else {
            return Ok(Pages::Declined);
        };
        let n = num_values as usize;
        let (rep, rest) = length_prefixed(&buf).ok_or_else(|| bad("truncated levels".into()))?;
        let (_, values) = length_prefixed(rest).ok_or_else(|| bad("truncated levels".into()))?;
        if values.len() != 4 * n {
            return Err(bad(format!(
                "{n} levels but {} bytes of values: an empty list or a null",
                values.len()
            )));
        }
        if pos + n > out.len() {
            return Err(bad(format!(
                "more values than its {} rows of {dim}",
                out.len() / dim
            )));
        }
        check_lists(rep, pos, n, dim).map_err(bad)?;
        for (o, v) in out[pos..pos + n].iter_mut().zip(values.chunks_exact(4)) {
            *o = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        }
        pos += n;
    }
    if pos != out.len() {
        return Err(bad(format!(
            "{pos} values for {} rows of {dim}",
            out.len() / dim
        )));
    }
    Ok(Pages::Read)
}

/// A version-1 level section: a 4-byte little-endian length, then that many
/// bytes. Returns (section, what follows).
fn length_prefixed(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let body = buf.get(4..4 + len)?;
    Some((body, &buf[4 + len..]))
}

/// An unsigned LEB128 varint and the bytes it took.
fn varint(data: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Checks repetition levels (RLE/bit-packed hybrid, bit width 1) of `n`
/// values starting at value position `first`: a list starts (level 0)
/// exactly at the multiples of `dim`, and continues (level 1) elsewhere.
fn check_lists(
    mut data: &[u8],
    first: usize,
    n: usize,
    dim: usize,
) -> std::result::Result<(), String> {
    let wrong = |p: usize| format!("value {p} does not fit lists of {dim}: not a FixedSizeList");
    let (mut p, end) = (first, first + n);
    while p < end {
        let (header, used) = varint(data).ok_or("truncated repetition levels")?;
        data = &data[used..];
        if header & 1 == 0 {
            // A run of one value.
            let count = usize::try_from(header >> 1).map_err(|e| e.to_string())?;
            let &level = data.first().ok_or("truncated repetition levels")?;
            data = &data[1..];
            let count = count.min(end - p);
            let fits = match level {
                0 => dim == 1 || (count == 1 && p % dim == 0),
                1 => p % dim != 0 && p % dim + count <= dim,
                _ => false,
            };
            if count == 0 || !fits {
                return Err(wrong(p));
            }
            p += count;
        } else {
            // Groups of 8 bit-packed levels, least significant bit first.
            let groups = usize::try_from(header >> 1).map_err(|e| e.to_string())?;
            let bytes = data.get(..groups).ok_or("truncated repetition levels")?;
            data = &data[groups..];
            for (k, &byte) in bytes.iter().enumerate() {
                for bit in 0..8 {
                    let q = p + 8 * k + bit;
                    if q < end && ((byte >> bit) & 1 == 0) != (q % dim == 0) {
                        return Err(wrong(q));
                    }
                }
            }
            p += (8 * groups).min(end - p);
            if groups == 0 {
                return Err("empty bit-packed run".into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_boundaries_in_runs_and_bit_packing() {
        // dim 3, values 0..6: levels 0 1 1 0 1 1
        // as RLE runs: [1×0] [2×1] [1×0] [2×1]
        let runs = [2, 0, 4, 1, 2, 0, 4, 1];
        assert!(check_lists(&runs, 0, 6, 3).is_ok());
        // one run too long for a list
        assert!(check_lists(&[2, 0, 6, 1], 0, 4, 3).is_err());
        // bit-packed, one group: bits 0b110110 (LSB first: 0 1 1 0 1 1)
        assert!(check_lists(&[3, 0b0011_0110], 0, 6, 3).is_ok());
        assert!(check_lists(&[3, 0b0011_0111], 0, 6, 3).is_err());
        // a page that starts mid-list
        assert!(check_lists(&[4, 1, 2, 0], 1, 3, 3).is_ok());
        // truncated
        assert!(check_lists(&[2], 0, 1, 3).is_err());
    }

    #[test]
    fn varints_and_sections() {
        assert_eq!(varint(&[0x96, 0x01]), Some((150, 2)));
        assert_eq!(varint(&[0x80]), None);
        assert_eq!(
            length_prefixed(&[2, 0, 0, 0, 7, 8, 9]),
            Some((&[7u8, 8][..], &[9u8][..]))
        );
        assert_eq!(length_prefixed(&[5, 0, 0, 0, 1]), None);
    }
}
