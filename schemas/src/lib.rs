//! Parley's contracts: every record on the log and every frame a client sees.
//!
//! Module map:
//! - [`records`]: the Rust type of each log record (one `schemas/avro/*.avsc` each), and
//!   [`AnyRecord`], the sum of them all.
//! - [`codec`]: Avro single-object encoding (`C3 01` + CRC-64-AVRO fingerprint + body).
//! - [`binary`]: Avro binary written and read straight from the Rust types of the
//!   records every message takes (the rest go through `apache_avro`'s value tree).
//! - [`registry`]: the schemas this build knows, looked up by full name or by fingerprint.
//! - [`canonical`] and [`fingerprint`]: Parsing Canonical Form and CRC-64-AVRO, per the
//!   Avro specification (not the `apache-avro` crate's own, which differs for logical types).
//! - [`value`]: helpers to build and take apart `apache_avro` values without panicking.
//! - [`frames`]: the JSON frames of the client protocol (`docs/protocol.md`).
//! - [`ids`]: derived identifiers (message ids, direct-conversation ids).
//! - [`rules`]: what an `events` record means at its log position (membership, dedup),
//!   shared by every consumer.
//! - [`samples`]: one fixed record of each kind, for golden tests and examples.
//! - [`sealed`]: content sealed under data keys kept outside the log (crypto-shredding).

pub mod binary;
pub mod canonical;
pub mod codec;
pub mod error;
pub mod fingerprint;
pub mod frames;
pub mod ids;
pub mod mentions;
pub mod records;
pub mod registry;
pub mod rules;
pub mod samples;
pub mod sealed;
pub mod value;

pub use codec::{decode, decode_any, encode, Record};
pub use error::{Error, Result};
pub use records::*;
