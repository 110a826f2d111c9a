//! Conversation lifecycle and membership: records of the `events` topic that share the
//! conversation's partition with its messages.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::{Error, Result};
use crate::value::{nullable, strings, Fields};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    const SYMBOLS: [&'static str; 2] = ["DIRECT", "GROUP"];

    fn to_avro(self) -> Value {
        let i = self as usize;
        Value::Enum(i as u32, Self::SYMBOLS[i].to_string())
    }

    fn parse(symbol: &str) -> Result<Self> {
        match symbol {
            "DIRECT" => Ok(Self::Direct),
            "GROUP" => Ok(Self::Group),
            other => Err(Error::field("kind", format!("unknown symbol {other}"))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationCreated {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub kind: ConversationKind,
    pub title: Option<String>,
    pub members: Vec<String>,
}

impl Record for ConversationCreated {
    const NAME: &'static str = "parley.ConversationCreated";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("kind", self.kind.to_avro()),
                ("title", nullable(self.title.clone().map(Value::String))),
                ("members", strings(&self.members)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            kind: ConversationKind::parse(&f.symbol("kind")?)?,
            title: f.opt_string("title")?,
            members: f.strings("members")?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersAdded {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub members: Vec<String>,
}

impl Record for MembersAdded {
    const NAME: &'static str = "parley.MembersAdded";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("members", strings(&self.members)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            members: f.strings("members")?,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRemoved {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub member: String,
}

impl Record for MemberRemoved {
    const NAME: &'static str = "parley.MemberRemoved";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("member", Value::String(self.member.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            member: f.string("member")?,
        })
    }
}

/// A group member made an admin, or one no longer: roles live in the log, like
/// membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRoleSet {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub member: String,
    pub admin: bool,
}

impl Record for MemberRoleSet {
    const NAME: &'static str = "parley.MemberRoleSet";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("member", Value::String(self.member.clone())),
                ("admin", Value::Boolean(self.admin)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            member: f.string("member")?,
            admin: f.boolean("admin")?,
        })
    }
}

/// A group's settings from this record on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettingsChanged {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    /// Whether members added later read the group's history from its creation, rather
    /// than from their add on.
    pub full_history: bool,
    /// Disappearing messages: how long after it was posted each message posted from
    /// this record on disappears; `None`: messages stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disappear_after_ms: Option<i64>,
}

impl Record for GroupSettingsChanged {
    const NAME: &'static str = "parley.GroupSettingsChanged";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("full_history", Value::Boolean(self.full_history)),
                (
                    "disappear_after_ms",
                    nullable(self.disappear_after_ms.map(Value::Long)),
                ),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            full_history: f.boolean("full_history")?,
            disappear_after_ms: f.opt_long("disappear_after_ms")?,
        })
    }
}

/// Disappearing messages of a conversation whose time has come ([`GroupSettingsChanged`]
/// `disappear_after_ms`): every message due at or before `expired_until` is gone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesExpired {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub expired_until: i64,
}

impl Record for MessagesExpired {
    const NAME: &'static str = "parley.MessagesExpired";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("expired_until", Value::TimestampMillis(self.expired_until)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            expired_until: f.long("expired_until")?,
        })
    }
}
