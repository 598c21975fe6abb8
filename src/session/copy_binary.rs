//! Splits the data of `COPY ... FROM STDIN (FORMAT binary)` into its header and tuples, and
//! finds the key field of each tuple, so each tuple can go to its shard behind the same header.

/// The fixed part of the header: signature, flags, header-extension length.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The key field of one tuple.
#[derive(Debug, PartialEq, Eq)]
pub enum BinaryKey<'a> {
    Value(&'a [u8]),
    Null,
    Missing,
}

#[derive(Debug, Default)]
pub struct BinarySplitter {
    key_index: usize,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    at: usize,
    header: Option<Vec<u8>>,
    done: bool,
}

impl BinarySplitter {
    pub fn new(key_index: usize) -> Self {
        BinarySplitter {
            key_index,
            ..Default::default()
        }
    }

    /// The header, once it has been read (every shard's stream must start with it).
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// Feeds a chunk; `on_tuple(tuple_bytes, key)` for every complete tuple. The trailer ends
    /// the data: anything after it is ignored, as PostgreSQL does.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        on_tuple: &mut dyn FnMut(&[u8], BinaryKey<'_>),
    ) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        if self.header.is_none() {
            let Some(len) = self.header_len()? else {
                return Ok(());
            };
            self.header = Some(self.buf[..len].to_vec());
            self.at = len;
        }
        while let Some(end) = self.tuple_end()? {
            let tuple = &self.buf[self.at..end];
            if tuple == [0xff, 0xff] {
                self.done = true;
                break;
            }
            on_tuple(tuple, key_of(tuple, self.key_index));
            self.at = end;
        }
        // Keep only the unfinished tuple.
        self.buf.drain(..self.at);
        self.at = 0;
        Ok(())
    }

    /// End of data: an error unless the trailer (or at least whole tuples) arrived.
    pub fn finish(&self) -> Result<(), String> {
        match (&self.header, self.done || self.buf.len() == self.at) {
            (Some(_), true) => Ok(()),
            (None, _) => Err("COPY binary data ended before its header".into()),
            (Some(_), false) => Err("COPY binary data ended in the middle of a tuple".into()),
        }
    }

    fn header_len(&self) -> Result<Option<usize>, String> {
        let fixed = SIGNATURE.len() + 8;
        if self.buf.len() < fixed {
            return Ok(None);
        }
        if &self.buf[..SIGNATURE.len()] != SIGNATURE {
            return Err("COPY file signature not recognized".into());
        }
        let ext = be32(&self.buf[SIGNATURE.len() + 4..]).unwrap_or(0);
        if ext < 0 {
            return Err("invalid COPY file header (negative extension length)".into());
        }
        let len = fixed + ext as usize;
        Ok((self.buf.len() >= len).then_some(len))
    }

    /// The end of the tuple starting at `at`, if it is complete.
    fn tuple_end(&self) -> Result<Option<usize>, String> {
        let b = &self.buf[self.at..];
        let Some(count) = b.get(..2).map(|c| i16::from_be_bytes([c[0], c[1]])) else {
            return Ok(None);
        };
        if count == -1 {
            return Ok(Some(self.at + 2));
        }
        if count < 0 {
            return Err(format!("invalid field count {count} in COPY binary data"));
        }
        let mut pos = 2;
        for _ in 0..count {
            let Some(len) = be32(&b[pos..]) else {
                return Ok(None);
            };
            pos += 4;
            if len > 0 {
                pos += len as usize;
            } else if len < -1 {
                return Err(format!("invalid field length {len} in COPY binary data"));
            }
            if pos > b.len() {
                return Ok(None);
            }
        }
        Ok(Some(self.at + pos))
    }
}

fn be32(b: &[u8]) -> Option<i32> {
    b.get(..4)
        .map(|v| i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
}

/// The key field of a complete tuple.
fn key_of(tuple: &[u8], index: usize) -> BinaryKey<'_> {
    let count = i16::from_be_bytes([tuple[0], tuple[1]]) as usize;
    if index >= count {
        return BinaryKey::Missing;
    }
    let mut pos = 2;
    for i in 0..count {
        let len = be32(&tuple[pos..]).unwrap_or(-1);
        pos += 4;
        if i == index {
            return match len {
                -1 => BinaryKey::Null,
                n => BinaryKey::Value(&tuple[pos..pos + n as usize]),
            };
        }
        pos += len.max(0) as usize;
    }
    BinaryKey::Missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut t = (fields.len() as i16).to_be_bytes().to_vec();
        for f in fields {
            match f {
                Some(v) => {
                    t.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    t.extend_from_slice(v);
                }
                None => t.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        t
    }

    #[test]
    fn splits_at_every_boundary() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&0i32.to_be_bytes());
        data.extend_from_slice(&4i32.to_be_bytes());
        data.extend_from_slice(b"ext!");
        let header_len = data.len();
        let rows: Vec<Vec<u8>> = (0..5i64)
            .map(|i| tuple(&[Some(b"name"), Some(&i.to_be_bytes()), None]))
            .collect();
        for r in &rows {
            data.extend_from_slice(r);
        }
        data.extend_from_slice(&tuple(&[Some(b"x")]));
        data.extend_from_slice(&[0xff, 0xff]);
        data.extend_from_slice(b"ignored after the trailer");
        for cut in 0..data.len() {
            let mut s = BinarySplitter::new(1);
            let mut got = Vec::new();
            for part in [&data[..cut], &data[cut..]] {
                s.feed(part, &mut |t, k| {
                    let key = match k {
                        BinaryKey::Value(v) => Some(v.to_vec()),
                        _ => None,
                    };
                    got.push((t.to_vec(), key));
                })
                .unwrap();
            }
            s.finish().unwrap();
            assert_eq!(s.header().unwrap(), &data[..header_len]);
            assert_eq!(got.len(), 6);
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(got[i].0, *r);
                assert_eq!(got[i].1.as_deref(), Some(&(i as i64).to_be_bytes()[..]));
            }
            assert_eq!(got[5].1, None, "short tuple: key missing");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut s = BinarySplitter::new(0);
        assert!(s.feed(b"NOTPGCOPY-at-all-here", &mut |_, _| {}).is_err());
        let mut s = BinarySplitter::new(0);
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 9, 1]);
        s.feed(&data, &mut |_, _| {}).unwrap();
        assert!(s.finish().is_err(), "ends inside a tuple");
        let mut s = BinarySplitter::new(0);
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0]);
        assert!(s.feed(&data, &mut |_, _| {}).is_err());
    }
}
