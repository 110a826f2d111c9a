//! Avro single-object encoding of log records.
//!
//! Layout: `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer schema's Parsing
//! Canonical Form (little-endian), then the Avro binary body. Any consumer holding
//! `schemas/avro/` can decode any record.

use apache_avro::types::Value;

use crate::binary::{Reader, Writer};
use crate::error::{Error, Result};
use crate::records::AnyRecord;
use crate::registry::{self, SchemaInfo};

pub const MAGIC: [u8; 2] = [0xC3, 0x01];
pub const HEADER_LEN: usize = 10;

/// A Rust type with a schema in `schemas/avro/`.
pub trait Record: Sized {
    /// The schema's full name, e.g. `parley.MessagePosted`.
    const NAME: &'static str;
    fn to_avro(&self) -> Value;
    fn from_avro(value: Value) -> Result<Self>;

    /// Writes the body in Avro binary straight from `self` ([`crate::binary`]) and says
    /// true; false, having written nothing, for a record that goes through
    /// [`Record::to_avro`].
    fn write_binary(&self, _out: &mut Writer) -> bool {
        false
    }

    /// Reads a body written with the current schema straight into `Self`
    /// ([`crate::binary`]); `None` for a record that goes through [`Record::from_avro`].
    fn read_binary(_body: &mut Reader) -> Option<Result<Self>> {
        None
    }

    fn schema() -> &'static SchemaInfo {
        registry::by_name(Self::NAME)
            .unwrap_or_else(|| panic!("{} is not in schemas::registry::SOURCES", Self::NAME))
    }
}

/// Encodes `record` with its schema's single-object encoding.
pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>> {
    let mut out = header::<R>(256);
    if record.write_binary(&mut Writer(&mut out)) {
        return Ok(out);
    }
    general::write_body(record, &mut out)?;
    Ok(out)
}

/// The single-object header of an `R`, in a buffer with room for `body` more bytes.
fn header<R: Record>(body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&R::schema().fingerprint);
    out
}

/// The path every record can take, through `apache_avro`'s value tree: what
/// [`crate::binary`] must agree with, byte for byte.
pub mod general {
    use super::*;

    /// As [`super::encode`], through [`Record::to_avro`].
    pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>> {
        let mut out = header::<R>(256);
        write_body(record, &mut out)?;
        Ok(out)
    }

    /// Appends `record`'s body to `out`, through [`Record::to_avro`].
    pub(super) fn write_body<R: Record>(record: &R, out: &mut Vec<u8>) -> Result<()> {
        let info = R::schema();
        // A self-contained schema needs no name table: `to_avro_datum` would build it from
        // the schema twice per record (to validate, then to encode).
        let body = if info.self_contained {
            apache_avro::to_avro_datum_schemata(&info.schema, Vec::new(), record.to_avro())
        } else {
            apache_avro::to_avro_datum(&info.schema, record.to_avro())
        }
        .map_err(|e| Error::Encode {
            name: R::NAME,
            problem: e.to_string(),
        })?;
        out.extend_from_slice(&body);
        Ok(())
    }

    /// As [`super::decode_any`], through [`AnyRecord::from_avro`].
    pub fn decode_any(bytes: &[u8]) -> Result<AnyRecord> {
        let (writer, body) = split(bytes)?;
        let reader = registry::by_name(writer.name)
            .ok_or_else(|| Error::UnknownSchema(writer.name.into()))?;
        let value = read_body(writer, reader, body)?;
        AnyRecord::from_avro(writer.name, value)
    }
}

/// Decodes a record known to be an `R`.
pub fn decode<R: Record>(bytes: &[u8]) -> Result<R> {
    let (writer, body) = split(bytes)?;
    if writer.name != R::NAME {
        return Err(Error::WrongRecord {
            expected: R::NAME,
            found: writer.name,
        });
    }
    if std::ptr::eq(writer, R::schema()) {
        if let Some(record) = read_binary::<R>(body) {
            return record;
        }
    }
    R::from_avro(read_body(writer, R::schema(), body)?)
}

/// `R` read from the whole of `body` by [`Record::read_binary`]; `None` if `R` has no
/// direct reader.
pub(crate) fn read_binary<R: Record>(body: &[u8]) -> Option<Result<R>> {
    let mut reader = Reader::new(body);
    let record = R::read_binary(&mut reader)?;
    Some(record.and_then(|r| reader.end().map(|()| r)))
}

/// Decodes any record of the contract, whichever it is.
pub fn decode_any(bytes: &[u8]) -> Result<AnyRecord> {
    let (writer, body) = split(bytes)?;
    let reader =
        registry::by_name(writer.name).ok_or_else(|| Error::UnknownSchema(writer.name.into()))?;
    if std::ptr::eq(writer, reader) {
        if let Some(record) = AnyRecord::read_binary(writer.name, body) {
            return record;
        }
    }
    let value = read_body(writer, reader, body)?;
    AnyRecord::from_avro(writer.name, value)
}

/// The writer schema named by the header, and the body after it.
pub fn split(bytes: &[u8]) -> Result<(&'static SchemaInfo, &[u8])> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::Truncated(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(Error::BadMagic(bytes[0], bytes[1]));
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[2..HEADER_LEN]);
    let info = registry::by_fingerprint(&fp)
        .ok_or_else(|| Error::UnknownFingerprint(crate::fingerprint::to_hex(&fp)))?;
    Ok((info, &bytes[HEADER_LEN..]))
}

/// Reads an Avro body written with `writer`, resolved to `reader`; the whole body must be used.
pub fn read_body(writer: &SchemaInfo, reader: &SchemaInfo, body: &[u8]) -> Result<Value> {
    let mut rest = body;
    let reader_schema = (!std::ptr::eq(writer, reader)).then_some(&reader.schema);
    // As in `encode`: no name table to build for a self-contained writer schema.
    let value = if writer.self_contained {
        apache_avro::from_avro_datum_schemata(&writer.schema, Vec::new(), &mut rest, reader_schema)
    } else {
        apache_avro::from_avro_datum(&writer.schema, &mut rest, reader_schema)
    }
    .map_err(|e| Error::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// Reads an Avro body written with `writer` into a value of an arbitrary `reader` schema
/// (schema evolution: a newer reader reads older bytes).
pub fn read_with_schema(bytes: &[u8], reader: &apache_avro::Schema) -> Result<Value> {
    let (writer, body) = split(bytes)?;
    let mut rest = body;
    let value = apache_avro::from_avro_datum(&writer.schema, &mut rest, Some(reader))
        .map_err(|e| Error::Body(e.to_string()))?;
    if !rest.is_empty() {
        return Err(Error::TrailingBytes(rest.len()));
    }
    Ok(value)
}
