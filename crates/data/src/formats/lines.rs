//! Line-by-line reading of plain or gzipped files, with 1-based line numbers
//! for error messages. Gzip is recognised by its magic bytes, not the name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{DataError, Result};

/// Opens `path`, transparently decompressing gzip.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| DataError::io(path, e))?;
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(BufReader::new(MultiGzDecoder::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    })
}

/// Calls `f(line_number, line)` for every line, without the line ending.
/// Invalid UTF-8 is an error naming the line.
pub fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<()> {
    for_each_raw_line(path, |line_no, bytes| {
        let line = std::str::from_utf8(bytes)
            .map_err(|e| DataError::malformed(path, line_no, format!("not valid UTF-8 ({e})")))?;
        // A byte-order mark some editors put first would otherwise become
        // part of the first column's name (an invisible character in errors).
        let line = if line_no == 1 {
            line.strip_prefix('\u{feff}').unwrap_or(line)
        } else {
            line
        };
        f(line_no, line)
    })
}

/// Calls `f(line_number, bytes)` for every line, without the line ending,
/// for files in another encoding than UTF-8 (MovieLens' latin-1 titles).
pub fn for_each_raw_line(path: &Path, mut f: impl FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let mut reader = open(path)?;
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            return Ok(());
        }
        line_no += 1;
        let mut end = buf.len();
        while end > 0 && matches!(buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        f(line_no, &buf[..end])?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_byte_order_mark_is_not_part_of_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.inter");
        std::fs::write(&p, "\u{feff}user_id:token\titem_id:token\n1\t2\n").unwrap();
        let mut lines = Vec::new();
        for_each_line(&p, |_, l| {
            lines.push(l.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(lines, ["user_id:token\titem_id:token", "1\t2"]);
    }
}
