//! Client authentication: JWT HS256 tokens whose `sub` is the user id; `exp` is required.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_schemas::frames::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::service::Shared;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// User ids: 1 to 64 of `A-Z a-z 0-9 . _ @ : -`.
pub fn valid_user_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b':' | b'-'))
}

impl Auth {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        Auth {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// The user a token speaks for.
    pub fn verify(&self, token: &str) -> Result<String, ApiError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::new(ErrorCode::Unauthorized, format!("invalid token: {e}")))?;
        if !valid_user_id(&data.claims.sub) {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "token subject is not a valid user id",
            ));
        }
        Ok(data.claims.sub)
    }

    /// A token for `user`, valid for `seconds`.
    pub fn issue(&self, user: &str, seconds: u64) -> Result<String, ApiError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub: user.to_string(),
            exp: now + seconds,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("signing a token: {e}")))
    }
}

/// The token of a request: `Authorization: Bearer …`, or `?token=…` (browsers cannot
/// set headers on a WebSocket).
pub fn token_of(parts: &Parts) -> Option<String> {
    if let Some(h) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = h.to_str().ok()?;
        return v.strip_prefix("Bearer ").map(|t| t.trim().to_string());
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
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
        let token = token_of(parts).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "missing token (Authorization: Bearer …)",
            )
        })?;
        state.auth.verify(&token).map(Caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let a = Auth::new("secret");
        let t = a.issue("alice", 60).unwrap();
        assert_eq!(a.verify(&t).unwrap(), "alice");
        assert!(Auth::new("other").verify(&t).is_err());
        assert!(a.verify("not.a.token").is_err());
        let expired = encode(
            &Header::new(Algorithm::HS256),
            &Claims {
                sub: "alice".into(),
                exp: 1,
            },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        assert!(a.verify(&expired).is_err());
    }

    #[test]
    fn user_ids() {
        assert!(valid_user_id("alice@example.com"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a/b"));
        assert!(!valid_user_id(&"x".repeat(65)));
    }
}
