//! The one error type of this crate.

/// What can go wrong encoding or decoding a record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("record too short: {0} bytes, a single-object header alone is 10")]
    Truncated(usize),
    #[error("not single-object encoded: magic is {0:02x} {1:02x}, expected c3 01")]
    BadMagic(u8, u8),
    #[error("unknown schema fingerprint {0}")]
    UnknownFingerprint(String),
    #[error("unknown schema name {0}")]
    UnknownSchema(String),
    #[error("record is a {found}, expected a {expected}")]
    WrongRecord {
        expected: &'static str,
        found: &'static str,
    },
    #[error("malformed avro body: {0}")]
    Body(String),
    #[error("{0} trailing bytes after the record body")]
    TrailingBytes(usize),
    #[error("field {field}: {problem}")]
    Field { field: String, problem: String },
    #[error("invalid schema {name}: {problem}")]
    Schema { name: String, problem: String },
    #[error("encoding {name}: {problem}")]
    Encode { name: &'static str, problem: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn field(field: &str, problem: impl Into<String>) -> Self {
        Error::Field {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}
