//! A CSV record reader tuned for department exports: lines without a quote character (nearly
//! all of them) are split with `memchr` at memory speed; a line with a quote is handed to
//! `csv-core`, which handles quoting, escaped quotes and fields spanning lines. Records come out
//! as [`Record`]s (the row's bytes and where each field ends) with the line they start on.
//!
//! Differences from `csv::Reader` that ingest relies on: every record is returned whatever its
//! field count (the caller checks it), empty lines are skipped (and counted), and bytes are never
//! interpreted: UTF-8 is checked later, per row.

use std::io::{self, Read};

use std::ops::Range;

use csv_core::ReadRecordResult;

/// One CSV record: its fields' bytes, each followed by one separator byte except the last,
/// so that field `i` is `data[start(i)..ends[i]]` with `start(i) = ends[i-1] + 1`.
#[derive(Debug, Clone, Default)]
pub struct Record {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Record {
    pub fn new() -> Record {
        Record::default()
    }

    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Byte range of field `i` within [`Record::as_slice`].
    pub fn range(&self, i: usize) -> Option<Range<usize>> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
        Some(start..end)
    }

    /// Field `i`'s bytes (empty when there is no such field).
    pub fn get(&self, i: usize) -> &[u8] {
        self.range(i).and_then(|r| self.data.get(r)).unwrap_or(&[])
    }

    /// All fields with their separators.
    pub fn as_slice(&self) -> &[u8] {
        &self.data
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Appends a field (tests and the quoted path).
    pub fn push_field(&mut self, field: &[u8], separator: u8) {
        if !self.ends.is_empty() {
            self.data.push(separator);
        }
        self.data.extend_from_slice(field);
        self.ends.push(self.data.len());
    }
}

/// Reads CSV records from any reader.
#[derive(Debug)]
pub struct RecordReader<R: Read> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    delimiter: u8,
    core: csv_core::Reader,
    /// Line on which the next record starts (1-based).
    line: u64,
    /// Bytes consumed so far.
    consumed: u64,
    out: Vec<u8>,
    ends: Vec<usize>,
}

impl<R: Read> RecordReader<R> {
    pub fn new(input: R, delimiter: u8) -> RecordReader<R> {
        RecordReader {
            input,
            buf: vec![0; 1 << 20],
            start: 0,
            end: 0,
            eof: false,
            delimiter,
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            line: 1,
            consumed: 0,
            out: vec![0; 1024],
            ends: vec![0; 64],
        }
    }

    /// Bytes of input consumed so far.
    pub fn position(&self) -> u64 {
        self.consumed
    }

    /// Moves unread bytes to the front and reads more; grows the buffer when a single line
    /// fills it. Returns false at end of input.
    fn refill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the next record into `rec`; returns the line it starts on, or `None` at the end.
    pub fn read(&mut self, rec: &mut Record) -> io::Result<Option<u64>> {
        loop {
            // One pass over the line finds the separators, its end, or a quote.
            rec.clear();
            let avail = &self.buf[self.start..self.end];
            let mut newline = None;
            let mut quoted = false;
            // Fields are short: a plain loop beats a vectorized search restarted per hit.
            for (at, &b) in avail.iter().enumerate() {
                if b == self.delimiter {
                    rec.ends.push(at);
                } else if b == b'\n' {
                    newline = Some(at);
                    break;
                } else if b == b'"' {
                    quoted = true;
                    break;
                }
            }
            if quoted {
                return self.read_quoted(rec).map(Some);
            }
            let len = match newline {
                Some(n) => n,
                None if self.eof && !avail.is_empty() => avail.len(),
                None => {
                    if !self.refill()? && self.start == self.end {
                        return Ok(None);
                    }
                    continue;
                }
            };
            let mut line = &avail[..len];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let taken = len + usize::from(newline.is_some());
            let at = self.line;
            self.start += taken;
            self.consumed += taken as u64;
            self.line += 1;
            if line.is_empty() {
                continue;
            }
            rec.data.extend_from_slice(line);
            rec.ends.push(line.len());
            return Ok(Some(at));
        }
    }

    /// The slow path: one record by csv-core, which handles quotes and embedded newlines.
    fn read_quoted(&mut self, rec: &mut Record) -> io::Result<u64> {
        let at = self.line;
        let (mut outlen, mut nends) = (0usize, 0usize);
        loop {
            let input = &self.buf[self.start..self.end];
            let (res, nin, nout, nend) =
                self.core
                    .read_record(input, &mut self.out[outlen..], &mut self.ends[nends..]);
            self.line += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.start += nin;
            self.consumed += nin as u64;
            outlen += nout;
            nends += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    if !self.refill()? && self.start == self.end {
                        // Feed the end of input so that csv-core finishes the record.
                        let (res, _, nout, nend) = self.core.read_record(
                            &[],
                            &mut self.out[outlen..],
                            &mut self.ends[nends..],
                        );
                        outlen += nout;
                        nends += nend;
                        if matches!(res, ReadRecordResult::Record | ReadRecordResult::End) {
                            break;
                        }
                    }
                }
                ReadRecordResult::OutputFull => {
                    let grown = self.out.len() * 2;
                    self.out.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        rec.clear();
        let mut prev = 0;
        for &e in &self.ends[..nends] {
            let e = e.min(outlen);
            rec.push_field(&self.out[prev.min(e)..e], self.delimiter);
            prev = e;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Vec<(u64, Vec<String>)> {
        let mut r = RecordReader::new(input, b',');
        let mut rec = Record::new();
        let mut out = Vec::new();
        while let Some(line) = r.read(&mut rec).unwrap() {
            out.push((
                line,
                rec.iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
            ));
        }
        out
    }

    #[test]
    fn plain_quoted_and_multiline_records() {
        let got = all(b"a,b,c\r\n1,,3\n\n\"x,y\",\"say \"\"hi\"\"\",z\n\"two\nlines\",q\nlast,row");
        let want: Vec<(u64, Vec<&str>)> = vec![
            (1, vec!["a", "b", "c"]),
            (2, vec!["1", "", "3"]),
            (4, vec!["x,y", "say \"hi\"", "z"]),
            (5, vec!["two\nlines", "q"]),
            (7, vec!["last", "row"]),
        ];
        let want: Vec<(u64, Vec<String>)> = want
            .into_iter()
            .map(|(l, v)| (l, v.into_iter().map(String::from).collect()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn agrees_with_the_csv_crate_on_lines_longer_than_the_buffer() {
        let long = "é".repeat(700_000);
        let text = format!("k,v\n1,{long}\n2,\"{long}\"\n");
        let got = all(text.as_bytes());
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1[1], long);
        assert_eq!(got[2].1[1], long);
        assert_eq!(got[2].0, 3);
    }

    #[test]
    fn an_unterminated_quote_ends_the_input_without_panicking() {
        let got = all(b"a,b\n\"open,1\n2,3\n");
        assert_eq!(got[0].1, vec!["a", "b"]);
        assert_eq!(got.len(), 2);
    }
}
