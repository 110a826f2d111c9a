//! Avro binary written from, and read into, a record's Rust type directly, without the
//! `apache_avro` [`Value`](apache_avro::types::Value) tree between them.
//!
//! Only the records every message takes on its way use it ([`Record::write_binary`]
//! and [`Record::read_binary`]): `MessagePosted`, and the `DeliveryBatch` that carries it
//! to a gateway. Building and walking the value tree for those was a quarter of the CPU
//! of one session posting as fast as it is acknowledged (docs/benchmarks.md). Every other
//! record, and every record written with an older schema, goes through `apache_avro`.
//!
//! The bytes are the ones `apache_avro` writes for the same record, byte for byte, and
//! what the reader accepts it reads as `apache_avro` does; `tests/roundtrip.rs` checks
//! both on generated records and on damaged copies of them. The reader is stricter in
//! one way: a body that ends early is an error, where `apache_avro` reads a union or a
//! string cut off by the end of its input as null.
//!
//! [`Record::write_binary`]: crate::codec::Record::write_binary
//! [`Record::read_binary`]: crate::codec::Record::read_binary

use uuid::Uuid;

use crate::error::{Error, Result};

/// Appends Avro binary to a buffer.
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    /// `long` (and `int`, and `timestamp-millis`): zig-zag, then a variable-length
    /// integer, seven bits a byte, low bits first.
    pub fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z > 0x7F {
            self.0.push(0x80 | (z & 0x7F) as u8);
            z >>= 7;
        }
        self.0.push(z as u8);
    }

    pub fn int(&mut self, v: i32) {
        self.long(i64::from(v));
    }

    pub fn boolean(&mut self, v: bool) {
        self.0.push(u8::from(v));
    }

    /// `bytes`: the length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.long(v.len() as i64);
        self.0.extend_from_slice(v);
    }

    pub fn string(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    /// A `uuid` string: its hyphenated lower-case form.
    pub fn uuid(&mut self, v: &Uuid) {
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        self.string(v.hyphenated().encode_lower(&mut buf));
    }

    /// The branch of a union.
    pub fn branch(&mut self, index: i64) {
        self.long(index);
    }

    /// `["null", T]`: branch 0, or branch 1 and the value.
    pub fn nullable<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.branch(0),
            Some(v) => {
                self.branch(1);
                write(self, v);
            }
        }
    }

    /// An array as `apache_avro` writes one: a single block (none when empty), then the
    /// zero count that ends it.
    pub fn array<T>(&mut self, items: &[T], mut write: impl FnMut(&mut Self, &T)) {
        if !items.is_empty() {
            self.long(items.len() as i64);
            for item in items {
                write(self, item);
            }
        }
        self.0.push(0);
    }
}

/// Reads Avro binary off the front of a body.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    /// The body was read to its end.
    pub fn end(self) -> Result<()> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(Error::TrailingBytes(n)),
        }
    }

    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self
            .rest
            .split_first()
            .ok_or_else(|| malformed("the body ends early"))?;
        self.rest = rest;
        Ok(b)
    }

    /// As `apache_avro`: at most ten bytes, the bits beyond 64 dropped.
    pub fn long(&mut self) -> Result<i64> {
        let mut z = 0u64;
        for j in 0..10 {
            let b = self.byte()?;
            z |= u64::from(b & 0x7F) << (j * 7);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(malformed("a variable-length integer longer than ten bytes"))
    }

    pub fn int(&mut self) -> Result<i32> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| malformed(format!("{v} is out of an int's range")))
    }

    pub fn boolean(&mut self) -> Result<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(malformed(format!("{b} is not a boolean"))),
        }
    }

    /// A length, which the rest of the body must hold.
    fn len(&mut self) -> Result<usize> {
        let n = self.long()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.rest.len())
            .ok_or_else(|| {
                malformed(format!(
                    "a length of {n} with {} bytes left",
                    self.rest.len()
                ))
            })
    }

    /// The bytes of a `bytes` or `string`, borrowed from the body.
    fn slice(&mut self) -> Result<&'a [u8]> {
        let n = self.len()?;
        let (bytes, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(bytes)
    }

    pub fn bytes(&mut self) -> Result<Vec<u8>> {
        Ok(self.slice()?.to_vec())
    }

    pub fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| malformed("a string that is not UTF-8"))
    }

    /// A `uuid` string, in any form [`Uuid::parse_str`] reads (as `apache_avro`).
    pub fn uuid(&mut self) -> Result<Uuid> {
        std::str::from_utf8(self.slice()?)
            .ok()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| malformed("a uuid that does not parse"))
    }

    /// The branch of a union of `branches`.
    pub fn branch(&mut self, branches: usize) -> Result<usize> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .filter(|&i| i < branches)
            .ok_or_else(|| malformed(format!("branch {i} of a union of {branches}")))
    }

    /// `["null", T]`.
    pub fn nullable<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        match self.branch(2)? {
            0 => Ok(None),
            _ => read(self).map(Some),
        }
    }

    /// An array's items, in blocks: a count, or a negative count and the block's size in
    /// bytes; a zero count ends it.
    pub fn array<T>(&mut self, mut read: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let mut items = Vec::new();
        loop {
            let count = match self.long()? {
                0 => return Ok(items),
                n if n < 0 => {
                    self.long()?;
                    n.checked_neg()
                        .ok_or_else(|| malformed("an array block count out of range"))?
                }
                n => n,
            };
            // Each item takes at least one byte: a count beyond the rest is malformed,
            // and is refused before anything is reserved for it.
            if count as u64 > self.rest.len() as u64 {
                return Err(malformed(format!(
                    "an array block of {count} items with {} bytes left",
                    self.rest.len()
                )));
            }
            for _ in 0..count {
                items.push(read(self)?);
            }
        }
    }
}

fn malformed(problem: impl Into<String>) -> Error {
    Error::Body(problem.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_round_trip_at_the_edges_of_each_byte_count() {
        for v in [
            0,
            -1,
            1,
            63,
            -64,
            64,
            -65,
            8191,
            8192,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::MAX,
            i64::MIN,
        ] {
            let mut buf = Vec::new();
            Writer(&mut buf).long(v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.long().unwrap(), v, "{buf:?}");
            r.end().unwrap();
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Reader::new(&[0x80; 11]).long().is_err(), "eleven bytes");
        assert!(Reader::new(&[0x80]).long().is_err(), "cut off");
        assert!(Reader::new(&[2]).boolean().is_err(), "2 is no boolean");
        assert!(
            Reader::new(&[20, b'a']).string().is_err(),
            "10 bytes, 1 there"
        );
        assert!(Reader::new(&[1]).bytes().is_err(), "a negative length");
        assert!(Reader::new(&[2, 0xff]).string().is_err(), "not UTF-8");
        assert!(
            Reader::new(&[4]).nullable(|r| r.long()).is_err(),
            "branch 2"
        );
        assert!(Reader::new(&[6, b'a', b'b', b'c']).uuid().is_err());
        let huge = {
            let mut b = Vec::new();
            Writer(&mut b).long(i64::MAX);
            b
        };
        assert!(Reader::new(&huge).array(|r| r.long()).is_err());
        assert!(Reader::new(&[2, 0]).end().is_err(), "trailing bytes");
    }

    #[test]
    fn an_array_reads_blocks_with_sizes_and_ends_at_a_zero_count() {
        // A block of two written with its size (count -2, 2 bytes), then one of one.
        let buf = [3, 4, 2, 4, 2, 6, 0];
        let mut r = Reader::new(&buf);
        assert_eq!(r.array(|r| r.long()).unwrap(), vec![1, 2, 3]);
        r.end().unwrap();
    }
}
