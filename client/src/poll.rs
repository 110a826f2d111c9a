//! A long-polling client (`GET /v1/events`), for where a WebSocket cannot be held. It
//! keeps the same [`Store`] as a WebSocket session: ordered by seq, each message id once,
//! gaps filled from history. Each poll may go to another gateway: the cursor carries
//! the state.

use std::time::Duration;

use parley_schemas::frames::{MessageView, ServerFrame};
use serde::Deserialize;
use serde_json::json;

use crate::api::Api;
use crate::session::{Sent, SessionError};
use crate::store::{Inserted, Source, Store};

#[derive(Deserialize)]
struct Reply {
    frames: Vec<ServerFrame>,
    cursor: String,
    has_more: bool,
}

/// What one poll brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Polled {
    /// `message` frames received (duplicates included).
    pub messages: usize,
    /// More is ready: poll again at once.
    pub has_more: bool,
}

pub struct Poller {
    apis: Vec<Api>,
    turn: usize,
    cursor: Option<String>,
    user: String,
    /// Messages per poll (the gateway's default if `None`).
    pub limit: Option<u32>,
    pub store: Store,
}

impl Poller {
    /// A client of `user` polling the gateways at `bases` in turn.
    pub fn new(bases: &[String], token: &str, user: &str) -> Poller {
        Poller {
            apis: bases.iter().map(|b| Api::new(b, token)).collect(),
            turn: 0,
            cursor: None,
            user: user.to_string(),
            limit: None,
            store: Store::default(),
        }
    }

    fn api(&mut self) -> Result<Api, SessionError> {
        self.turn += 1;
        match self.apis.len() {
            0 => Err(SessionError::Connect("no gateway to poll".into())),
            n => Ok(self.apis[self.turn % n].clone()),
        }
    }

    /// One poll: waits up to `timeout` for something new.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Polled, SessionError> {
        let api = self.api()?;
        let mut path = format!("/v1/events?timeout_ms={}", timeout.as_millis());
        if let Some(c) = &self.cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        if let Some(l) = self.limit {
            path.push_str(&format!("&limit={l}"));
        }
        let v = api.ok(reqwest::Method::GET, &path, None).await?;
        let reply: Reply =
            serde_json::from_value(v).map_err(|e| SessionError::Protocol(e.to_string()))?;
        let mut messages = 0;
        for frame in reply.frames {
            match frame {
                ServerFrame::Message(m) => {
                    messages += 1;
                    self.take(&api, m, Source::Polled).await?;
                }
                // Edits, deletions, reactions: to the messages held.
                change => {
                    self.store.apply_change(&change, &self.user);
                }
            }
        }
        self.cursor = Some(reply.cursor);
        Ok(Polled {
            messages,
            has_more: reply.has_more,
        })
    }

    async fn take(
        &mut self,
        api: &Api,
        m: MessageView,
        source: Source,
    ) -> Result<(), SessionError> {
        let conversation = m.conversation_id.clone();
        if let Inserted::Gap { after, before } = self.store.insert(m, source) {
            let page = api
                .history(&conversation, after, Some(before), 1000)
                .await?;
            for m in page.messages {
                self.store.insert(m, Source::History);
            }
            for c in page.changes {
                self.store.apply_change(&c.into_frame(), &self.user);
            }
        }
        Ok(())
    }

    /// Sends over REST; the reply carries the seq the log gave it.
    pub async fn send(
        &mut self,
        conversation: &str,
        client_msg_id: &str,
        body: &str,
    ) -> Result<Sent, SessionError> {
        let api = self.api()?;
        let v = api
            .ok(
                reqwest::Method::POST,
                &format!("/v1/conversations/{conversation}/messages"),
                Some(json!({"client_msg_id": client_msg_id, "body": body})),
            )
            .await?;
        let frame: ServerFrame =
            serde_json::from_value(v).map_err(|e| SessionError::Protocol(e.to_string()))?;
        let ServerFrame::Sent {
            message_id,
            seq,
            prev_seq,
            prev_unknown,
            ts,
            ..
        } = frame
        else {
            return Err(SessionError::Protocol("expected a sent frame".into()));
        };
        let own = MessageView {
            conversation_id: conversation.to_string(),
            seq,
            prev_seq,
            prev_unknown,
            message_id,
            sender_id: self.user.clone(),
            body: body.to_string(),
            ts,
            ..Default::default()
        };
        // A poll brings every change of its stretch: no change chain to check.
        self.take(&api, own, Source::Polled).await?;
        Ok(Sent {
            message_id,
            seq,
            ts,
        })
    }
}
