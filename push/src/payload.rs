//! The JSON body sent to a push webhook, and its HMAC signature.
//!
//! The shape follows APNs/FCM (an alert plus a data map and a collapse key) so that a
//! relay can map it onto either. The `id` is derived from the device and the collapsed
//! seq range, so a redelivery carries the same id and receivers can deduplicate by it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::collapse::Collapsed;

/// Header carrying `sha256=<hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Parley-Signature";

/// Namespace of the v5 UUIDs made by [`notification_id`].
pub const NOTIFICATION_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_5a0e_3c2b_4e8f_9a47_d2c8_61b0_e935);

/// The visible part of a notification.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Alert {
    pub title: String,
    pub body: String,
    pub badge: Option<u64>,
}

/// The data part of a notification, for the app to act on.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Data {
    pub conversation_id: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub count: u32,
    pub message_id: Uuid,
    pub sender_id: String,
}

/// One notification for one device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notification {
    /// Stable id: receivers deduplicate by it.
    pub id: Uuid,
    pub user_id: String,
    pub device_id: String,
    pub notification: Alert,
    pub data: Data,
    /// The conversation id: a newer notification replaces an older one on the device.
    pub collapse_key: String,
    /// Milliseconds since the Unix epoch.
    pub sent_at: i64,
}

/// The stable id of the notification of seqs `first_seq..=last_seq` of a conversation
/// to a device.
pub fn notification_id(
    device_id: &str,
    conversation_id: &str,
    first_seq: i64,
    last_seq: i64,
) -> Uuid {
    let name = format!("{device_id}\u{1f}{conversation_id}\u{1f}{first_seq}\u{1f}{last_seq}");
    Uuid::new_v5(&NOTIFICATION_NAMESPACE, name.as_bytes())
}

impl Notification {
    /// The notification of collapsed jobs `c` for one device.
    pub fn build(c: &Collapsed, device_id: &str, badge: Option<u64>, now_ms: i64) -> Self {
        let body = if c.count <= 1 {
            c.preview.clone()
        } else {
            format!("{} (+{} more)", c.preview, c.count - 1)
        };
        Self {
            id: notification_id(device_id, &c.conversation_id, c.first_seq, c.last_seq),
            user_id: c.user_id.clone(),
            device_id: device_id.to_owned(),
            notification: Alert {
                title: c.title.clone(),
                body,
                badge,
            },
            data: Data {
                conversation_id: c.conversation_id.clone(),
                first_seq: c.first_seq,
                last_seq: c.last_seq,
                count: c.count,
                message_id: c.message_id,
                sender_id: c.sender_id.clone(),
            },
            collapse_key: c.conversation_id.clone(),
            sent_at: now_ms,
        }
    }

    /// The JSON body.
    pub fn to_body(&self) -> Vec<u8> {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// The signature header value of `body`: `sha256=` and the lowercase hex of
/// HMAC-SHA256(`secret`, `body`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    let tag = m.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 2 * tag.len());
    out.push_str("sha256=");
    for &byte in tag.as_slice() {
        out.push(hex_digit(byte >> 4));
        out.push(hex_digit(byte & 0x0f));
    }
    out
}

/// Whether `header` is a valid signature of `body` under `secret`. The comparison is
/// constant-time. Hex digits may be upper or lower case.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(tag) = header.trim().strip_prefix("sha256=").and_then(decode_hex) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&tag).is_ok()
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| {
            let hi = char::from(pair[0]).to_digit(16)?;
            let lo = char::from(pair[1]).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collapsed(count: u32) -> Collapsed {
        Collapsed {
            user_id: "alice".to_owned(),
            conversation_id: "conv-1".to_owned(),
            count,
            first_seq: 10,
            last_seq: 9 + i64::from(count),
            message_id: Uuid::from_u128(42),
            sender_id: "bob".to_owned(),
            title: "Bob".to_owned(),
            preview: "hello".to_owned(),
            offsets: vec![(0, 1)],
            mentioned: false,
        }
    }

    #[test]
    fn rfc4231_test_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_own_signature_and_rejects_changes() {
        let body = collapsed(1).title.into_bytes();
        let sig = sign(b"secret", &body);
        assert!(verify(b"secret", &body, &sig));
        assert!(verify(
            b"secret",
            &body,
            &sig.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!verify(b"secret", b"Bob!", &sig));
        assert!(!verify(b"other", &body, &sig));
        assert!(!verify(b"secret", &body, sig.trim_start_matches("sha256=")));
        assert!(!verify(b"secret", &body, &sig[..sig.len() - 2]));
        assert!(!verify(b"secret", &body, "sha256=zz"));
        assert!(!verify(b"secret", &body, "sha256=é1"));
        assert!(!verify(b"secret", &body, ""));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = notification_id("d1", "c1", 1, 5);
        assert_eq!(a, notification_id("d1", "c1", 1, 5));
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(a, notification_id("d2", "c1", 1, 5));
        assert_ne!(a, notification_id("d1", "c2", 1, 5));
        assert_ne!(a, notification_id("d1", "c1", 1, 6));
        assert_ne!(a, notification_id("d1", "c1", 2, 5));
        // The separator keeps fields from running into each other.
        assert_ne!(
            notification_id("d1", "1c", 1, 5),
            notification_id("d11", "c", 1, 5)
        );
    }

    #[test]
    fn build_single_and_collapsed() {
        let one = Notification::build(&collapsed(1), "dev", None, 7);
        assert_eq!(one.notification.body, "hello");
        assert_eq!(one.notification.title, "Bob");
        assert_eq!(one.id, notification_id("dev", "conv-1", 10, 10));

        let many = Notification::build(&collapsed(3), "dev", Some(4), 7);
        assert_eq!(many.notification.body, "hello (+2 more)");
        assert_eq!(many.notification.badge, Some(4));
        assert_eq!(many.data.count, 3);
        assert_eq!((many.data.first_seq, many.data.last_seq), (10, 12));
        assert_eq!(many.collapse_key, "conv-1");
        assert_eq!(many.sent_at, 7);
        assert_eq!(many.id, notification_id("dev", "conv-1", 10, 12));
    }

    #[test]
    fn json_field_names() {
        let n = Notification::build(&collapsed(2), "dev", Some(1), 1_700_000_000_000);
        let v: serde_json::Value = serde_json::from_slice(&n.to_body()).expect("valid json");
        assert_eq!(v["id"], n.id.to_string());
        assert_eq!(v["user_id"], "alice");
        assert_eq!(v["device_id"], "dev");
        assert_eq!(v["notification"]["title"], "Bob");
        assert_eq!(v["notification"]["body"], "hello (+1 more)");
        assert_eq!(v["notification"]["badge"], 1);
        assert_eq!(v["data"]["conversation_id"], "conv-1");
        assert_eq!(v["data"]["first_seq"], 10);
        assert_eq!(v["data"]["last_seq"], 11);
        assert_eq!(v["data"]["count"], 2);
        assert_eq!(v["data"]["message_id"], Uuid::from_u128(42).to_string());
        assert_eq!(v["data"]["sender_id"], "bob");
        assert_eq!(v["collapse_key"], "conv-1");
        assert_eq!(v["sent_at"], 1_700_000_000_000_i64);
        let back: Notification = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, n);
    }
}
