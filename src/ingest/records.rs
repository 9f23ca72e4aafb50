//! CSV records read the way the `csv` crate reads them (its defaults: `"` quotes, doubled
//! quotes, CR, LF or CRLF ends a record, blank lines skipped, any number of fields), at a
//! fraction of the cost on the common line: one with no quote and no carriage return is split
//! at its delimiters in one pass over a byte-class table, straight from the input's buffer.
//! Any other record (and the first, for the byte order mark) goes through `csv_core`'s state
//! machine from its first byte. Records, fields and positions are the `csv` crate's exactly
//! (a property test holds them to it).
//!
//! The input is a `BufRead`: the streamed city hands over the generator's own buffers, so a
//! record's bytes are copied once, into its `ByteRecord`.

use std::io::BufRead;

use csv::{ByteRecord, Position};

/// Reads CSV records from a buffered input.
#[derive(Debug)]
pub struct RecordReader<R> {
    input: R,
    delimiter: u8,
    core: csv_core::Reader,
    /// Byte classes of the fast path, and the delimiters it found on a line.
    class: [u8; 256],
    bounds: Vec<usize>,
    /// The start of a line that ran past the end of the input's buffer.
    carry: Vec<u8>,
    /// Field bytes and ends of a record read through `csv_core`.
    fields: Vec<u8>,
    ends: Vec<usize>,
    /// Where the next record starts: line (from 1, counting `\n`), byte, records read.
    line: u64,
    byte: u64,
    records: u64,
    done: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(input: R, delimiter: u8) -> RecordReader<R> {
        RecordReader {
            input,
            delimiter,
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            class: classes(delimiter),
            bounds: Vec::new(),
            carry: Vec::new(),
            fields: vec![0; 1024],
            ends: vec![0; 64],
            line: 1,
            byte: 0,
            records: 0,
            done: false,
        }
    }

    /// Bytes read so far.
    pub fn byte(&self) -> u64 {
        self.byte
    }

    /// Reads the next record into `rec` (its position set as `csv` sets it: where the read
    /// began, blank lines before the record included); `false` at the end of the input.
    pub fn read_record(&mut self, rec: &mut ByteRecord) -> std::io::Result<bool> {
        rec.clear();
        let mut pos = Position::new();
        pos.set_byte(self.byte)
            .set_line(self.line)
            .set_record(self.records);
        rec.set_position(Some(pos));
        if self.done {
            return Ok(false);
        }
        if self.records == 0 && self.byte == 0 {
            // The first record goes through `csv_core`, which strips a UTF-8 byte order mark
            // from the input's first three bytes (and from nowhere else after it).
            // (Four bytes: past a stripped mark, `csv_core` must not see an empty input,
            // which to it is the input's end.)
            while self.carry.len() < 4 {
                let buf = self.input.fill_buf()?;
                if buf.is_empty() {
                    break;
                }
                let n = buf.len().min(4 - self.carry.len());
                self.carry.extend_from_slice(&buf[..n]);
                self.input.consume(n);
            }
            return self.through_core(rec);
        }
        loop {
            let buf = self.input.fill_buf()?;
            if self.carry.is_empty() {
                // The common line: one pass finds its delimiters and its end.
                match scan(buf, &self.class, &mut self.bounds) {
                    Scan::Line(0) => {
                        self.input.consume(1);
                        self.byte += 1;
                        self.line += 1;
                        continue;
                    }
                    Scan::Line(nl) => {
                        let mut start = 0;
                        for &d in &self.bounds {
                            rec.push_field(&buf[start..d]);
                            start = d + 1;
                        }
                        rec.push_field(&buf[start..nl]);
                        self.input.consume(nl + 1);
                        self.byte += nl as u64 + 1;
                        self.line += 1;
                        self.records += 1;
                        return Ok(true);
                    }
                    Scan::Special => return self.through_core(rec),
                    Scan::Partial => {}
                }
            }
            let Some(nl) = memchr::memchr(b'\n', buf) else {
                if !buf.is_empty() {
                    // A line that goes on in the next buffer.
                    let n = buf.len();
                    self.carry.extend_from_slice(buf);
                    self.input.consume(n);
                    continue;
                }
                // The input's last line, without its line end.
                if self.carry.is_empty() {
                    self.done = true;
                    return Ok(false);
                }
                if !plain_start(&self.carry) {
                    return self.through_core(rec);
                }
                split(&self.carry, self.delimiter, rec);
                self.byte += self.carry.len() as u64;
                self.carry.clear();
                self.records += 1;
                return Ok(true);
            };
            if !plain(&buf[..nl]) || !plain_start(&self.carry) {
                return self.through_core(rec);
            }
            let line = if self.carry.is_empty() {
                &buf[..nl]
            } else {
                self.carry.extend_from_slice(&buf[..nl]);
                &self.carry[..]
            };
            let blank = line.is_empty();
            if !blank {
                split(line, self.delimiter, rec);
            }
            self.byte += line.len() as u64 + 1;
            self.line += 1;
            self.carry.clear();
            self.input.consume(nl + 1);
            if !blank {
                self.records += 1;
                return Ok(true);
            }
        }
    }

    /// Reads one record through `csv_core`, from the carried bytes on; what it leaves of them
    /// stays carried.
    fn through_core(&mut self, rec: &mut ByteRecord) -> std::io::Result<bool> {
        let mut carried = std::mem::take(&mut self.carry);
        let got = self.core_record(&carried, rec);
        if let Ok((_, read)) = got {
            carried.drain(..read);
            self.carry = carried;
        }
        got.map(|(g, _)| g)
    }

    /// Reads one record through `csv_core` from `pre`, then from the input: whether there was
    /// one, and how many bytes of `pre` it read.
    fn core_record(&mut self, pre: &[u8], rec: &mut ByteRecord) -> std::io::Result<(bool, usize)> {
        use csv_core::ReadRecordResult::*;
        let (mut at, mut nout, mut nend) = (0, 0, 0);
        loop {
            let from_pre = at < pre.len();
            let input: &[u8] = if from_pre {
                &pre[at..]
            } else {
                self.input.fill_buf()?
            };
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.fields[nout..], &mut self.ends[nend..]);
            self.line += memchr::memchr_iter(b'\n', &input[..nin]).count() as u64;
            self.byte += nin as u64;
            if from_pre {
                at += nin;
            } else {
                self.input.consume(nin);
            }
            nout += o;
            nend += e;
            match res {
                InputEmpty => {}
                OutputFull => {
                    let n = self.fields.len().max(64);
                    self.fields.resize(n * 2, 0);
                }
                OutputEndsFull => {
                    let n = self.ends.len().max(8);
                    self.ends.resize(n * 2, 0);
                }
                Record => {
                    let mut start = 0;
                    for &end in &self.ends[..nend] {
                        rec.push_field(&self.fields[start..end]);
                        start = end;
                    }
                    self.records += 1;
                    return Ok((true, at));
                }
                End => {
                    self.done = true;
                    return Ok((false, at));
                }
            }
        }
    }
}

/// What a buffer starts with.
enum Scan {
    /// A plain line ending at this offset, its delimiters' offsets gathered.
    Line(usize),
    /// A quote or a carriage return before the line's end.
    Special,
    /// A plain line's start that the buffer does not finish.
    Partial,
}

/// Byte classes of [`scan`].
const PLAIN: u8 = 0;
const DELIMITER: u8 = 1;
const LINE_END: u8 = 2;
const SPECIAL: u8 = 3;

fn classes(delimiter: u8) -> [u8; 256] {
    let mut c = [PLAIN; 256];
    c[usize::from(b'"')] = SPECIAL;
    c[usize::from(b'\r')] = SPECIAL;
    c[usize::from(b'\n')] = LINE_END;
    if c[usize::from(delimiter)] == PLAIN {
        c[usize::from(delimiter)] = DELIMITER;
    }
    c
}

/// Reads `buf` to its first line end, quote or carriage return, gathering delimiters.
fn scan(buf: &[u8], class: &[u8; 256], bounds: &mut Vec<usize>) -> Scan {
    bounds.clear();
    for (i, &b) in buf.iter().enumerate() {
        match class[usize::from(b)] {
            PLAIN => {}
            DELIMITER => bounds.push(i),
            LINE_END => return Scan::Line(i),
            _ => return Scan::Special,
        }
    }
    Scan::Partial
}

/// A line the fast path reads as `csv` would: no quote, no carriage return.
fn plain(line: &[u8]) -> bool {
    memchr::memchr2(b'"', b'\r', line).is_none()
}

/// Carried bytes the fast path may finish: a line's start with no quote or carriage return
/// (bytes `csv_core` read past may hold line ends too: those go back through it).
fn plain_start(carried: &[u8]) -> bool {
    memchr::memchr3(b'"', b'\r', b'\n', carried).is_none()
}

/// The fields of a plain, non-empty line.
fn split(line: &[u8], delimiter: u8, rec: &mut ByteRecord) {
    let mut start = 0;
    for d in memchr::memchr_iter(delimiter, line) {
        rec.push_field(&line[start..d]);
        start = d + 1;
    }
    rec.push_field(&line[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every record of `text` with its position, as `csv` reads it and as we do (from
    /// buffers of `cap` bytes).
    fn both(text: &[u8], delimiter: u8, cap: usize) -> (Vec<String>, Vec<String>) {
        let show = |r: &ByteRecord| {
            let p = r.position().unwrap();
            format!("{}:{}:{} {:?}", p.line(), p.byte(), p.record(), r)
        };
        let mut theirs = Vec::new();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(text);
        let mut r = ByteRecord::new();
        while rdr.read_byte_record(&mut r).unwrap() {
            theirs.push(show(&r));
        }
        let mut ours = Vec::new();
        let mut rr = RecordReader::new(std::io::BufReader::with_capacity(cap, text), delimiter);
        while rr.read_record(&mut r).unwrap() {
            ours.push(show(&r));
        }
        assert!(!rr.read_record(&mut r).unwrap(), "the end stays the end");
        (theirs, ours)
    }

    #[test]
    fn lines_quotes_and_line_ends_read_as_csv_reads_them() {
        for text in [
            &b"a,b\nc,d\n"[..],
            b"a,b\r\nc,d\r\n",
            b"a,b\n\n\nc,d",
            b"\"x,\ny\",z\nq\n",
            b"a,\"b\"\"c\"\rd\n",
            b"\n\r\n,\n,,\n",
            b"",
            b"a\rb",
            b"one field",
            b"\xEF\xBB\xBFid,name\n1,\xE5\xBC\xA0\n",
        ] {
            for cap in [1, 2, 3, 7, 64] {
                let (theirs, ours) = both(text, b',', cap);
                assert_eq!(
                    ours,
                    theirs,
                    "{:?} in buffers of {cap}",
                    String::from_utf8_lossy(text)
                );
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_reads_as_csv_reads_it(
            text in proptest::collection::vec(
                prop_oneof![
                    6 => Just(b'a'), 2 => Just(b','), 1 => Just(b'|'), 2 => Just(b'\n'),
                    1 => Just(b'"'), 1 => Just(b'\r'), 1 => Just(0xE5u8),
                ],
                0..300,
            ),
            cap in 1usize..80,
            pipe in any::<bool>(),
        ) {
            let delimiter = if pipe { b'|' } else { b',' };
            let (theirs, ours) = both(&text, delimiter, cap);
            prop_assert_eq!(ours, theirs);
        }
    }
}
