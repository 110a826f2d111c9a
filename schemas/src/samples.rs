//! One fixed record of each kind. The golden tests pin their bytes, the interop check
//! decodes them with a second Avro implementation, and examples print them.

use uuid::Uuid;

use crate::records::*;

fn meta(n: u128, actor: &str) -> Meta {
    Meta {
        event_id: Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 | n),
        occurred_at: 1_767_225_600_000 + n as i64, // 2026-01-01T00:00:00Z
        actor: actor.to_string(),
    }
}

pub const CONVERSATION: &str = "0b7e5c3a-4c1f-5d2e-9a8b-1c2d3e4f5a6b";

pub fn message_posted() -> MessagePosted {
    MessagePosted {
        meta: meta(4, "alice"),
        conversation_id: CONVERSATION.into(),
        message_id: crate::ids::message_id("alice", "c-1"),
        client_msg_id: "c-1".into(),
        body: "héllo, wörld ✓".into(),
        reply_to: Some(3),
        attachments: vec![crate::AttachmentRef {
            attachment_id: "7f1c2b9e-3d4a-4e5f-8a6b-9c0d1e2f3a4b".into(),
            name: "plan.png".into(),
            content_type: "image/png".into(),
            size: 48_213,
            width: Some(640),
            height: None,
        }],
        sealed: None,
    }
}

/// One record of every kind, in [`crate::registry::SOURCES`] order.
pub fn one_of_each() -> Vec<AnyRecord> {
    vec![
        ConversationCreated {
            meta: meta(1, "alice"),
            conversation_id: CONVERSATION.into(),
            kind: ConversationKind::Group,
            title: Some("Launch".into()),
            members: vec!["alice".into(), "bob".into(), "carol".into()],
        }
        .into(),
        MembersAdded {
            meta: meta(2, "alice"),
            conversation_id: CONVERSATION.into(),
            members: vec!["dave".into()],
        }
        .into(),
        MemberRemoved {
            meta: meta(3, "carol"),
            conversation_id: CONVERSATION.into(),
            member: "carol".into(),
        }
        .into(),
        message_posted().into(),
        ReceiptRecorded {
            meta: meta(5, "bob"),
            conversation_id: CONVERSATION.into(),
            kind: ReceiptKind::Read,
            up_to_seq: 42,
        }
        .into(),
        TypingChanged {
            meta: meta(6, "bob"),
            conversation_id: CONVERSATION.into(),
            active: true,
            expires_at: 1_767_225_605_000,
        }
        .into(),
        PresenceUpdated {
            meta: meta(7, "gateway:3"),
            user_id: "bob".into(),
            gateway_slot: 3,
            sessions: 2,
            expires_at: 1_767_225_630_000,
            ack: true,
        }
        .into(),
        PresenceAcked {
            meta: meta(11, "fanout:1"),
            gateway_slot: 3,
            user_id: "bob".into(),
            presence_partition: 7,
            presence_offset: 1234,
            partitions: vec![0, 5, 9],
            next_offsets: vec![10, 43, 0],
        }
        .into(),
        DeliveryBatch {
            meta: meta(8, "fanout:1"),
            gateway_slot: 3,
            conversation_id: CONVERSATION.into(),
            recipients: vec!["bob".into(), "dave".into()],
            broadcast: false,
            source_topic: "parley.events".into(),
            source_partition: 5,
            source_offset: 42,
            prev_seq: Some(40),
            event: crate::codec::encode(&message_posted()).unwrap_or_default(),
            prev_change: Some(37),
        }
        .into(),
        InboxEntry {
            meta: meta(9, "fanout:1"),
            user_id: "carol".into(),
            conversation_id: CONVERSATION.into(),
            seq: 42,
            message_id: crate::ids::message_id("alice", "c-1"),
            sender_id: "alice".into(),
        }
        .into(),
        PushJob {
            meta: meta(10, "fanout:1"),
            user_id: "carol".into(),
            conversation_id: CONVERSATION.into(),
            seq: 42,
            message_id: crate::ids::message_id("alice", "c-1"),
            sender_id: "alice".into(),
            title: "alice".into(),
            preview: "héllo, wörld ✓".into(),
            badge: None,
            mentioned: true,
        }
        .into(),
        DeadLetter {
            meta: meta(11, "fanout:1"),
            topic: "parley.deliveries".into(),
            partition: Some(3),
            key: CONVERSATION.as_bytes().to_vec(),
            value: Some(vec![0xC3, 0x01, 0x2a]),
            value_size: 3,
            error: "record rejected: message too large".into(),
            source_topic: "parley.events".into(),
            source_partition: 5,
            source_offset: 42,
        }
        .into(),
        DeviceRegistered {
            meta: meta(12, "carol"),
            user_id: "carol".into(),
            device_id: "phone".into(),
            platform: "webhook".into(),
            target: "https://relay.example/push".into(),
        }
        .into(),
        ConversationMuted {
            meta: meta(13, "carol"),
            user_id: "carol".into(),
            conversation_id: CONVERSATION.into(),
            muted: true,
        }
        .into(),
        PushOptedIn {
            meta: meta(14, "carol"),
            user_id: "carol".into(),
            conversation_id: CONVERSATION.into(),
            opted_in: true,
        }
        .into(),
        MemberRoleSet {
            meta: meta(15, "alice"),
            conversation_id: CONVERSATION.into(),
            member: "bob".into(),
            admin: true,
        }
        .into(),
        GroupSettingsChanged {
            meta: meta(16, "bob"),
            conversation_id: CONVERSATION.into(),
            full_history: true,
            disappear_after_ms: Some(86_400_000),
        }
        .into(),
        PresenceVisibility {
            meta: meta(17, "carol"),
            user_id: "carol".into(),
            hidden: true,
        }
        .into(),
        SlotLease {
            meta: meta(18, "gateway:3"),
            gateway_slot: 3,
            since: 1_767_225_000_000,
            expires_at: 1_767_225_630_000,
        }
        .into(),
        MessageEdited {
            meta: meta(19, "alice"),
            conversation_id: CONVERSATION.into(),
            target_seq: 4,
            body: "héllo, wörld ✓✓".into(),
            sealed: None,
        }
        .into(),
        MessageDeleted {
            meta: meta(20, "alice"),
            conversation_id: CONVERSATION.into(),
            target_seq: 4,
        }
        .into(),
        ReactionSet {
            meta: meta(21, "bob"),
            conversation_id: CONVERSATION.into(),
            target_seq: 4,
            emoji: "👍".into(),
            on: true,
        }
        .into(),
        crate::DataKey {
            meta: meta(22, "gateway:0"),
            key_id: crate::DataKey::id_of(CONVERSATION, &crate::ids::message_id("alice", "c-1")),
            owner: "alice".into(),
            conversation_id: CONVERSATION.into(),
            kek_version: 1,
            wrapped: (0u8..60).collect(),
        }
        .into(),
        crate::TransitKey {
            meta: meta(23, "gateway:0"),
            key_id: crate::TransitKey::id_of(0, 490_895, &uuid::Uuid::from_u128(0x2a)),
            expires_at: 1_767_312_000_000,
            kek_version: 1,
            wrapped: (60u8..120).collect(),
        }
        .into(),
        crate::UserErased {
            meta: meta(24, "alice"),
            user_id: "alice".into(),
        }
        .into(),
        crate::MessagesExpired {
            meta: meta(25, "projector"),
            conversation_id: CONVERSATION.into(),
            expired_until: 1_767_312_000_000,
        }
        .into(),
    ]
}
