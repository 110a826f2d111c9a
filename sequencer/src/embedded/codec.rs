//! How the embedded log lays records and its bookkeeping out in RocksDB.
//!
//! - `records`: `topic 0x00 partition(i32 BE) offset(i64 BE)` → `timestamp(i64 BE)
//!   flags(u8: 1 = has a value) key_len(u32 BE) key value`. Big-endian numbers keep a
//!   partition's records in offset order.
//! - `meta`: `topic 0x00 name` → the topic's spec (JSON); `start 0x00 topic 0x00
//!   partition` → i64 BE (`end …` too, in logs of earlier versions: ends are now read
//!   off the records); `commit 0x00 group 0x00 topic 0x00 partition` →
//!   the group's next offset to read.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::log::LogRecord;

pub const RECORDS: &str = "records";
pub const META: &str = "meta";

/// The prefix of every record of `topic`'s `partition`.
pub fn partition_prefix(topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 5);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

pub fn record_key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut k = partition_prefix(topic, partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// The offset at the end of a record key.
pub fn offset_of(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(i64::from_be_bytes(tail))
}

pub fn encode_record(timestamp_ms: i64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
    let value_len = value.map_or(0, <[u8]>::len);
    let mut v = Vec::with_capacity(13 + key.len() + value_len);
    v.extend_from_slice(&timestamp_ms.to_be_bytes());
    v.push(u8::from(value.is_some()));
    v.extend_from_slice(&(key.len() as u32).to_be_bytes());
    v.extend_from_slice(key);
    if let Some(value) = value {
        v.extend_from_slice(value);
    }
    v
}

/// A stored record back; `None` for bytes this module did not write.
pub fn decode_record(topic: &str, partition: i32, offset: i64, v: &[u8]) -> Result<LogRecord> {
    let bad = || {
        Error::Unavailable(format!(
            "embedded log: a damaged record at {topic}/{partition}/{offset}"
        ))
    };
    let ts = i64::from_be_bytes(v.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let flags = *v.get(8).ok_or_else(bad)?;
    let key_len = u32::from_be_bytes(
        v.get(9..13)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let key = v.get(13..13 + key_len).ok_or_else(bad)?;
    let value = &v[13 + key_len..];
    Ok(LogRecord {
        topic: topic.to_string(),
        partition,
        offset,
        timestamp_ms: Some(ts),
        key: Some(Bytes::copy_from_slice(key)),
        value: (flags & 1 == 1).then(|| Bytes::copy_from_slice(value)),
    })
}

/// The timestamp of a stored record, without decoding the rest.
pub fn timestamp_of(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// Whether a stored record is a tombstone (no value), without decoding the rest.
pub fn is_tombstone(v: &[u8]) -> bool {
    v.get(8).is_some_and(|flags| flags & 1 == 0)
}

/// The key of a stored record, without decoding the rest.
pub fn key_of(v: &[u8]) -> Option<&[u8]> {
    let key_len = u32::from_be_bytes(v.get(9..13)?.try_into().ok()?) as usize;
    v.get(13..13 + key_len)
}

pub fn topic_key(topic: &str) -> Vec<u8> {
    joined(&[b"topic", topic.as_bytes()])
}

pub fn end_key(topic: &str, partition: i32) -> Vec<u8> {
    numbered(b"end", topic, partition)
}

pub fn start_key(topic: &str, partition: i32) -> Vec<u8> {
    numbered(b"start", topic, partition)
}

pub fn commit_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut k = joined(&[b"commit", group.as_bytes(), topic.as_bytes()]);
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn numbered(kind: &[u8], topic: &str, partition: i32) -> Vec<u8> {
    let mut k = joined(&[kind, topic.as_bytes()]);
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn joined(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

pub fn i64_of(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keys_sort_by_offset() {
        let v = encode_record(7, b"k", Some(b"value"));
        let r = decode_record("t", 2, 9, &v).unwrap();
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"value"[..]));
        assert_eq!(
            (r.timestamp_ms, timestamp_of(&v), key_of(&v)),
            (Some(7), Some(7), Some(&b"k"[..]))
        );
        let tomb = decode_record("t", 2, 9, &encode_record(7, b"k", None)).unwrap();
        assert_eq!(tomb.value, None);
        assert!(record_key("t", 0, 255) < record_key("t", 0, 256));
        assert_eq!(offset_of(&record_key("t", 3, 42)), Some(42));
        assert!(decode_record("t", 0, 0, b"short").is_err());
    }
}
