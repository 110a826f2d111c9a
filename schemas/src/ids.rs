//! Identifiers that are derived rather than trusted.

use uuid::Uuid;

/// The namespace of Parley's name-based (v5) UUIDs.
pub const PARLEY_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_2c1a_9d3b_4b8e_a8c2_3f5d_7e9a_0b41);

/// `UUIDv5(sender, client_msg_id)`: a client's retry of the same send gets the same id.
///
/// The sender's own namespace is `UUIDv5(PARLEY_NAMESPACE, sender)`; the message id is
/// `UUIDv5(that, client_msg_id)`, so no choice of ids by two senders can collide.
pub fn message_id(sender: &str, client_msg_id: &str) -> Uuid {
    let sender_ns = Uuid::new_v5(&PARLEY_NAMESPACE, sender.as_bytes());
    Uuid::new_v5(&sender_ns, client_msg_id.as_bytes())
}

/// The id of the direct conversation between two users: the same for either order.
pub fn direct_conversation_id(a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    // A NUL cannot appear in a user id, so the pair is unambiguous.
    let name = format!("direct\0{lo}\0{hi}");
    Uuid::new_v5(&PARLEY_NAMESPACE, name.as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_stable_and_per_sender() {
        assert_eq!(message_id("u1", "c1"), message_id("u1", "c1"));
        assert_ne!(message_id("u1", "c1"), message_id("u2", "c1"));
        assert_ne!(message_id("u1", "c1"), message_id("u1", "c2"));
        assert_eq!(message_id("u1", "c1").get_version_num(), 5);
    }

    #[test]
    fn direct_ids_ignore_order() {
        assert_eq!(
            direct_conversation_id("a", "b"),
            direct_conversation_id("b", "a")
        );
        assert_ne!(
            direct_conversation_id("a", "b"),
            direct_conversation_id("a", "c")
        );
    }
}
