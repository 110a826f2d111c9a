//! Key layout. A string component is length-prefixed (u16, big-endian) so that no id,
//! whatever its bytes, can run into the next component; numbers are big-endian so that
//! keys sort by them.

/// `[len][a]`: the prefix of every key under `a`.
pub fn prefix(a: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + a.len());
    let len = u16::try_from(a.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&a.as_bytes()[..usize::from(len)]);
    k
}

/// `[len][a][b]`: e.g. (conversation, user) or (user, conversation).
pub fn pair(a: &str, b: &str) -> Vec<u8> {
    let mut k = prefix(a);
    k.extend_from_slice(b.as_bytes());
    k
}

/// `[len][conversation][seq]`.
pub fn message(conversation: &str, seq: i64) -> Vec<u8> {
    let mut k = prefix(conversation);
    k.extend_from_slice(&(seq.max(0) as u64).to_be_bytes());
    k
}

/// `[len][conversation][seq][len][user]`: the prefix of a user's reactions to one
/// message; the emoji follows ([`reaction`]).
pub fn reactions_of(conversation: &str, seq: i64, user: &str) -> Vec<u8> {
    let mut k = message(conversation, seq);
    k.extend_from_slice(&prefix(user));
    k
}

/// `[len][conversation][seq][len][user][emoji]`: `user` has reaction `emoji` set.
pub fn reaction(conversation: &str, seq: i64, user: &str, emoji: &str) -> Vec<u8> {
    let mut k = reactions_of(conversation, seq, user);
    k.extend_from_slice(emoji.as_bytes());
    k
}

/// The user and emoji of a [`reaction`] key, after its `[len][conversation][seq]`.
pub fn reaction_parts(rest: &[u8]) -> Option<(String, String)> {
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let user = String::from_utf8(rest.get(2..2 + len)?.to_vec()).ok()?;
    let emoji = String::from_utf8(rest.get(2 + len..)?.to_vec()).ok()?;
    Some((user, emoji))
}

/// The second component of a [`pair`] key.
pub fn second(key: &[u8]) -> Option<String> {
    let len = usize::from(u16::from_be_bytes([*key.first()?, *key.get(1)?]));
    String::from_utf8(key.get(2 + len..)?.to_vec()).ok()
}

/// The seq of a [`message`] key.
pub fn seq_of(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail) as i64)
}

/// `[len][conversation][message id]`: the dedup index.
pub fn message_id(conversation: &str, id: &uuid::Uuid) -> Vec<u8> {
    let mut k = prefix(conversation);
    k.extend_from_slice(id.as_bytes());
    k
}

pub fn partition(p: i32) -> [u8; 4] {
    p.to_be_bytes()
}

/// Offsets of a stream other than `events`: `[tag][partition]` (events keep the bare
/// 4-byte [`partition`] key).
pub fn stream_partition(tag: u8, p: i32) -> [u8; 5] {
    let b = p.to_be_bytes();
    [tag, b[0], b[1], b[2], b[3]]
}

/// `[len][user][len][conversation]`: the prefix of a user's inbox entries of one
/// conversation.
pub fn inbox_prefix(user: &str, conversation: &str) -> Vec<u8> {
    let mut k = prefix(user);
    k.extend_from_slice(&prefix(conversation));
    k
}

/// `[len][user][len][conversation][seq]`: one inbox entry.
pub fn inbox(user: &str, conversation: &str, seq: i64) -> Vec<u8> {
    let mut k = inbox_prefix(user, conversation);
    k.extend_from_slice(&(seq.max(0) as u64).to_be_bytes());
    k
}

/// The conversation and seq of an [`inbox`] key.
pub fn inbox_parts(key: &[u8]) -> Option<(String, i64)> {
    let user_len = usize::from(u16::from_be_bytes([*key.first()?, *key.get(1)?]));
    let rest = key.get(2 + user_len..)?;
    let conv_len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let conv = String::from_utf8(rest.get(2..2 + conv_len)?.to_vec()).ok()?;
    let seq: [u8; 8] = rest.get(2 + conv_len..)?.try_into().ok()?;
    Some((conv, u64::from_be_bytes(seq) as i64))
}

/// The conversation and seq of a [`message`] key.
pub fn message_parts(key: &[u8]) -> Option<(String, i64)> {
    let len = usize::from(u16::from_be_bytes([*key.first()?, *key.get(1)?]));
    let conversation = String::from_utf8(key.get(2..2 + len)?.to_vec()).ok()?;
    (key.len() == 2 + len + 8).then_some(())?;
    Some((conversation, seq_of(key)?))
}

/// `[partition][offset]`: the key of the messages a batch's records of `partition`
/// touched, from `offset` (its first record there) on; sorted by partition, then offset.
pub fn touched_from(partition: i32, offset: i64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&partition.to_be_bytes());
    k[4..].copy_from_slice(&(offset.max(0) as u64).to_be_bytes());
    k
}

/// `[expires at][len][conversation][seq]`: a disappearing message, sorted by the time
/// it goes.
pub fn expiring(at: i64, conversation: &str, seq: i64) -> Vec<u8> {
    let mut k = (at.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(&message(conversation, seq));
    k
}

/// The (time, conversation, seq) of an [`expiring`] key.
pub fn expiring_parts(key: &[u8]) -> Option<(i64, String, i64)> {
    let at: [u8; 8] = key.get(..8)?.try_into().ok()?;
    let (conversation, seq) = message_parts(key.get(8..)?)?;
    Some((u64::from_be_bytes(at) as i64, conversation, seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_cannot_run_together() {
        assert_ne!(pair("ab", "c"), pair("a", "bc"));
        assert_eq!(second(&pair("conv", "user-1")).as_deref(), Some("user-1"));
    }

    #[test]
    fn expiring_messages_sort_by_time_and_read_back() {
        assert!(expiring(9, "z", 1) < expiring(10, "a", 0));
        assert_eq!(
            expiring_parts(&expiring(1_767_312_000_000, "conv", 42)),
            Some((1_767_312_000_000, "conv".into(), 42))
        );
    }

    #[test]
    fn messages_sort_by_seq() {
        assert!(message("c", 9) < message("c", 10));
        assert!(message("c", 255) < message("c", 256));
        assert_eq!(seq_of(&message("c", 1234)), Some(1234));
        assert!(message("c", 5).starts_with(&prefix("c")));
    }

    #[test]
    fn inbox_keys_sort_by_seq_within_a_conversation() {
        assert!(inbox("u", "c", 9) < inbox("u", "c", 10));
        assert!(inbox("u", "c", 10).starts_with(&inbox_prefix("u", "c")));
        assert!(!inbox("u", "cd", 1).starts_with(&inbox_prefix("u", "c")));
        assert_eq!(
            inbox_parts(&inbox("u", "conv", 77)),
            Some(("conv".into(), 77))
        );
    }
}
