//! Client authentication: JWT HS256 tokens whose `sub` is the user id; `exp` is
//! required. Browsers, which cannot set headers on a WebSocket, trade a token for a
//! one-use ticket (`POST /v1/ws-ticket`, valid 30 s) and open `/v1/ws?ticket=…`, so
//! that no long-lived token ends up in a URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_schemas::frames::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::service::Shared;

/// The shortest HS256 secret taken (RFC 7518 §3.2: a key as long as the hash).
pub const MIN_SECRET_BYTES: usize = 32;
/// How long a WebSocket ticket is valid.
pub const TICKET_SECONDS: u64 = 30;
/// `typ` of a ticket: it is never taken as a bearer token, nor a token as a ticket.
const TICKET: &str = "ws-ticket";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    /// Set on tickets only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    /// A ticket's id (one use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    /// A ticket's session ends when the token it was traded for expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_exp: Option<u64>,
}

/// Who a request is from, and until when its credentials hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tickets redeemed here, until they expire.
    used: Mutex<HashMap<String, u64>>,
}

/// User ids: 1 to 64 of `A-Z a-z 0-9 . _ @ : -`.
pub fn valid_user_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b':' | b'-'))
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unauthorized(m: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, m)
}

impl Auth {
    /// Refuses secrets shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the JWT secret is {} bytes; it must be at least {MIN_SECRET_BYTES}",
                secret.len()
            ));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Ok(Auth {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            used: Mutex::new(HashMap::new()),
        })
    }

    fn claims(&self, token: &str) -> Result<Claims, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| unauthorized(format!("invalid token: {e}")))?;
        if !valid_user_id(&data.claims.sub) {
            return Err(unauthorized("token subject is not a valid user id"));
        }
        Ok(data.claims)
    }

    /// The user a token speaks for, and when the token expires.
    pub fn identify(&self, token: &str) -> Result<Identity, ApiError> {
        let c = self.claims(token)?;
        if c.typ.is_some() {
            return Err(unauthorized(
                "a ticket is not a token: use it on /v1/ws once",
            ));
        }
        Ok(Identity {
            user: c.sub,
            expires_at: c.exp,
        })
    }

    /// The user a token speaks for.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        self.identify(token).map(|i| i.user)
    }

    /// A token for `user`, valid for `seconds`.
    pub fn issue(&self, user: &str, seconds: u64) -> Result<String, ApiError> {
        self.sign(&Claims {
            sub: user.to_string(),
            exp: now_s() + seconds,
            typ: None,
            jti: None,
            token_exp: None,
        })
    }

    fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("signing a token: {e}")))
    }

    /// A one-use ticket for `who`'s WebSocket, valid [`TICKET_SECONDS`].
    pub fn ticket(&self, who: &Identity) -> Result<String, ApiError> {
        self.sign(&Claims {
            sub: who.user.clone(),
            exp: now_s() + TICKET_SECONDS,
            typ: Some(TICKET.into()),
            jti: Some(uuid::Uuid::new_v4().simple().to_string()),
            token_exp: Some(who.expires_at),
        })
    }

    /// Redeems a ticket: valid, unexpired, and not used here before.
    pub fn redeem(&self, ticket: &str) -> Result<Identity, ApiError> {
        let c = self.claims(ticket)?;
        let (Some(TICKET), Some(jti)) = (c.typ.as_deref(), c.jti) else {
            return Err(unauthorized("not a ticket (POST /v1/ws-ticket makes one)"));
        };
        let now = now_s();
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, exp| *exp + self.validation.leeway >= now);
        if used.insert(jti, c.exp).is_some() {
            return Err(unauthorized("this ticket was used already"));
        }
        Ok(Identity {
            user: c.sub,
            expires_at: c.token_exp.unwrap_or(c.exp),
        })
    }
}

/// The token of a request: `Authorization: Bearer …` only. A URL's `?token=` is taken on
/// the WebSocket alone ([`SocketCaller`]): a token in a REST URL ends up in proxies' logs
/// and browser history, and protocol.md names the header for REST.
pub fn token_of(parts: &Parts) -> Option<String> {
    let h = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let v = h.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

/// The authenticated caller of a request.
pub struct Caller(pub String);

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        CallerIdentity::from_request_parts(parts, state)
            .await
            .map(|c| Caller(c.0.user))
    }
}

/// The authenticated caller, with when their token expires.
pub struct CallerIdentity(pub Identity);

impl FromRequestParts<Shared> for CallerIdentity {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let token = token_of(parts)
            .ok_or_else(|| unauthorized("missing token (Authorization: Bearer …)"))?;
        state.auth.identify(&token).map(CallerIdentity)
    }
}

/// A WebSocket's caller: `?ticket=…` (one use), or a token as for any request.
pub struct SocketCaller(pub Identity);

impl FromRequestParts<Shared> for SocketCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ticket) = query_param(parts, "ticket") {
            return state.auth.redeem(&ticket).map(SocketCaller);
        }
        // Header first; a token on the URL still opens a socket (non-browser clients
        // that cannot set headers), as protocol.md says.
        let token = token_of(parts)
            .or_else(|| query_param(parts, "token"))
            .ok_or_else(|| unauthorized("missing token (Authorization: Bearer …)"))?;
        state.auth.identify(&token).map(SocketCaller)
    }
}

/// `POST /v1/ws-ticket`: `{"ticket", "expires_in_ms"}`, for `/v1/ws?ticket=…`.
pub async fn ws_ticket(
    axum::extract::State(state): axum::extract::State<Shared>,
    CallerIdentity(who): CallerIdentity,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let ticket = state.auth.ticket(&who)?;
    Ok(axum::Json(serde_json::json!({
        "ticket": ticket,
        "expires_in_ms": TICKET_SECONDS * 1000,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes";

    #[test]
    fn short_secrets_are_refused() {
        assert!(Auth::new("secret").is_err());
        assert!(Auth::new(&"x".repeat(31)).is_err());
        assert!(Auth::new(&"x".repeat(32)).is_ok());
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let a = Auth::new(SECRET).unwrap();
        let t = a.issue("alice", 60).unwrap();
        assert_eq!(a.verify(&t).unwrap(), "alice");
        assert!(Auth::new(&format!("{SECRET}-other"))
            .unwrap()
            .verify(&t)
            .is_err());
        assert!(a.verify("not.a.token").is_err());
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                exp: 1,
                typ: None,
                jti: None,
                token_exp: None,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(a.verify(&expired).is_err());
    }

    #[test]
    fn a_ticket_is_used_once_and_is_not_a_token() {
        let a = Auth::new(SECRET).unwrap();
        let token = a.issue("alice", 600).unwrap();
        let who = a.identify(&token).unwrap();
        let ticket = a.ticket(&who).unwrap();
        assert!(a.verify(&ticket).is_err(), "a ticket is no bearer token");
        assert!(a.redeem(&token).is_err(), "a token is no ticket");
        let redeemed = a.redeem(&ticket).unwrap();
        assert_eq!(redeemed.user, "alice");
        assert_eq!(redeemed.expires_at, who.expires_at);
        assert!(a.redeem(&ticket).is_err(), "one use");
    }

    #[test]
    fn user_ids() {
        assert!(valid_user_id("alice@example.com"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a/b"));
        assert!(!valid_user_id(&"x".repeat(65)));
    }
}
