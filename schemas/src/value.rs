//! Helpers to build `apache_avro` values and to take them apart without panicking.

use apache_avro::types::Value;
use uuid::Uuid;

use crate::error::{Error, Result};

/// The fields of a decoded record, taken out one by one by name.
pub struct Fields {
    record: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    pub fn new(value: Value, record: &'static str) -> Result<Self> {
        match value {
            Value::Record(fields) => Ok(Fields { record, fields }),
            other => Err(Error::field(
                record,
                format!("expected a record, got {other:?}"),
            )),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value> {
        let i = self
            .fields
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| Error::field(name, format!("missing from {}", self.record)))?;
        Ok(unwrap_union(self.fields.swap_remove(i).1))
    }

    pub fn string(&mut self, name: &str) -> Result<String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            Value::Uuid(u) => Ok(u.to_string()),
            other => Err(wrong(name, "a string", &other)),
        }
    }

    pub fn uuid(&mut self, name: &str) -> Result<Uuid> {
        match self.take(name)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => {
                Uuid::parse_str(&s).map_err(|e| Error::field(name, format!("not a uuid: {e}")))
            }
            other => Err(wrong(name, "a uuid", &other)),
        }
    }

    pub fn long(&mut self, name: &str) -> Result<i64> {
        match self.take(name)? {
            Value::Long(v) | Value::TimestampMillis(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(wrong(name, "a long", &other)),
        }
    }

    pub fn int(&mut self, name: &str) -> Result<i32> {
        match self.take(name)? {
            Value::Int(v) => Ok(v),
            other => Err(wrong(name, "an int", &other)),
        }
    }

    pub fn boolean(&mut self, name: &str) -> Result<bool> {
        match self.take(name)? {
            Value::Boolean(v) => Ok(v),
            other => Err(wrong(name, "a boolean", &other)),
        }
    }

    pub fn bytes(&mut self, name: &str) -> Result<Vec<u8>> {
        match self.take(name)? {
            Value::Bytes(v) => Ok(v),
            // A field that was a string in an earlier version (Avro promotes it).
            Value::String(s) => Ok(s.into_bytes()),
            other => Err(wrong(name, "bytes", &other)),
        }
    }

    pub fn symbol(&mut self, name: &str) -> Result<String> {
        match self.take(name)? {
            Value::Enum(_, s) => Ok(s),
            other => Err(wrong(name, "an enum symbol", &other)),
        }
    }

    pub fn strings(&mut self, name: &str) -> Result<Vec<String>> {
        match self.take(name)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s),
                    other => Err(wrong(name, "an array of strings", &other)),
                })
                .collect(),
            other => Err(wrong(name, "an array", &other)),
        }
    }

    pub fn ints(&mut self, name: &str) -> Result<Vec<i32>> {
        match self.take(name)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Int(i) => Ok(i),
                    other => Err(wrong(name, "an array of ints", &other)),
                })
                .collect(),
            other => Err(wrong(name, "an array", &other)),
        }
    }

    pub fn longs(&mut self, name: &str) -> Result<Vec<i64>> {
        match self.take(name)? {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Long(i) => Ok(i),
                    other => Err(wrong(name, "an array of longs", &other)),
                })
                .collect(),
            other => Err(wrong(name, "an array", &other)),
        }
    }

    /// An array's items (an absent field read through a default is an empty array).
    pub fn array(&mut self, name: &str) -> Result<Vec<Value>> {
        match self.take(name)? {
            Value::Array(items) => Ok(items),
            other => Err(wrong(name, "an array", &other)),
        }
    }

    pub fn opt_string(&mut self, name: &str) -> Result<Option<String>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(wrong(name, "null or a string", &other)),
        }
    }

    pub fn opt_long(&mut self, name: &str) -> Result<Option<i64>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Long(v) => Ok(Some(v)),
            other => Err(wrong(name, "null or a long", &other)),
        }
    }

    pub fn opt_bytes(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Bytes(v) => Ok(Some(v)),
            other => Err(wrong(name, "null or bytes", &other)),
        }
    }

    pub fn opt_int(&mut self, name: &str) -> Result<Option<i32>> {
        match self.take(name)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(v)),
            other => Err(wrong(name, "null or an int", &other)),
        }
    }
}

fn unwrap_union(v: Value) -> Value {
    match v {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn wrong(name: &str, expected: &str, got: &Value) -> Error {
    Error::field(name, format!("expected {expected}, got {got:?}"))
}

/// A record value from its fields, in schema order.
pub fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// `["null", T]` with `T` second.
pub fn nullable(v: Option<Value>) -> Value {
    match v {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

pub fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}
