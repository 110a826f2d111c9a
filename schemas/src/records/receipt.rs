//! Delivery and read receipts (topic `receipts`).

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::{Error, Result};
use crate::value::Fields;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptKind {
    Delivered,
    Read,
}

impl ReceiptKind {
    const SYMBOLS: [&'static str; 2] = ["DELIVERED", "READ"];

    fn to_avro(self) -> Value {
        let i = self as usize;
        Value::Enum(i as u32, Self::SYMBOLS[i].to_string())
    }

    fn parse(symbol: &str) -> Result<Self> {
        match symbol {
            "DELIVERED" => Ok(Self::Delivered),
            "READ" => Ok(Self::Read),
            other => Err(Error::field("kind", format!("unknown symbol {other}"))),
        }
    }
}

/// `meta.actor` has received or read everything of the conversation up to `up_to_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptRecorded {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub kind: ReceiptKind,
    pub up_to_seq: i64,
}

impl Record for ReceiptRecorded {
    const NAME: &'static str = "parley.ReceiptRecorded";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("kind", self.kind.to_avro()),
                ("up_to_seq", Value::Long(self.up_to_seq)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            kind: ReceiptKind::parse(&f.symbol("kind")?)?,
            up_to_seq: f.long("up_to_seq")?,
        })
    }
}
