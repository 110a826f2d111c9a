//! A posted message (the record whose offset in `events` is its seq_no), and the
//! changes to it made later: an edit, a deletion for everyone, a reaction.

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{with_meta, Meta};
use crate::binary::{Reader, Writer};
use crate::codec::Record;
use crate::error::Result;
use crate::value::{nullable, Fields};

/// `meta.actor` is the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePosted {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    /// `UUIDv5(sender, client_msg_id)`: see [`crate::ids::message_id`].
    pub message_id: Uuid,
    pub client_msg_id: String,
    pub body: String,
    /// The seq of the message this one replies to (same conversation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    /// Files sent with it, by reference (the bytes are in the object store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentRef>,
    /// The body sealed under a data key ([`crate::sealed`]); `body` is then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

/// A message's body sealed under its data key, as the record carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The data key's id in the `keys` topic ([`crate::DataKey::id_of`]).
    pub key_id: String,
    #[serde(with = "crate::records::any::base64_bytes")]
    pub nonce: Vec<u8>,
    #[serde(with = "crate::records::any::base64_bytes")]
    pub ciphertext: Vec<u8>,
    /// The sending gateway's transit key of the hour, which `transit_wrapped` is
    /// wrapped under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit_key: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::records::any::opt_base64_bytes"
    )]
    pub transit_wrapped: Option<Vec<u8>>,
    /// The users the body mentions, readable without the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
}

impl Sealed {
    /// `text` (of message `message_id` of `conversation`) sealed under `key` (the data
    /// key `key_id`), the key wrapped under the transit key `transit` if given.
    pub fn seal(
        key_id: String,
        key: &crate::sealed::ContentKey,
        transit: Option<(&str, &crate::sealed::ContentKey)>,
        conversation: &str,
        message_id: &Uuid,
        text: &str,
        mentions: Vec<String>,
    ) -> Sealed {
        let aad = crate::sealed::body_aad(conversation, message_id);
        let (nonce, ciphertext) = key.seal(&aad, text.as_bytes());
        Sealed {
            transit_key: transit.map(|(id, _)| id.to_string()),
            transit_wrapped: transit.map(|(_, t)| t.wrap(&key_id, key)),
            key_id,
            nonce: nonce.to_vec(),
            ciphertext,
            mentions,
        }
    }

    /// The record's fields after the body (`key_id`, `nonce`, `transit_key`,
    /// `transit_wrapped`), null when there is nothing sealed.
    fn fields(sealed: Option<&Sealed>) -> Vec<(&'static str, Value)> {
        vec![
            (
                "key_id",
                nullable(sealed.map(|s| Value::String(s.key_id.clone()))),
            ),
            (
                "nonce",
                nullable(sealed.map(|s| Value::Bytes(s.nonce.clone()))),
            ),
            (
                "transit_key",
                nullable(
                    sealed
                        .and_then(|s| s.transit_key.clone())
                        .map(Value::String),
                ),
            ),
            (
                "transit_wrapped",
                nullable(
                    sealed
                        .and_then(|s| s.transit_wrapped.clone())
                        .map(Value::Bytes),
                ),
            ),
        ]
    }

    /// A body as the record holds it: the string branch, or the sealed bytes.
    fn body_value(body: &str, sealed: Option<&Sealed>) -> Value {
        match sealed {
            None => Value::Union(0, Box::new(Value::String(body.to_string()))),
            Some(s) => Value::Union(1, Box::new(Value::Bytes(s.ciphertext.clone()))),
        }
    }

    /// The body and what is sealed, as read from a record: `mentions` only where the
    /// record has them.
    fn take(
        f: &mut Fields,
        body: Vec<u8>,
        mentions: impl FnOnce(&mut Fields) -> Result<Vec<String>>,
    ) -> Result<(String, Option<Sealed>)> {
        let key_id = f.opt_string("key_id")?;
        Sealed::plain_or_sealed(body, key_id, |key_id, ciphertext| {
            Ok(Sealed {
                key_id,
                nonce: f.opt_bytes("nonce")?.unwrap_or_default(),
                ciphertext,
                transit_key: f.opt_string("transit_key")?,
                transit_wrapped: f.opt_bytes("transit_wrapped")?,
                mentions: mentions(f)?,
            })
        })
    }

    /// A record's body: plain text when it names no data key, else the ciphertext that
    /// `sealed` makes a [`Sealed`] of (the body is then empty).
    fn plain_or_sealed(
        body: Vec<u8>,
        key_id: Option<String>,
        sealed: impl FnOnce(String, Vec<u8>) -> Result<Sealed>,
    ) -> Result<(String, Option<Sealed>)> {
        Ok(match key_id {
            None => (
                String::from_utf8(body).map_err(|_| {
                    crate::error::Error::field("body", "plain text that is not UTF-8")
                })?,
                None,
            ),
            Some(key_id) => (String::new(), Some(sealed(key_id, body)?)),
        })
    }

    /// The text sealed for message `message_id` of `conversation`, opened with its data
    /// key; `None` if it does not open (another key, or altered bytes).
    pub fn open(
        &self,
        key: &crate::sealed::ContentKey,
        conversation: &str,
        message_id: &Uuid,
    ) -> Option<String> {
        let aad = crate::sealed::body_aad(conversation, message_id);
        String::from_utf8(key.open(&aad, &self.nonce, &self.ciphertext)?).ok()
    }

    /// The data key, unwrapped with the transit key the record names.
    pub fn via_transit(
        &self,
        transit: &crate::sealed::ContentKey,
    ) -> Option<crate::sealed::ContentKey> {
        transit.unwrap_key(&self.key_id, self.transit_wrapped.as_deref()?)
    }
}

/// A file sent with a message: what the log and clients know of it. Its bytes are in
/// the object store under its `attachment_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub attachment_id: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<i32>,
}

impl AttachmentRef {
    fn to_avro(&self) -> Value {
        crate::value::record(vec![
            ("attachment_id", Value::String(self.attachment_id.clone())),
            ("name", Value::String(self.name.clone())),
            ("content_type", Value::String(self.content_type.clone())),
            ("size", Value::Long(self.size)),
            ("width", nullable(self.width.map(Value::Int))),
            ("height", nullable(self.height.map(Value::Int))),
        ])
    }

    fn write_binary(&self, w: &mut Writer) {
        w.string(&self.attachment_id);
        w.string(&self.name);
        w.string(&self.content_type);
        w.long(self.size);
        w.nullable(self.width, |w, v| w.int(v));
        w.nullable(self.height, |w, v| w.int(v));
    }

    fn read_binary(r: &mut Reader) -> Result<Self> {
        Ok(Self {
            attachment_id: r.string()?,
            name: r.string()?,
            content_type: r.string()?,
            size: r.long()?,
            width: r.nullable(|r| r.int())?,
            height: r.nullable(|r| r.int())?,
        })
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, "parley.AttachmentRef")?;
        Ok(Self {
            attachment_id: f.string("attachment_id")?,
            name: f.string("name")?,
            content_type: f.string("content_type")?,
            size: f.long("size")?,
            width: f.opt_int("width")?,
            height: f.opt_int("height")?,
        })
    }
}

/// A record whose body may be sealed (`MessagePosted`, `MessageEdited`): what opening
/// it takes, so that every reader opens both kinds the same way.
pub trait SealedBody {
    fn conversation(&self) -> &str;
    fn sealed(&self) -> Option<&Sealed>;
    /// The id its sealed body is bound to: a message's id, an edit's own event id.
    fn bound_to(&self) -> Uuid;
    fn body(&self) -> &str;
    /// Opens it in place with its data key (`None`: not at hand): the body, and what
    /// else is sealed under the key. False if the body does not open; it is then empty.
    fn open_with(&mut self, key: Option<&crate::sealed::ContentKey>) -> bool;
}

/// The body of `r` opened with `key`, if it is sealed and opens.
fn opened_body<R: SealedBody + ?Sized>(
    r: &R,
    key: Option<&crate::sealed::ContentKey>,
) -> Option<String> {
    r.sealed()?.open(key?, r.conversation(), &r.bound_to())
}

impl SealedBody for MessagePosted {
    fn conversation(&self) -> &str {
        &self.conversation_id
    }
    fn sealed(&self) -> Option<&Sealed> {
        self.sealed.as_ref()
    }
    fn bound_to(&self) -> Uuid {
        self.message_id
    }
    fn body(&self) -> &str {
        &self.body
    }
    fn open_with(&mut self, key: Option<&crate::sealed::ContentKey>) -> bool {
        if self.sealed.is_none() {
            return true;
        }
        match (key, opened_body(self, key)) {
            (Some(key), Some(text)) => {
                self.body = text;
                open_names(
                    &mut self.attachments,
                    key,
                    &self.conversation_id,
                    &self.message_id,
                );
                true
            }
            _ => {
                self.body.clear();
                hide_names(&mut self.attachments);
                false
            }
        }
    }
}

impl SealedBody for MessageEdited {
    fn conversation(&self) -> &str {
        &self.conversation_id
    }
    fn sealed(&self) -> Option<&Sealed> {
        self.sealed.as_ref()
    }
    fn bound_to(&self) -> Uuid {
        self.meta.event_id
    }
    fn body(&self) -> &str {
        &self.body
    }
    fn open_with(&mut self, key: Option<&crate::sealed::ContentKey>) -> bool {
        if self.sealed.is_none() {
            return true;
        }
        match opened_body(self, key) {
            Some(text) => {
                self.body = text;
                true
            }
            None => {
                self.body.clear();
                false
            }
        }
    }
}

/// Opens, in place, the sealed names of the files of message `message_id` of
/// `conversation` with its data key; a name that does not open is left empty.
pub fn open_names(
    attachments: &mut [AttachmentRef],
    key: &crate::sealed::ContentKey,
    conversation: &str,
    message_id: &Uuid,
) {
    for a in attachments {
        a.name = crate::sealed::open_name(key, conversation, message_id, &a.attachment_id, &a.name)
            .unwrap_or_default();
    }
}

/// Empties, in place, the sealed names of files whose key is not at hand.
pub fn hide_names(attachments: &mut [AttachmentRef]) {
    for a in attachments {
        if a.name.starts_with(crate::sealed::SEALED_NAME) {
            a.name.clear();
        }
    }
}

impl MessagePosted {
    pub fn sender(&self) -> &str {
        &self.meta.actor
    }

    /// The users it mentions: from the body, or, when it is sealed, as the record lists them.
    pub fn mentions(&self) -> Vec<String> {
        match &self.sealed {
            Some(s) => s.mentions.clone(),
            None => crate::mentions::mentions(&self.body),
        }
    }

    /// Seals the body and the attachments' names under `key` (the data key `key_id`),
    /// and wraps the key under the transit key `transit`, if given. The body is left
    /// empty; each name becomes [`crate::sealed::SEALED_NAME`] and its sealed bytes.
    pub fn seal(
        &mut self,
        key_id: String,
        key: &crate::sealed::ContentKey,
        transit: Option<(&str, &crate::sealed::ContentKey)>,
    ) {
        for a in &mut self.attachments {
            a.name = crate::sealed::seal_name(
                key,
                &self.conversation_id,
                &self.message_id,
                &a.attachment_id,
                &a.name,
            );
        }
        let mentions = crate::mentions::mentions(&self.body);
        self.sealed = Some(Sealed::seal(
            key_id,
            key,
            transit,
            &self.conversation_id,
            &self.message_id,
            &self.body,
            mentions,
        ));
        self.body = String::new();
    }
}

impl Record for MessagePosted {
    const NAME: &'static str = "parley.MessagePosted";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("message_id", Value::Uuid(self.message_id)),
                ("client_msg_id", Value::String(self.client_msg_id.clone())),
                ("body", Sealed::body_value(&self.body, self.sealed.as_ref())),
                ("reply_to", nullable(self.reply_to.map(Value::Long))),
                (
                    "attachments",
                    Value::Array(
                        self.attachments
                            .iter()
                            .map(AttachmentRef::to_avro)
                            .collect(),
                    ),
                ),
            ]
            .into_iter()
            .chain(Sealed::fields(self.sealed.as_ref()))
            .chain([(
                "mentions",
                crate::value::strings(self.sealed.as_ref().map_or(&[], |s| &s.mentions)),
            )])
            .collect(),
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        let meta = Meta::take(&mut f)?;
        let conversation_id = f.string("conversation_id")?;
        let message_id = f.uuid("message_id")?;
        let client_msg_id = f.string("client_msg_id")?;
        let body = f.bytes("body")?;
        let reply_to = f.opt_long("reply_to")?;
        let attachments = f
            .array("attachments")?
            .into_iter()
            .map(AttachmentRef::from_avro)
            .collect::<Result<_>>()?;
        let (body, sealed) = Sealed::take(&mut f, body, |f| f.strings("mentions"))?;
        Ok(Self {
            meta,
            conversation_id,
            message_id,
            client_msg_id,
            body,
            reply_to,
            attachments,
            sealed,
        })
    }

    fn write_binary(&self, w: &mut Writer) -> bool {
        let sealed = self.sealed.as_ref();
        self.meta.write_binary(w);
        w.string(&self.conversation_id);
        w.uuid(&self.message_id);
        w.string(&self.client_msg_id);
        match sealed {
            None => {
                w.branch(0);
                w.string(&self.body);
            }
            Some(s) => {
                w.branch(1);
                w.bytes(&s.ciphertext);
            }
        }
        w.nullable(self.reply_to, |w, v| w.long(v));
        w.array(&self.attachments, |w, a| a.write_binary(w));
        w.nullable(sealed.map(|s| &s.key_id), |w, v| w.string(v));
        w.nullable(sealed.map(|s| &s.nonce), |w, v| w.bytes(v));
        w.nullable(sealed.and_then(|s| s.transit_key.as_ref()), |w, v| {
            w.string(v)
        });
        w.nullable(sealed.and_then(|s| s.transit_wrapped.as_ref()), |w, v| {
            w.bytes(v)
        });
        w.array(sealed.map_or(&[][..], |s| &s.mentions), |w, m| w.string(m));
        true
    }

    fn read_binary(r: &mut Reader) -> Option<Result<Self>> {
        let mut read = || -> Result<Self> {
            let meta = Meta::read_binary(r)?;
            let conversation_id = r.string()?;
            let message_id = r.uuid()?;
            let client_msg_id = r.string()?;
            let body = match r.branch(2)? {
                0 => r.string()?.into_bytes(),
                _ => r.bytes()?,
            };
            let reply_to = r.nullable(|r| r.long())?;
            let attachments = r.array(AttachmentRef::read_binary)?;
            let key_id = r.nullable(|r| r.string())?;
            let nonce = r.nullable(|r| r.bytes())?;
            let transit_key = r.nullable(|r| r.string())?;
            let transit_wrapped = r.nullable(|r| r.bytes())?;
            let mentions = r.array(|r| r.string())?;
            let (body, sealed) = Sealed::plain_or_sealed(body, key_id, |key_id, ciphertext| {
                Ok(Sealed {
                    key_id,
                    nonce: nonce.unwrap_or_default(),
                    ciphertext,
                    transit_key,
                    transit_wrapped,
                    mentions,
                })
            })?;
            Ok(Self {
                meta,
                conversation_id,
                message_id,
                client_msg_id,
                body,
                reply_to,
                attachments,
                sealed,
            })
        };
        Some(read())
    }
}

/// `meta.actor` is the editor, `meta.occurred_at` when it was edited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageEdited {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub target_seq: i64,
    pub body: String,
    /// The new text sealed under a data key of its own ([`crate::sealed`]); `body` is
    /// then empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<Sealed>,
}

impl MessageEdited {
    /// Seals the new text under `key` (the data key `key_id`), bound to this record's
    /// own event id; the body is left empty.
    pub fn seal(
        &mut self,
        key_id: String,
        key: &crate::sealed::ContentKey,
        transit: Option<(&str, &crate::sealed::ContentKey)>,
    ) {
        self.sealed = Some(Sealed::seal(
            key_id,
            key,
            transit,
            &self.conversation_id,
            &self.meta.event_id,
            &self.body,
            Vec::new(),
        ));
        self.body = String::new();
    }
}

impl Record for MessageEdited {
    const NAME: &'static str = "parley.MessageEdited";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("target_seq", Value::Long(self.target_seq)),
                ("body", Sealed::body_value(&self.body, self.sealed.as_ref())),
            ]
            .into_iter()
            .chain(Sealed::fields(self.sealed.as_ref()))
            .collect(),
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        let meta = Meta::take(&mut f)?;
        let conversation_id = f.string("conversation_id")?;
        let target_seq = f.long("target_seq")?;
        let body = f.bytes("body")?;
        let (body, sealed) = Sealed::take(&mut f, body, |_| Ok(Vec::new()))?;
        Ok(Self {
            meta,
            conversation_id,
            target_seq,
            body,
            sealed,
        })
    }
}

/// A message deleted for everyone; `meta.actor` deleted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub target_seq: i64,
}

impl Record for MessageDeleted {
    const NAME: &'static str = "parley.MessageDeleted";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("target_seq", Value::Long(self.target_seq)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            target_seq: f.long("target_seq")?,
        })
    }
}

/// `meta.actor`'s reaction `emoji` to the message at `target_seq`, set (`on`) or taken back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReactionSet {
    #[serde(flatten)]
    pub meta: Meta,
    pub conversation_id: String,
    pub target_seq: i64,
    pub emoji: String,
    pub on: bool,
}

impl Record for ReactionSet {
    const NAME: &'static str = "parley.ReactionSet";

    fn to_avro(&self) -> Value {
        with_meta(
            &self.meta,
            vec![
                (
                    "conversation_id",
                    Value::String(self.conversation_id.clone()),
                ),
                ("target_seq", Value::Long(self.target_seq)),
                ("emoji", Value::String(self.emoji.clone())),
                ("on", Value::Boolean(self.on)),
            ],
        )
    }

    fn from_avro(value: Value) -> Result<Self> {
        let mut f = Fields::new(value, Self::NAME)?;
        Ok(Self {
            meta: Meta::take(&mut f)?,
            conversation_id: f.string("conversation_id")?,
            target_seq: f.long("target_seq")?,
            emoji: f.string("emoji")?,
            on: f.boolean("on")?,
        })
    }
}
