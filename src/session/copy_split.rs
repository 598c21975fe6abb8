//! Splits a `COPY ... FROM STDIN` data stream into rows and extracts each row's shard-key column.

/// The COPY data formats the splitter understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: rows end at '\n' (a "\r\n" ending also accepted), columns split by `delimiter` (default b'\t'), backslash escapes.
    Text { delimiter: u8 },
    /// CSV: rows end at a newline outside quotes; columns split by `delimiter` (default b','), quoted with `quote` (default b'"'), `escape` (default = quote) escapes a quote inside a quoted field.
    Csv {
        delimiter: u8,
        quote: u8,
        escape: u8,
    },
}

/// The key column of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowKey {
    /// The key's text, with the format's quoting/escaping undone (e.g. text format `4\\t2` → "4\t2", CSV `"a""b"` → `a"b`).
    Value(String),
    /// The key is NULL: `\N` in text format; an unquoted empty field in CSV.
    Null,
    /// The row has fewer columns than `key_index + 1`.
    Missing,
}

/// Incremental COPY row splitter. Only the incomplete tail of the current row is buffered between chunks.
pub struct RowSplitter {
    format: CopyFormat,
    key_index: usize,
    /// The next complete row is the header row.
    header_pending: bool,
    /// The end-of-data marker was seen (or `finish` was called): everything else is swallowed.
    done: bool,
    /// Bytes of the current, still incomplete row received in earlier chunks.
    tail: Vec<u8>,
    /// Text: the last scanned byte was a backslash whose escaped byte has not arrived yet.
    /// CSV: inside quotes, the last scanned byte was an escape (escape != quote) awaiting its target.
    escaped: bool,
    /// CSV: the scanner is inside a quoted section.
    in_quote: bool,
}

impl RowSplitter {
    /// `key_index`: 0-based column of the key. `header`: the first row is a header (CSV HEADER) and is passed to `on_header` instead.
    pub fn new(format: CopyFormat, key_index: usize, header: bool) -> Self {
        RowSplitter {
            format,
            key_index,
            header_pending: header,
            done: false,
            tail: Vec::new(),
            escaped: false,
            in_quote: false,
        }
    }

    /// Feeds the next chunk of COPY data (chunks split anywhere, even inside a row, a quoted field, an escape or a "\r\n").
    /// For every complete row calls `on_row(row_bytes, key)` where `row_bytes` is the row exactly as received INCLUDING its line ending
    /// (so the caller can forward it byte for byte). The header row (if `header`) goes to `on_header(row_bytes)`.
    /// In text format a line consisting of exactly `\.` is the end-of-data marker: it and anything after it is swallowed (no callback), as PostgreSQL does.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        on_row: &mut dyn FnMut(&[u8], RowKey),
        on_header: &mut dyn FnMut(&[u8]),
    ) {
        let mut start = 0;
        while start < chunk.len() && !self.done {
            let Some(len) = self.scan(&chunk[start..]) else {
                self.tail.extend_from_slice(&chunk[start..]);
                return;
            };
            let end = start + len;
            if self.tail.is_empty() {
                // The whole row lies in this chunk: emit it without copying.
                self.emit(&chunk[start..end], on_row, on_header);
            } else {
                let mut row = std::mem::take(&mut self.tail);
                row.extend_from_slice(&chunk[start..end]);
                self.emit(&row, on_row, on_header);
                row.clear();
                self.tail = row; // keep the allocation for the next split row
            }
            start = end;
        }
    }

    /// End of data: a final row without a line ending is emitted (as received, no ending added — the caller adds one if it wants).
    /// Returns Err(message) if the data ends inside a quoted CSV field. Afterwards the splitter ignores further input.
    pub fn finish(
        &mut self,
        on_row: &mut dyn FnMut(&[u8], RowKey),
        on_header: &mut dyn FnMut(&[u8]),
    ) -> Result<(), String> {
        let tail = std::mem::take(&mut self.tail);
        let in_quote = self.in_quote;
        self.in_quote = false;
        self.escaped = false;
        if self.done || tail.is_empty() {
            self.done = true;
            return Ok(());
        }
        if in_quote {
            self.done = true;
            return Err("unterminated CSV quoted field at end of COPY data".to_string());
        }
        self.emit(&tail, on_row, on_header);
        self.done = true;
        Ok(())
    }

    /// Scans `data` for the end of the current row, carrying quote/escape state across calls.
    /// Returns the length of the row's remainder including its '\n', or None if the row continues past `data`.
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        match self.format {
            CopyFormat::Text { .. } => {
                let mut i = 0;
                if self.escaped {
                    // The byte after a backslash is data, even a newline.
                    if data.is_empty() {
                        return None;
                    }
                    self.escaped = false;
                    i = 1;
                }
                while i < data.len() {
                    let off = data[i..].iter().position(|&b| b == b'\\' || b == b'\n')?;
                    i += off;
                    if data[i] == b'\n' {
                        return Some(i + 1);
                    }
                    if i + 1 >= data.len() {
                        self.escaped = true;
                        return None;
                    }
                    i += 2;
                }
                None
            }
            CopyFormat::Csv { quote, escape, .. } => {
                for (i, &c) in data.iter().enumerate() {
                    if self.in_quote {
                        if self.escaped {
                            // Escape followed by quote/escape is a literal; by anything else, both are plain data.
                            self.escaped = false;
                        } else if c == escape && escape != quote {
                            self.escaped = true;
                        } else if c == quote {
                            // With escape == quote a doubled quote toggles out and back in: same row boundaries.
                            self.in_quote = false;
                        }
                    } else if c == quote {
                        self.in_quote = true;
                    } else if c == b'\n' {
                        return Some(i + 1);
                    }
                }
                None
            }
        }
    }

    /// Delivers one complete row (header, data row, or the text end marker).
    fn emit(
        &mut self,
        row: &[u8],
        on_row: &mut dyn FnMut(&[u8], RowKey),
        on_header: &mut dyn FnMut(&[u8]),
    ) {
        let content = strip_eol(row);
        if matches!(self.format, CopyFormat::Text { .. }) && content == b"\\." {
            self.done = true;
            self.tail.clear();
            return;
        }
        if self.header_pending {
            self.header_pending = false;
            on_header(row);
            return;
        }
        let key = match self.format {
            CopyFormat::Text { delimiter } => text_key(content, delimiter, self.key_index),
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
            } => csv_key(content, delimiter, quote, escape, self.key_index),
        };
        on_row(row, key);
    }
}

/// The row without its trailing "\n" / "\r\n" (a lone trailing '\r' is dropped too).
fn strip_eol(row: &[u8]) -> &[u8] {
    let row = row.strip_suffix(b"\n").unwrap_or(row);
    row.strip_suffix(b"\r").unwrap_or(row)
}

/// Text format: returns (end of the field starting at `i`, start of the next field if a delimiter follows).
fn text_field(s: &[u8], mut i: usize, delim: u8) -> (usize, Option<usize>) {
    while i < s.len() {
        let c = s[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if c == delim {
            return (i, Some(i + 1));
        }
        i += 1;
    }
    (s.len(), None)
}

fn text_key(content: &[u8], delim: u8, key_index: usize) -> RowKey {
    let mut start = 0;
    for _ in 0..key_index {
        match text_field(content, start, delim).1 {
            Some(next) => start = next,
            None => return RowKey::Missing,
        }
    }
    let end = text_field(content, start, delim).0;
    let raw = &content[start..end];
    if raw == b"\\N" {
        return RowKey::Null;
    }
    if !raw.contains(&b'\\') {
        return RowKey::Value(String::from_utf8_lossy(raw).into_owned());
    }
    RowKey::Value(String::from_utf8_lossy(&unescape_text(raw)).into_owned())
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|v| v as u8)
}

/// Undoes text-format backslash escapes the way PostgreSQL's COPY does.
fn unescape_text(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        // A trailing lone backslash is dropped, as PostgreSQL does.
        let Some(&n) = raw.get(i) else { break };
        i += 1;
        let b = match n {
            b'0'..=b'7' => {
                let mut v = u32::from(n - b'0');
                for _ in 0..2 {
                    match raw.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (v & 0xff) as u8
            }
            b'x' => match raw.get(i).and_then(|&h| hex_val(h)) {
                Some(mut v) => {
                    i += 1;
                    if let Some(h2) = raw.get(i).and_then(|&h| hex_val(h)) {
                        v = v * 16 + h2;
                        i += 1;
                    }
                    v
                }
                None => b'x',
            },
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            other => other,
        };
        out.push(b);
    }
    out
}

/// CSV: parses the field starting at `i`, appending its unquoted bytes to `out` if given.
/// Returns (whether a quote was seen, start of the next field if a delimiter follows).
fn csv_field(
    s: &[u8],
    mut i: usize,
    (delim, quote, escape): (u8, u8, u8),
    mut out: Option<&mut Vec<u8>>,
) -> (bool, Option<usize>) {
    let mut in_quote = false;
    let mut saw_quote = false;
    while i < s.len() {
        let c = s[i];
        i += 1;
        let byte = if in_quote {
            match s.get(i) {
                Some(&n) if c == escape && (n == quote || n == escape) => {
                    i += 1;
                    n
                }
                _ if c == quote => {
                    in_quote = false;
                    continue;
                }
                _ => c,
            }
        } else if c == quote {
            in_quote = true;
            saw_quote = true;
            continue;
        } else if c == delim {
            return (saw_quote, Some(i));
        } else {
            c
        };
        if let Some(out) = out.as_deref_mut() {
            out.push(byte);
        }
    }
    (saw_quote, None)
}

fn csv_key(content: &[u8], delim: u8, quote: u8, escape: u8, key_index: usize) -> RowKey {
    let chars = (delim, quote, escape);
    let mut start = 0;
    for _ in 0..key_index {
        match csv_field(content, start, chars, None).1 {
            Some(next) => start = next,
            None => return RowKey::Missing,
        }
    }
    let mut value = Vec::new();
    let (saw_quote, _) = csv_field(content, start, chars, Some(&mut value));
    if value.is_empty() && !saw_quote {
        return RowKey::Null;
    }
    RowKey::Value(String::from_utf8_lossy(&value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: CopyFormat = CopyFormat::Text { delimiter: b'\t' };
    const CSV: CopyFormat = CopyFormat::Csv {
        delimiter: b',',
        quote: b'"',
        escape: b'"',
    };

    #[derive(Debug, PartialEq)]
    struct Out {
        rows: Vec<(Vec<u8>, RowKey)>,
        headers: Vec<Vec<u8>>,
        result: Result<(), String>,
    }

    impl Out {
        fn keys(&self) -> Vec<RowKey> {
            self.rows.iter().map(|r| r.1.clone()).collect()
        }
        fn row_bytes(&self) -> Vec<&[u8]> {
            self.rows.iter().map(|r| r.0.as_slice()).collect()
        }
        /// Header then rows, concatenated.
        fn concat(&self) -> Vec<u8> {
            let mut all: Vec<u8> = self.headers.concat();
            for (r, _) in &self.rows {
                all.extend_from_slice(r);
            }
            all
        }
    }

    fn run_chunks<'a>(
        format: CopyFormat,
        key: usize,
        header: bool,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Out {
        let mut sp = RowSplitter::new(format, key, header);
        let mut rows = Vec::new();
        let mut headers = Vec::new();
        let mut on_row = |r: &[u8], k: RowKey| rows.push((r.to_vec(), k));
        let mut on_header = |h: &[u8]| headers.push(h.to_vec());
        for c in chunks {
            sp.feed(c, &mut on_row, &mut on_header);
        }
        let result = sp.finish(&mut on_row, &mut on_header);
        Out {
            rows,
            headers,
            result,
        }
    }

    fn run(format: CopyFormat, key: usize, header: bool, data: &[u8]) -> Out {
        run_chunks(format, key, header, [data])
    }

    fn v(s: &str) -> RowKey {
        RowKey::Value(s.to_string())
    }

    /// Feeds `data` whole, split at every boundary, at every pair of boundaries (short inputs)
    /// and in 1-byte chunks; all must agree. Returns the whole-feed output.
    fn check_splits(format: CopyFormat, key: usize, header: bool, data: &[u8]) -> Out {
        let whole = run(format, key, header, data);
        for i in 0..=data.len() {
            let split = run_chunks(format, key, header, [&data[..i], &data[i..]]);
            assert_eq!(
                split,
                whole,
                "split at {i} of {:?}",
                String::from_utf8_lossy(data)
            );
        }
        if data.len() <= 60 {
            for i in 0..=data.len() {
                for j in i..=data.len() {
                    let split =
                        run_chunks(format, key, header, [&data[..i], &data[i..j], &data[j..]]);
                    assert_eq!(split, whole, "split at {i},{j}");
                }
            }
        }
        let bytes = run_chunks(format, key, header, data.chunks(1));
        assert_eq!(bytes, whole, "1-byte chunks");
        whole
    }

    #[test]
    fn text_basic_key_positions() {
        let data = b"1\ta\tx\n2\tb\ty\n3\tc\tz\n";
        for (key, want) in [
            (0, ["1", "2", "3"]),
            (1, ["a", "b", "c"]),
            (2, ["x", "y", "z"]),
        ] {
            let out = check_splits(TEXT, key, false, data);
            assert_eq!(out.keys(), want.map(v).to_vec());
            assert_eq!(
                out.row_bytes(),
                vec![&b"1\ta\tx\n"[..], b"2\tb\ty\n", b"3\tc\tz\n"]
            );
            assert_eq!(out.concat(), data);
            assert_eq!(out.result, Ok(()));
        }
    }

    #[test]
    fn text_custom_delimiter() {
        let fmt = CopyFormat::Text { delimiter: b'|' };
        let out = check_splits(fmt, 1, false, b"a|k1|c\nb|k\\|2|d\ne\tf|g\n");
        assert_eq!(out.keys(), vec![v("k1"), v("k|2"), v("g")]);
    }

    #[test]
    fn text_null_and_missing() {
        let out = check_splits(TEXT, 1, false, b"1\t\\N\n2\n3\t\n4\t\\\\N\n5\t\\Nx\n");
        assert_eq!(
            out.keys(),
            vec![RowKey::Null, RowKey::Missing, v(""), v("\\N"), v("Nx"),]
        );
        let out = check_splits(TEXT, 0, false, b"\n");
        assert_eq!(out.keys(), vec![v("")]);
    }

    #[test]
    fn text_escapes_in_key() {
        let data = b"4\\t2\tz\n\\b\\f\\n\\r\\t\\v\\\\\n\\101\\7\\0612\n\\x41\\x4a\\x4G\\xg\\q\\\n\n\\\t\ty\n\\777\n";
        let out = check_splits(TEXT, 0, false, data);
        assert_eq!(
            out.keys(),
            vec![
                v("4\t2"),
                v("\u{8}\u{c}\n\r\t\u{b}\\"),
                v("A\u{7}12"),
                v("AJ\u{4}Gxgq\n"),
                v("\t"),
                v("\u{fffd}"), // \777 → byte 0xff, not UTF-8 on its own
            ]
        );
        // An escaped newline is data, not a row end.
        assert_eq!(out.rows[3].0, b"\\x41\\x4a\\x4G\\xg\\q\\\n\n");
        assert_eq!(out.concat(), data);
    }

    #[test]
    fn text_crlf() {
        let data = b"a\tb\r\nc\td\r\n\\.\r\n";
        let out = check_splits(TEXT, 1, false, data);
        assert_eq!(out.keys(), vec![v("b"), v("d")]);
        assert_eq!(out.row_bytes(), vec![&b"a\tb\r\n"[..], b"c\td\r\n"]);
    }

    #[test]
    fn text_end_marker() {
        let out = check_splits(TEXT, 0, false, b"a\nb\n\\.\nc\nd");
        assert_eq!(out.keys(), vec![v("a"), v("b")]);
        assert_eq!(out.concat(), b"a\nb\n");
        assert_eq!(out.result, Ok(()));
        // Marker without a newline at the very end.
        let out = check_splits(TEXT, 0, false, b"a\n\\.");
        assert_eq!(out.concat(), b"a\n");
        // Not markers: escaped backslash, trailing text, CSV format.
        let out = check_splits(TEXT, 0, false, b"\\\\.\n\\.x\nx\\.\n");
        assert_eq!(out.keys(), vec![v("\\."), v(".x"), v("x.")]);
        let out = check_splits(CSV, 0, false, b"\\.\n");
        assert_eq!(out.keys(), vec![v("\\.")]);
        // Marker as the first line swallows the header too.
        let out = check_splits(TEXT, 0, true, b"\\.\nh\n");
        assert!(out.headers.is_empty() && out.rows.is_empty());
    }

    #[test]
    fn final_row_without_newline() {
        let out = check_splits(TEXT, 1, false, b"1\ta\n2\tb");
        assert_eq!(out.keys(), vec![v("a"), v("b")]);
        assert_eq!(out.rows[1].0, b"2\tb");
        let out = check_splits(CSV, 1, false, b"1,a\n2,\"b\nc\"");
        assert_eq!(out.keys(), vec![v("a"), v("b\nc")]);
        assert_eq!(out.rows[1].0, b"2,\"b\nc\"");
        let out = check_splits(CSV, 0, false, b"");
        assert!(out.rows.is_empty() && out.result.is_ok());
    }

    #[test]
    fn csv_basic_and_positions() {
        let data = b"1,a,x\n2,b,y\r\n3,c,z\n";
        for (key, want) in [
            (0, ["1", "2", "3"]),
            (1, ["a", "b", "c"]),
            (2, ["x", "y", "z"]),
        ] {
            let out = check_splits(CSV, key, false, data);
            assert_eq!(out.keys(), want.map(v).to_vec());
            assert_eq!(out.concat(), data);
        }
    }

    #[test]
    fn csv_quoting() {
        let data = b"1,\"a,b\",x\n2,\"line1\nline2\r\n\",y\n3,\"a\"\"b\",z\n4,\"\",w\n5,,v\n6\n7, sp ,u\n8,ab\"c,d\"e,t\n";
        let out = check_splits(CSV, 1, false, data);
        assert_eq!(
            out.keys(),
            vec![
                v("a,b"),
                v("line1\nline2\r\n"),
                v("a\"b"),
                v(""),
                RowKey::Null,
                RowKey::Missing,
                v(" sp "),
                v("abc,de"),
            ]
        );
        assert_eq!(out.rows[1].0, b"2,\"line1\nline2\r\n\",y\n");
        assert_eq!(out.concat(), data);
        // Key after a quoted field containing delimiters and quotes.
        let out = check_splits(CSV, 2, false, data);
        assert_eq!(out.keys()[..3], [v("x"), v("y"), v("z")]);
    }

    #[test]
    fn csv_custom_delimiter_quote_escape() {
        let fmt = CopyFormat::Csv {
            delimiter: b'|',
            quote: b'\'',
            escape: b'\\',
        };
        let data = b"1|'a\\'b'|x\n2|'c\\\\'|y\n3|'d\\e|f'|z\n4|\\|w\n5|'it''s'|v\n";
        let out = check_splits(fmt, 1, false, data);
        assert_eq!(
            out.keys(),
            vec![v("a'b"), v("c\\"), v("d\\e|f"), v("\\"), v("its")]
        );
        let out = check_splits(fmt, 2, false, data);
        assert_eq!(out.keys(), vec![v("x"), v("y"), v("z"), v("w"), v("v")]);
        assert_eq!(out.concat(), data);
        // Escaped quote must not end the quoted section for row splitting.
        let out = check_splits(fmt, 0, false, b"'a\\'\nb'|1\n");
        assert_eq!(out.keys(), vec![v("a'\nb")]);
    }

    #[test]
    fn header_rows() {
        let out = check_splits(CSV, 0, true, b"id,\"na\nme\"\n1,a\n2,b\n");
        assert_eq!(out.headers, vec![b"id,\"na\nme\"\n".to_vec()]);
        assert_eq!(out.keys(), vec![v("1"), v("2")]);
        let out = check_splits(TEXT, 1, true, b"id\tname\n1\ta\n");
        assert_eq!(out.headers, vec![b"id\tname\n".to_vec()]);
        assert_eq!(out.keys(), vec![v("a")]);
        let out = check_splits(CSV, 0, true, b"only");
        assert_eq!(out.headers, vec![b"only".to_vec()]);
        assert!(out.rows.is_empty());
    }

    #[test]
    fn unterminated_quote() {
        let out = check_splits(CSV, 0, false, b"1,a\n\"open,\nstill");
        assert!(out.result.is_err());
        assert_eq!(out.keys(), vec![v("1")]);
        let fmt = CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'\\',
        };
        assert!(run(fmt, 0, false, b"\"a\\\"\n").result.is_err());
    }

    #[test]
    fn feed_after_finish_is_ignored() {
        let mut sp = RowSplitter::new(TEXT, 0, false);
        let mut n = 0;
        sp.feed(b"a\nb", &mut |_, _| n += 1, &mut |_| {});
        assert!(sp.finish(&mut |_, _| n += 1, &mut |_| {}).is_ok());
        sp.feed(b"c\n", &mut |_, _| n += 1, &mut |_| {});
        assert_eq!(n, 2);
    }

    #[test]
    fn tail_buffer_holds_only_incomplete_row() {
        let mut sp = RowSplitter::new(CSV, 0, false);
        let mut keys = Vec::new();
        sp.feed(b"1,a\n2,\"b", &mut |_, k| keys.push(k), &mut |_| {});
        assert_eq!(sp.tail, b"2,\"b");
        sp.feed(b"\"\n3", &mut |_, k| keys.push(k), &mut |_| {});
        assert_eq!(sp.tail, b"3");
        assert_eq!(keys, vec![v("1"), v("2")]);
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn fuzz_random_input_and_chunking() {
        const ALPHABET: &[u8] = b"\\\n\r\"',\t|aN.x17\xff'";
        let formats = [
            TEXT,
            CopyFormat::Text { delimiter: b'|' },
            CopyFormat::Text { delimiter: b'\\' },
            CopyFormat::Text { delimiter: b'\n' },
            CSV,
            CopyFormat::Csv {
                delimiter: b',',
                quote: b'"',
                escape: b'\\',
            },
            CopyFormat::Csv {
                delimiter: b'"',
                quote: b'"',
                escape: b'"',
            },
            CopyFormat::Csv {
                delimiter: b',',
                quote: b'\n',
                escape: b'\r',
            },
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for iter in 0..4000 {
            let len = rng.below(48);
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(8) == 0 {
                        rng.next() as u8
                    } else {
                        ALPHABET[rng.below(ALPHABET.len())]
                    }
                })
                .collect();
            let format = formats[iter % formats.len()];
            let key = rng.below(4);
            let header = rng.below(4) == 0;
            let whole = run(format, key, header, &data);
            let mut chunks = Vec::new();
            let mut pos = 0;
            while pos < data.len() {
                let n = (1 + rng.below(6)).min(data.len() - pos);
                chunks.push(&data[pos..pos + n]);
                pos += n;
            }
            assert_eq!(run_chunks(format, key, header, chunks), whole);
            let concat = whole.concat();
            match format {
                CopyFormat::Csv { .. } if whole.result.is_ok() => assert_eq!(concat, data),
                _ => assert!(data.starts_with(&concat)),
            }
        }
    }
}
