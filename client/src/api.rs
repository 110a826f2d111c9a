//! The REST side of the protocol (docs/protocol.md).

use parley_schemas::frames::MessageView;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::session::SessionError;

/// A user's REST client for one gateway.
#[derive(Clone)]
pub struct Api {
    base: String,
    token: String,
    http: Client,
}

#[derive(Debug, Deserialize)]
pub struct Page {
    pub messages: Vec<MessageView>,
    /// For a page read forward: the changes made in its stretch of the log.
    #[serde(default)]
    pub changes: Vec<parley_schemas::frames::MessageChange>,
    pub has_more: bool,
}

/// A search's options beyond its query (`GET /v1/search`).
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    pub conversation_id: Option<String>,
    pub from: Option<String>,
    /// By relevance rather than newest first.
    pub relevance: bool,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A page of search results.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchResults {
    pub results: Vec<SearchResult>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A message found, with a snippet of its text (`hit` parts are the matched words).
#[derive(Debug, Clone, Deserialize)]
pub struct SearchResult {
    pub conversation_id: String,
    pub seq: i64,
    pub message_id: uuid::Uuid,
    pub sender_id: String,
    pub ts: i64,
    pub snippet: Vec<SnippetPart>,
    #[serde(default)]
    pub score: Option<f32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SnippetPart {
    pub text: String,
    #[serde(default)]
    pub hit: bool,
}

impl SearchResult {
    /// The snippet as plain text.
    pub fn text(&self) -> String {
        self.snippet.iter().map(|p| p.text.as_str()).collect()
    }
}

/// A downloaded attachment.
#[derive(Debug, Clone)]
pub struct Download {
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub disposition: String,
}

/// A REST answer that was not a success: its status and body.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: StatusCode,
    pub body: Value,
}

impl Refused {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    /// `base` like `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: &str) -> Self {
        Api {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: Client::new(),
        }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// A dev token for `user` (the gateway must run with `--dev-auth`).
    pub async fn dev_token(base: &str, user: &str) -> Result<String, SessionError> {
        Self::dev_token_for(base, user, 86_400).await
    }

    /// A dev token for `user` valid `seconds`.
    pub async fn dev_token_for(
        base: &str,
        user: &str,
        seconds: u64,
    ) -> Result<String, SessionError> {
        let v: Value = Client::new()
            .post(format!("{}/v1/dev/token", base.trim_end_matches('/')))
            .json(&json!({ "user_id": user, "expires_in": seconds }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| SessionError::Protocol("no token in reply".into()))
    }

    /// A request with the caller's token; `Err(Refused)` for a non-2xx answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Result<Value, Refused>, SessionError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(if status.is_success() {
            Ok(body)
        } else {
            Err(Refused { status, body })
        })
    }

    /// A request with the caller's token; a non-2xx answer is an error.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, SessionError> {
        self.call(method, path, body)
            .await?
            .map_err(|r| SessionError::Refused(format!("{}: {}", r.status, r.body)))
    }

    /// Uploads a file for `conversation`: asks for a slot (`POST /v1/uploads`), then puts
    /// the bytes where it says (the object store's presigned URL, or the gateway). The
    /// answer names it in a send ([`crate::Session::send_files`]).
    pub async fn upload(
        &self,
        conversation: &str,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<parley_schemas::AttachmentRef, SessionError> {
        let slot = self
            .ok(
                reqwest::Method::POST,
                "/v1/uploads",
                Some(json!({
                    "conversation_id": conversation,
                    "content_type": content_type,
                    "size": bytes.len(),
                })),
            )
            .await?;
        let (Some(id), Some(url)) = (slot["attachment_id"].as_str(), slot["upload_url"].as_str())
        else {
            return Err(SessionError::Protocol(format!(
                "an upload slot without id or url: {slot}"
            )));
        };
        let size = bytes.len();
        let mut put = if url.starts_with('/') {
            self.http
                .put(format!("{}{url}", self.base))
                .bearer_auth(&self.token)
        } else {
            self.http.put(url)
        };
        if let Some(headers) = slot["headers"].as_object() {
            for (k, v) in headers {
                if k != "content-length" {
                    put = put.header(k.as_str(), v.as_str().unwrap_or_default());
                }
            }
        }
        let resp = put.body(bytes).send().await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(SessionError::Refused(format!("upload: {status}: {text}")));
        }
        Ok(parley_schemas::AttachmentRef {
            attachment_id: id.to_string(),
            name: name.to_string(),
            content_type: content_type.to_string(),
            size: size as i64,
            width: None,
            height: None,
        })
    }

    /// Downloads an attachment (or an image's thumbnail), following the gateway's
    /// redirect to the object store if it gives one.
    pub async fn download(
        &self,
        attachment_id: &str,
        thumbnail: bool,
    ) -> Result<Result<Download, Refused>, SessionError> {
        let mut url = format!("{}/v1/attachments/{attachment_id}", self.base);
        if thumbnail {
            url.push_str("?thumbnail=true");
        }
        let resp = self.http.get(url).bearer_auth(&self.token).send().await?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (content_type, disposition) = (header("content-type"), header("content-disposition"));
        let bytes = resp.bytes().await?.to_vec();
        if !status.is_success() {
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
            return Ok(Err(Refused { status, body }));
        }
        Ok(Ok(Download {
            bytes,
            content_type,
            disposition,
        }))
    }

    pub async fn create_direct(&self, other: &str) -> Result<String, SessionError> {
        let v = self
            .ok(
                reqwest::Method::POST,
                "/v1/conversations",
                Some(json!({"type": "direct", "members": [other]})),
            )
            .await?;
        conversation_id(&v)
    }

    pub async fn create_group(
        &self,
        title: &str,
        members: &[&str],
    ) -> Result<String, SessionError> {
        let body = json!({"type": "group", "title": title, "members": members});
        let v = self
            .ok(reqwest::Method::POST, "/v1/conversations", Some(body))
            .await?;
        conversation_id(&v)
    }

    /// Adds `members` to group `conversation`.
    pub async fn add_members(
        &self,
        conversation: &str,
        members: &[String],
    ) -> Result<Value, SessionError> {
        let body = json!({ "members": members });
        self.ok(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conversation}/members"),
            Some(body),
        )
        .await
    }

    pub async fn conversations(&self) -> Result<Vec<Value>, SessionError> {
        let v = self
            .ok(reqwest::Method::GET, "/v1/conversations", None)
            .await?;
        Ok(v["conversations"].as_array().cloned().unwrap_or_default())
    }

    /// One page of history: `after < seq < before`.
    pub async fn history(
        &self,
        conversation: &str,
        after: Option<i64>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Page, SessionError> {
        let mut q = format!("?limit={limit}");
        if let Some(a) = after {
            q.push_str(&format!("&after={a}"));
        }
        if let Some(b) = before {
            q.push_str(&format!("&before={b}"));
        }
        let v = self
            .ok(
                reqwest::Method::GET,
                &format!("/v1/conversations/{conversation}/messages{q}"),
                None,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| SessionError::Protocol(e.to_string()))
    }

    /// The messages the caller may read that match `q` (docs/protocol.md, *Search*).
    pub async fn search(&self, q: &str, o: &SearchOptions) -> Result<SearchResults, SessionError> {
        let mut url = reqwest::Url::parse("http://gateway/v1/search")
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("q", q);
            if let Some(c) = &o.conversation_id {
                pairs.append_pair("conversation_id", c);
            }
            if let Some(f) = &o.from {
                pairs.append_pair("from", f);
            }
            if o.relevance {
                pairs.append_pair("sort", "relevance");
            }
            if let Some(l) = o.limit {
                pairs.append_pair("limit", &l.to_string());
            }
            if let Some(c) = &o.cursor {
                pairs.append_pair("cursor", c);
            }
        }
        let path = format!("{}?{}", url.path(), url.query().unwrap_or(""));
        let v = self.ok(reqwest::Method::GET, &path, None).await?;
        serde_json::from_value(v).map_err(|e| SessionError::Protocol(e.to_string()))
    }

    /// The caller's inbox: messages routed while it was offline, not acknowledged yet.
    pub async fn inbox(&self) -> Result<Vec<Value>, SessionError> {
        let v = self
            .ok(reqwest::Method::GET, "/v1/inbox?limit=1000", None)
            .await?;
        Ok(v["entries"].as_array().cloned().unwrap_or_default())
    }

    /// A delivery receipt over REST: the caller has everything up to `seq`.
    pub async fn ack(&self, conversation: &str, seq: i64) -> Result<Value, SessionError> {
        self.ok(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conversation}/receipts"),
            Some(json!({"kind": "delivered", "seq": seq})),
        )
        .await
    }

    /// Every message of a conversation, oldest first.
    pub async fn all_messages(&self, conversation: &str) -> Result<Vec<MessageView>, SessionError> {
        let mut out: Vec<MessageView> = Vec::new();
        loop {
            let after = out.last().map(|m| m.seq).or(Some(-1));
            let page = self.history(conversation, after, None, 1000).await?;
            let more = page.has_more;
            out.extend(page.messages);
            if !more {
                return Ok(out);
            }
        }
    }
}

fn conversation_id(v: &Value) -> Result<String, SessionError> {
    v["conversation_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| SessionError::Protocol(format!("no conversation_id in {v}")))
}
