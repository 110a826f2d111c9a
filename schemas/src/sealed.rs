//! Sealed content, for erasure on a log kept forever (crypto-shredding).
//!
//! What a message says is encrypted before it is appended, with AES-256-GCM, under a
//! data key of its own ([`ContentKey`]). The data key is not in the record: it is in the
//! compacted `keys` topic, wrapped by the key-encryption key ([`Kek`], `PARLEY_KEK`) that
//! only Parley's roles hold. Erasing the message is writing a tombstone for its key: once
//! compaction has dropped the key, the record's ciphertext decrypts to nothing, in every
//! replay.
//!
//! Every ciphertext is bound to where it belongs by its associated data ([`body_aad`],
//! the key's id for a wrapped key), so a body moved to another message, or a key to
//! another id, does not open.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use sha2::{Digest, Sha256};

/// Bytes of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// The fewest bytes of key material `PARLEY_KEK` takes per version.
pub const KEK_MIN_LEN: usize = 32;

/// A 256-bit AES-GCM key: a message's data key, or a gateway's transit key.
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; KEY_LEN]);

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    /// A fresh random key (the operating system's generator).
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(OsRng);
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(key.as_slice());
        ContentKey(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(ContentKey)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// `plaintext` encrypted under this key: a fresh random nonce, and the ciphertext
    /// (with its 16-byte tag).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // AES-GCM fails to encrypt only past 64 GiB of plaintext.
            .unwrap_or_default();
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce.as_slice());
        (n, sealed)
    }

    /// What [`ContentKey::seal`] sealed; `None` if the nonce, the ciphertext or the
    /// associated data is not the one it was sealed with.
    pub fn open(&self, aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        self.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    /// [`ContentKey::seal`] as one byte string: the nonce, then the ciphertext.
    pub fn seal_joined(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (nonce, sealed) = self.seal(aad, plaintext);
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens what [`ContentKey::seal_joined`] sealed.
    pub fn open_joined(&self, aad: &[u8], joined: &[u8]) -> Option<Vec<u8>> {
        if joined.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = joined.split_at(NONCE_LEN);
        self.open(aad, nonce, sealed)
    }

    /// `other` wrapped under this key, bound to `key_id` (the id `other` is kept under).
    pub fn wrap(&self, key_id: &str, other: &ContentKey) -> Vec<u8> {
        self.seal_joined(key_id.as_bytes(), &other.0)
    }

    /// The key [`ContentKey::wrap`] wrapped under `key_id`.
    pub fn unwrap_key(&self, key_id: &str, wrapped: &[u8]) -> Option<ContentKey> {
        ContentKey::from_bytes(&self.open_joined(key_id.as_bytes(), wrapped)?)
    }
}

/// The associated data of a message's body: its conversation and message id. An edit's
/// body is bound the same way, to the message it edits and its own event id.
pub fn body_aad(conversation_id: &str, message_id: &uuid::Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(conversation_id.len() + 17);
    aad.extend_from_slice(conversation_id.as_bytes());
    aad.push(0);
    aad.extend_from_slice(message_id.as_bytes());
    aad
}

/// The key-encryption key: wraps every data key kept in the `keys` topic. It has
/// versions, so it can be rotated: new keys are wrapped by the newest, and every version
/// listed still unwraps what it wrapped.
#[derive(Clone)]
pub struct Kek {
    /// `(version, key)`, the newest last.
    versions: Vec<(u32, ContentKey)>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<u32> = self.versions.iter().map(|(v, _)| *v).collect();
        write!(f, "Kek {{ versions: {versions:?} }}")
    }
}

impl Kek {
    /// `PARLEY_KEK`: a secret of at least [`KEK_MIN_LEN`] bytes (version 1), or versions
    /// `v1:<secret>,v2:<secret>,…`, the newest wrapping. Each secret's bytes are
    /// stretched to a 256-bit key with SHA-256.
    pub fn parse(spec: &str) -> Result<Kek, String> {
        let spec = spec.trim();
        let parts: Vec<(u32, &str)> = match spec.starts_with('v') && spec.contains(':') {
            false => vec![(1, spec)],
            true => spec
                .split(',')
                .map(|part| {
                    let (v, secret) = part.trim().split_once(':').ok_or_else(|| {
                        format!("PARLEY_KEK: `{}` is not v<N>:<secret>", redact(part))
                    })?;
                    let version = v
                        .strip_prefix('v')
                        .and_then(|n| n.parse::<u32>().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("PARLEY_KEK: `{v}` is not a version such as v1"))?;
                    Ok((version, secret))
                })
                .collect::<Result<_, String>>()?,
        };
        let mut versions = Vec::new();
        for (version, secret) in parts {
            if secret.len() < KEK_MIN_LEN {
                return Err(format!(
                    "PARLEY_KEK: version {version} has {} bytes; it needs at least \
                     {KEK_MIN_LEN} (for example `openssl rand -hex 32`)",
                    secret.len()
                ));
            }
            if versions.iter().any(|(v, _)| *v == version) {
                return Err(format!("PARLEY_KEK: version {version} is given twice"));
            }
            let mut h = Sha256::new();
            h.update(b"parley-kek\0");
            h.update(secret.as_bytes());
            let key = ContentKey::from_bytes(&h.finalize()).ok_or("PARLEY_KEK: digest length")?;
            versions.push((version, key));
        }
        versions.sort_by_key(|(v, _)| *v);
        Ok(Kek { versions })
    }

    /// The version new keys are wrapped with.
    pub fn current_version(&self) -> u32 {
        self.versions.last().map_or(0, |(v, _)| *v)
    }

    /// `key` wrapped by the current version, bound to `key_id`.
    pub fn wrap(&self, key_id: &str, key: &ContentKey) -> (u32, Vec<u8>) {
        match self.versions.last() {
            Some((v, kek)) => (*v, kek.wrap(key_id, key)),
            None => (0, Vec::new()),
        }
    }

    /// The key wrapped under `key_id` by `version`; `None` if that version is not held or
    /// the wrapping does not open.
    pub fn unwrap(&self, key_id: &str, version: u32, wrapped: &[u8]) -> Option<ContentKey> {
        let (_, kek) = self.versions.iter().find(|(v, _)| *v == version)?;
        kek.unwrap_key(key_id, wrapped)
    }
}

fn redact(part: &str) -> String {
    part.chars().take(3).collect::<String>() + "…"
}

/// What a sealed message's attachment name is bound to: the message, and the file.
pub fn name_aad(conversation_id: &str, message_id: &uuid::Uuid, attachment_id: &str) -> Vec<u8> {
    let mut aad = body_aad(conversation_id, message_id);
    aad.extend_from_slice(b"/attachment/");
    aad.extend_from_slice(attachment_id.as_bytes());
    aad
}

/// The prefix of a sealed attachment name in a record: `sealed:` then the base64 of the
/// nonce and ciphertext.
pub const SEALED_NAME: &str = "sealed:";

/// `name` (of file `attachment_id` of message `message_id`) sealed under `key`, as the
/// record's `name` field carries it.
pub fn seal_name(
    key: &ContentKey,
    conversation_id: &str,
    message_id: &uuid::Uuid,
    attachment_id: &str,
    name: &str,
) -> String {
    use base64::Engine as _;
    let aad = name_aad(conversation_id, message_id, attachment_id);
    let joined = key.seal_joined(&aad, name.as_bytes());
    format!(
        "{SEALED_NAME}{}",
        base64::engine::general_purpose::STANDARD.encode(joined)
    )
}

/// A record's `name` field opened with `key`: the name, if it was sealed and opens;
/// `None` if it does not (another key, or altered bytes). A name not sealed is returned
/// as it is.
pub fn open_name(
    key: &ContentKey,
    conversation_id: &str,
    message_id: &uuid::Uuid,
    attachment_id: &str,
    field: &str,
) -> Option<String> {
    use base64::Engine as _;
    let Some(sealed) = field.strip_prefix(SEALED_NAME) else {
        return Some(field.to_string());
    };
    let joined = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .ok()?;
    let aad = name_aad(conversation_id, message_id, attachment_id);
    String::from_utf8(key.open_joined(&aad, &joined)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_sealed_opens_only_with_its_key_and_its_associated_data() {
        let key = ContentKey::generate();
        let aad = body_aad("c1", &uuid::Uuid::nil());
        let (nonce, sealed) = key.seal(&aad, "héllo".as_bytes());
        assert_ne!(sealed, "héllo".as_bytes());
        assert_eq!(key.open(&aad, &nonce, &sealed).unwrap(), "héllo".as_bytes());
        assert!(ContentKey::generate().open(&aad, &nonce, &sealed).is_none());
        let other = body_aad("c2", &uuid::Uuid::nil());
        assert!(key.open(&other, &nonce, &sealed).is_none());
        assert!(key.open(&aad, &nonce[..4], &sealed).is_none());
        let joined = key.seal_joined(b"x", b"y");
        assert_eq!(key.open_joined(b"x", &joined).unwrap(), b"y");
        assert!(key.open_joined(b"x", &joined[..5]).is_none());
    }

    #[test]
    fn a_kek_wraps_with_its_newest_version_and_unwraps_with_any() {
        let old = Kek::parse(&"a".repeat(32)).unwrap();
        let both = Kek::parse(&format!("v1:{},v2:{}", "a".repeat(32), "b".repeat(40))).unwrap();
        assert_eq!((old.current_version(), both.current_version()), (1, 2));
        let key = ContentKey::generate();
        let (v, wrapped) = old.wrap("k1", &key);
        assert_eq!(both.unwrap("k1", v, &wrapped), Some(key.clone()));
        assert_eq!(both.unwrap("k2", v, &wrapped), None, "bound to its id");
        let (v2, wrapped2) = both.wrap("k1", &key);
        assert_eq!(v2, 2);
        assert_eq!(old.unwrap("k1", v2, &wrapped2), None, "v2 is not held");
    }

    #[test]
    fn a_bad_kek_is_refused_with_a_reason() {
        for bad in [
            "short",
            "v1:short",
            "vx:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "v0:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            let e = Kek::parse(bad).unwrap_err();
            assert!(e.starts_with("PARLEY_KEK"), "{e}");
        }
        let twice = format!("v1:{0},v1:{0}", "a".repeat(32));
        assert!(Kek::parse(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn a_sealed_name_opens_only_for_its_message_and_file() {
        let key = ContentKey::generate();
        let id = uuid::Uuid::from_u128(7);
        let field = seal_name(&key, "c", &id, "f1", "report.pdf");
        assert!(field.starts_with(SEALED_NAME) && !field.contains("report"));
        assert_eq!(
            open_name(&key, "c", &id, "f1", &field).as_deref(),
            Some("report.pdf")
        );
        assert_eq!(open_name(&key, "c", &id, "f2", &field), None);
        assert_eq!(
            open_name(&ContentKey::generate(), "c", &id, "f1", &field),
            None
        );
        assert_eq!(
            open_name(&key, "c", &id, "f1", "plain.txt").as_deref(),
            Some("plain.txt")
        );
    }
}
