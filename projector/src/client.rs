//! [`HttpViews`]: the [`Views`] of a projector in another process, over its HTTP API.

use std::time::Duration;

use async_trait::async_trait;
use parley_schemas::frames::MessageView;
use reqwest::{Client, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::search::{SearchPage, SearchQuery};
use crate::store::mailbox::{InboxPage, ReceiptView};
use crate::views::{
    ConversationSummary, ConversationView, HistoryPage, HistoryQuery, PartitionSnapshot, Status,
    Views,
};

#[derive(Clone)]
pub struct HttpViews {
    base: Url,
    client: Client,
    /// The shared service token every request carries (`Authorization: Bearer`).
    token: Option<String>,
    /// The incarnation of the replica's views the caller expects (empty: any).
    incarnation: String,
}

impl HttpViews {
    /// `base` like `http://127.0.0.1:8090`.
    pub fn new(base: &str) -> Result<Self> {
        let base = Url::parse(base)
            .map_err(|e| Error::BadRequest(format!("projector URL {base}: {e}")))?;
        if base.cannot_be_a_base() {
            return Err(Error::BadRequest(format!(
                "projector URL {base} cannot be a base"
            )));
        }
        let client = Client::builder()
            .timeout(Duration::from_secs(70))
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok(HttpViews {
            base,
            client,
            token: None,
            incarnation: String::new(),
        })
    }

    /// These views, answering only as `incarnation` (from the replica's announcement):
    /// another one answers `Unavailable`.
    pub fn expecting(&self, incarnation: &str) -> Self {
        HttpViews {
            incarnation: incarnation.to_string(),
            ..self.clone()
        }
    }

    /// Requests carry `token` (the projector's `PARLEY_SERVICE_TOKEN`).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty();
            for seg in segments {
                s.push(seg);
            }
        }
        url
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<Option<T>> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let req = if self.incarnation.is_empty() {
            req
        } else {
            req.header(crate::http::INCARNATION_HEADER, &self.incarnation)
        };
        let resp = req
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("projector: {e}")))?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let message = body["error"]["message"]
                .as_str()
                .unwrap_or("no detail")
                .to_string();
            return Err(match status {
                StatusCode::BAD_REQUEST => Error::BadRequest(message),
                _ => Error::Unavailable(format!("projector answered {status}: {message}")),
            });
        }
        let body = resp
            .json()
            .await
            .map_err(|e| Error::Unavailable(format!("projector reply: {e}")))?;
        Ok(Some(body))
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<Option<T>> {
        self.send(self.client.get(self.url(segments))).await
    }

    async fn must<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        self.get(segments)
            .await?
            .ok_or_else(|| Error::Unavailable(format!("projector has no /{}", segments.join("/"))))
    }
}

#[async_trait]
impl Views for HttpViews {
    async fn conversation(&self, id: &str) -> Result<Option<ConversationView>> {
        self.get(&["v1", "conversations", id]).await
    }

    async fn is_member(&self, conversation: &str, user: &str) -> Result<bool> {
        let v: Value = self
            .must(&["v1", "conversations", conversation, "members", user])
            .await?;
        Ok(v["member"].as_bool().unwrap_or(false))
    }

    async fn history_from(&self, conversation: &str, user: &str) -> Result<Option<i64>> {
        let v: Value = self
            .must(&["v1", "conversations", conversation, "members", user])
            .await?;
        Ok(v["since"].as_i64())
    }

    async fn user_conversations(
        &self,
        user: &str,
        unread: bool,
    ) -> Result<Vec<ConversationSummary>> {
        let req = self
            .client
            .get(self.url(&["v1", "users", user, "conversations"]))
            .query(&[("unread", unread)]);
        let v: Value = self
            .send(req)
            .await?
            .ok_or_else(|| Error::Unavailable("conversations not served".into()))?;
        serde_json::from_value(v["conversations"].clone())
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    async fn history(&self, conversation: &str, q: HistoryQuery) -> Result<HistoryPage> {
        let mut params: Vec<(&str, String)> = vec![("limit", q.limit.to_string())];
        if let Some(a) = q.after {
            params.push(("after", a.to_string()));
        }
        if let Some(b) = q.before {
            params.push(("before", b.to_string()));
        }
        if let Some(v) = q.viewer {
            params.push(("viewer", v));
        }
        let req = self
            .client
            .get(self.url(&["v1", "conversations", conversation, "messages"]))
            .query(&params);
        self.send(req)
            .await?
            .ok_or_else(|| Error::Unavailable("history not served".into()))
    }

    async fn message_by_id(&self, conversation: &str, id: Uuid) -> Result<Option<MessageView>> {
        self.get(&[
            "v1",
            "conversations",
            conversation,
            "messages",
            &id.to_string(),
        ])
        .await
    }

    async fn wait_stream_applied(
        &self,
        stream: crate::store::Stream,
        offsets: &[(i32, i64)],
        timeout: Duration,
    ) -> Result<bool> {
        let mut body = json!({"offsets": offsets, "timeout_ms": timeout.as_millis() as u64});
        if stream != crate::store::Stream::Events {
            body["stream"] = json!(stream.name());
        }
        let req = self.client.post(self.url(&["v1", "wait"])).json(&body);
        let v: Value = self
            .send(req)
            .await?
            .ok_or_else(|| Error::Unavailable("wait not served".into()))?;
        Ok(v["reached"].as_bool().unwrap_or(false))
    }

    async fn partition_snapshot(&self, partition: i32) -> Result<PartitionSnapshot> {
        self.must(&["v1", "partitions", &partition.to_string(), "snapshot"])
            .await
    }

    async fn inbox(&self, user: &str, limit: u32) -> Result<InboxPage> {
        let req = self
            .client
            .get(self.url(&["v1", "users", user, "inbox"]))
            .query(&[("limit", limit)]);
        self.send(req)
            .await?
            .ok_or_else(|| Error::Unavailable("inbox not served".into()))
    }

    async fn receipts(&self, conversation: &str) -> Result<Vec<ReceiptView>> {
        let v: Value = self
            .must(&["v1", "conversations", conversation, "receipts"])
            .await?;
        serde_json::from_value(v["receipts"].clone()).map_err(|e| Error::Unavailable(e.to_string()))
    }

    async fn status(&self) -> Result<Status> {
        self.must(&["v1", "status"]).await
    }

    async fn search_shard(&self, q: SearchQuery) -> Result<SearchPage> {
        let req = self.client.post(self.url(&["v1", "search"])).json(&q);
        self.send(req)
            .await?
            .ok_or_else(|| Error::Unavailable("search: no page in the reply".into()))
    }

    async fn checksum(&self) -> Result<String> {
        let v: Value = self.must(&["v1", "checksum"]).await?;
        v["checksum"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Unavailable("no checksum in reply".into()))
    }
}
