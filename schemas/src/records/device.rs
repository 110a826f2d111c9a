//! A user's settings (topic `devices`, compacted): the devices that receive push
//! notifications, the conversations muted for push, and whether their presence is
//! hidden.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};

use super::{with_meta, Meta};
use crate::codec::Record;
use crate::error::Result;
use crate::value::Fields;

/// `user_id` receives push notifications at `target`, through the provider of
/// `platform`. A tombstone under the same key removes the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistered {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub device_id: String,
    pub platform: String,
    pub target: String,
}

impl DeviceRegistered {
    /// The compaction key. It starts with the user id, so a user's settings can be
    /// told apart by prefix.
    pub fn key(user_id: &str, device_id: &str) -> String {
        format!("{user_id}/device/{device_id}")
    }
}

/// `user_id` does (or no longer does) want push notifications of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationMuted {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub conversation_id: String,
    pub muted: bool,
}

impl ConversationMuted {
    pub fn key(user_id: &str, conversation_id: &str) -> String {
        format!("{user_id}/mute/{conversation_id}")
    }
}

/// In a large group, `user_id` does (or no longer does) want a push for every message
/// while away, not only for mentions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushOptedIn {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub conversation_id: String,
    pub opted_in: bool,
}

impl PushOptedIn {
    pub fn key(user_id: &str, conversation_id: &str) -> String {
        format!("{user_id}/optin/{conversation_id}")
    }
}

/// `user_id` hides (or shows again) their presence: while hidden, nobody is told
/// whether they are online, nor when they were last seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceVisibility {
    #[serde(flatten)]
    pub meta: Meta,
    pub user_id: String,
    pub hidden: bool,
}

impl PresenceVisibility {
    pub fn key(user_id: &str) -> String {
        format!("{user_id}/privacy/presence")
    }
}

impl Record for PresenceVisibility {
    const NAME: &'static str = "parley.PresenceVisibility";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("user_id", Value::String(self.user_id.clone())),
                ("hidden", Value::Boolean(self.hidden)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
            hidden: f.boolean("hidden")?,
        })
    }
}

impl Record for PushOptedIn {
    const NAME: &'static str = "parley.PushOptedIn";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("user_id", Value::String(self.user_id.clone())),
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("opted_in", Value::Boolean(self.opted_in)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
            conversation_id: f.string("conversation_id")?,
            opted_in: f.boolean("opted_in")?,
        })
    }
}

impl Record for DeviceRegistered {
    const NAME: &'static str = "parley.DeviceRegistered";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("user_id", Value::String(self.user_id.clone())),
                ("device_id", Value::String(self.device_id.clone())),
                ("platform", Value::String(self.platform.clone())),
                ("target", Value::String(self.target.clone())),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
            device_id: f.string("device_id")?,
            platform: f.string("platform")?,
            target: f.string("target")?,
        })
    }
}

impl Record for ConversationMuted {
    const NAME: &'static str = "parley.ConversationMuted";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                ("user_id", Value::String(self.user_id.clone())),
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("muted", Value::Boolean(self.muted)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            user_id: f.string("user_id")?,
            conversation_id: f.string("conversation_id")?,
            muted: f.boolean("muted")?,
        })
    }
}
