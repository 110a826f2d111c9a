//! Property: every record survives encode → decode unchanged, whatever its contents.

use parley_schemas::codec::general;
use parley_schemas::records::*;
use parley_schemas::{decode, decode_any, encode, samples, AnyRecord, Record};
use proptest::prelude::*;
use uuid::Uuid;

fn meta() -> impl Strategy<Value = Meta> {
    (any::<u128>(), any::<i64>(), ".{0,20}").prop_map(|(id, at, actor)| Meta {
        event_id: Uuid::from_u128(id),
        occurred_at: at,
        actor,
    })
}

fn names() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[a-z0-9._-]{1,12}", 0..8)
}

fn kind() -> impl Strategy<Value = ConversationKind> {
    prop_oneof![
        Just(ConversationKind::Direct),
        Just(ConversationKind::Group)
    ]
}

fn receipt_kind() -> impl Strategy<Value = ReceiptKind> {
    prop_oneof![Just(ReceiptKind::Delivered), Just(ReceiptKind::Read)]
}

fn attachment() -> impl Strategy<Value = parley_schemas::AttachmentRef> {
    (
        ".*",
        ".*",
        ".*",
        any::<i64>(),
        proptest::option::of(any::<i32>()),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(|(attachment_id, name, content_type, size, width, height)| {
            parley_schemas::AttachmentRef {
                attachment_id,
                name,
                content_type,
                size,
                width,
                height,
            }
        })
}

fn any_record() -> impl Strategy<Value = AnyRecord> {
    prop_oneof![
        (meta(), ".*", kind(), prop::option::of(".*"), names()).prop_map(
            |(meta, conversation_id, kind, title, members)| ConversationCreated {
                meta,
                conversation_id,
                kind,
                title,
                members
            }
            .into()
        ),
        (meta(), ".*", names()).prop_map(|(meta, conversation_id, members)| MembersAdded {
            meta,
            conversation_id,
            members
        }
        .into()),
        (meta(), ".*", ".*").prop_map(|(meta, conversation_id, member)| MemberRemoved {
            meta,
            conversation_id,
            member
        }
        .into()),
        (
            meta(),
            ".*",
            any::<u128>(),
            ".*",
            ".*",
            proptest::option::of(any::<i64>()),
            proptest::collection::vec(attachment(), 0..3)
        )
            .prop_map(
                |(meta, conversation_id, id, client_msg_id, body, reply_to, attachments)| {
                    MessagePosted {
                        meta,
                        conversation_id,
                        message_id: Uuid::from_u128(id),
                        client_msg_id,
                        body,
                        reply_to,
                        attachments,
                        sealed: None,
                    }
                    .into()
                }
            ),
        (meta(), ".*", receipt_kind(), any::<i64>()).prop_map(
            |(meta, conversation_id, kind, up_to_seq)| ReceiptRecorded {
                meta,
                conversation_id,
                kind,
                up_to_seq
            }
            .into()
        ),
        (meta(), ".*", any::<bool>(), any::<i64>()).prop_map(
            |(meta, conversation_id, active, expires_at)| TypingChanged {
                meta,
                conversation_id,
                active,
                expires_at
            }
            .into()
        ),
        (
            meta(),
            ".*",
            any::<i32>(),
            any::<i32>(),
            any::<i64>(),
            any::<bool>()
        )
            .prop_map(|(meta, user_id, gateway_slot, sessions, expires_at, ack)| {
                PresenceUpdated {
                    meta,
                    user_id,
                    gateway_slot,
                    sessions,
                    expires_at,
                    ack,
                }
                .into()
            }),
        (
            meta(),
            (any::<i32>(), ".*", names(), any::<bool>()),
            (
                ".*",
                any::<i32>(),
                any::<i64>(),
                prop::option::of(any::<i64>())
            ),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::option::of(any::<i64>())
        )
            .prop_map(
                |(
                    meta,
                    (gateway_slot, conversation_id, recipients, broadcast),
                    (source_topic, source_partition, source_offset, prev_seq),
                    event,
                    prev_change,
                )| DeliveryBatch {
                    meta,
                    gateway_slot,
                    conversation_id,
                    recipients,
                    broadcast,
                    source_topic,
                    source_partition,
                    source_offset,
                    prev_seq,
                    event,
                    prev_change,
                }
                .into()
            ),
        (meta(), ".*", ".*", any::<i64>(), any::<u128>(), ".*").prop_map(
            |(meta, user_id, conversation_id, seq, id, sender_id)| InboxEntry {
                meta,
                user_id,
                conversation_id,
                seq,
                message_id: Uuid::from_u128(id),
                sender_id
            }
            .into()
        ),
        (
            meta(),
            (".*", ".*", any::<i64>(), any::<u128>()),
            (".*", ".*", ".*", prop::option::of(any::<i32>()))
        )
            .prop_map(
                |(
                    meta,
                    (user_id, conversation_id, seq, id),
                    (sender_id, title, preview, badge),
                )| {
                    PushJob {
                        meta,
                        user_id,
                        conversation_id,
                        seq,
                        message_id: Uuid::from_u128(id),
                        sender_id,
                        title,
                        preview,
                        badge,
                        mentioned: false,
                    }
                    .into()
                }
            ),
        (
            meta(),
            (
                ".*",
                prop::option::of(any::<i32>()),
                prop::collection::vec(any::<u8>(), 0..32)
            ),
            (
                prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
                any::<i64>(),
                ".*"
            ),
            (".*", any::<i32>(), any::<i64>())
        )
            .prop_map(
                |(
                    meta,
                    (topic, partition, key),
                    (value, value_size, error),
                    (source_topic, source_partition, source_offset),
                )| {
                    DeadLetter {
                        meta,
                        topic,
                        partition,
                        key,
                        value,
                        value_size,
                        error,
                        source_topic,
                        source_partition,
                        source_offset,
                    }
                    .into()
                }
            ),
        (meta(), ".*", ".*", ".*", ".*").prop_map(
            |(meta, user_id, device_id, platform, target)| DeviceRegistered {
                meta,
                user_id,
                device_id,
                platform,
                target
            }
            .into()
        ),
        (meta(), ".*", ".*", any::<bool>()).prop_map(|(meta, user_id, conversation_id, muted)| {
            ConversationMuted {
                meta,
                user_id,
                conversation_id,
                muted,
            }
            .into()
        }),
        (meta(), ".*", ".*", any::<bool>()).prop_map(
            |(meta, user_id, conversation_id, opted_in)| {
                PushOptedIn {
                    meta,
                    user_id,
                    conversation_id,
                    opted_in,
                }
                .into()
            }
        ),
        (meta(), ".*", any::<bool>()).prop_map(|(meta, user_id, hidden)| {
            PresenceVisibility {
                meta,
                user_id,
                hidden,
            }
            .into()
        }),
        (meta(), any::<i32>(), any::<i64>(), any::<i64>()).prop_map(
            |(meta, gateway_slot, since, expires_at)| {
                SlotLease {
                    meta,
                    gateway_slot,
                    since,
                    expires_at,
                }
                .into()
            }
        ),
        (meta(), ".*", any::<i64>(), ".*").prop_map(|(meta, conversation_id, target_seq, body)| {
            MessageEdited {
                meta,
                conversation_id,
                target_seq,
                body,
                sealed: None,
            }
            .into()
        }),
        (meta(), ".*", any::<i64>()).prop_map(|(meta, conversation_id, target_seq)| {
            MessageDeleted {
                meta,
                conversation_id,
                target_seq,
            }
            .into()
        }),
        (meta(), ".*", any::<i64>(), ".*", any::<bool>()).prop_map(
            |(meta, conversation_id, target_seq, emoji, on)| ReactionSet {
                meta,
                conversation_id,
                target_seq,
                emoji,
                on,
            }
            .into()
        ),
    ]
}

fn sealed() -> impl Strategy<Value = Option<Sealed>> {
    proptest::option::of(
        (
            ".*",
            prop::collection::vec(any::<u8>(), 0..16),
            prop::collection::vec(any::<u8>(), 0..48),
            proptest::option::of(".*"),
            proptest::option::of(prop::collection::vec(any::<u8>(), 0..48)),
            names(),
        )
            .prop_map(
                |(key_id, nonce, ciphertext, transit_key, transit_wrapped, mentions)| Sealed {
                    key_id,
                    nonce,
                    ciphertext,
                    transit_key,
                    transit_wrapped,
                    mentions,
                },
            ),
    )
}

/// The records written and read directly ([`parley_schemas::binary`]), sealed or not.
fn direct_record() -> impl Strategy<Value = AnyRecord> {
    let posted = (any_record(), sealed()).prop_filter_map("a message", |(r, sealed)| {
        let AnyRecord::MessagePosted(mut m) = r else {
            return None;
        };
        if sealed.is_some() {
            m.body.clear();
        }
        m.sealed = sealed;
        Some(AnyRecord::MessagePosted(m))
    });
    let batch = (any_record(), direct_inner()).prop_filter_map("a batch", |(r, inner)| {
        let AnyRecord::DeliveryBatch(mut d) = r else {
            return None;
        };
        if let Some(inner) = inner {
            d.event = inner;
        }
        Some(AnyRecord::DeliveryBatch(d))
    });
    prop_oneof![posted, batch]
}

/// A message's encoding, as a batch carries it (or `None`: the batch's own bytes).
fn direct_inner() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of((meta(), ".*").prop_map(|(meta, body)| {
        let mut m = samples::message_posted();
        m.meta = meta;
        m.body = body;
        encode(&m).unwrap()
    }))
}

/// Damage to a record's bytes: a cut, or one byte of the body changed.
#[derive(Debug, Clone)]
enum Damage {
    Cut(prop::sample::Index),
    Set(prop::sample::Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Cut),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The direct path writes apache_avro's bytes and reads them back to the same record.
    #[test]
    fn the_direct_path_writes_and_reads_what_apache_avro_does(record in direct_record()) {
        let direct = record.encode().unwrap();
        let general = match &record {
            AnyRecord::MessagePosted(m) => general::encode(m).unwrap(),
            AnyRecord::DeliveryBatch(d) => general::encode(d).unwrap(),
            other => unreachable!("{other:?}"),
        };
        prop_assert_eq!(&direct, &general);
        prop_assert_eq!(decode_any(&direct).unwrap(), record.clone());
        prop_assert_eq!(general::decode_any(&direct).unwrap(), record);
    }

    /// On damaged bytes the direct reader never accepts what apache_avro refuses, and
    /// reads what both accept the same. It refuses only what is not a record's encoding:
    /// a body apache_avro reads leniently (a union or string cut off by the end as null).
    #[test]
    fn the_direct_reader_agrees_with_apache_avro_on_damaged_bytes(
        record in direct_record(),
        damage in damage(),
    ) {
        let mut bytes = record.encode().unwrap();
        match damage {
            Damage::Cut(i) => bytes.truncate(10 + i.index(bytes.len() - 10)),
            Damage::Set(i, b) => {
                let i = 10 + i.index(bytes.len() - 10);
                bytes[i] = b;
            }
        }
        match (decode_any(&bytes), general::decode_any(&bytes)) {
            (Ok(direct), Ok(general)) => prop_assert_eq!(direct, general),
            (Ok(direct), Err(e)) => prop_assert!(false, "direct read {direct:?}, apache_avro: {e}"),
            (Err(_), Ok(general)) => prop_assert_ne!(general.encode().unwrap(), bytes),
            (Err(_), Err(_)) => {}
        }
    }

    #[test]
    fn any_record_round_trips(record in any_record()) {
        let bytes = record.encode().unwrap();
        prop_assert_eq!(decode_any(&bytes).unwrap(), record);
    }

    #[test]
    fn typed_decode_round_trips(meta in meta(), body in ".*", cmid in ".*") {
        let m = MessagePosted {
            meta,
            conversation_id: "k".into(),
            message_id: parley_schemas::ids::message_id("s", &cmid),
            client_msg_id: cmid,
            body,
            reply_to: None,
            attachments: Vec::new(),
            sealed: None,
        };
        let bytes = encode(&m).unwrap();
        prop_assert_eq!(decode::<MessagePosted>(&bytes).unwrap(), m);
    }

    #[test]
    fn a_sealed_body_round_trips_and_opens_only_with_its_key(body in ".*") {
        use parley_schemas::sealed::ContentKey;
        let mut m = samples::message_posted();
        m.body = format!("@bob {body}");
        let (key, transit) = (ContentKey::generate(), ContentKey::generate());
        let key_id = parley_schemas::DataKey::id_of(&m.conversation_id, &m.message_id);
        m.seal(key_id.clone(), &key, Some(("t/0/1", &transit)));
        prop_assert_eq!(&m.body, "");
        let bytes = encode(&m).unwrap();
        let back = decode::<MessagePosted>(&bytes).unwrap();
        prop_assert_eq!(&back, &m);
        let sealed = back.sealed.as_ref().unwrap();
        let text = format!("@bob {body}");
        prop_assert_eq!(&sealed.mentions, &parley_schemas::mentions::mentions(&text));
        prop_assert_eq!(sealed.mentions.first().map(String::as_str), Some("bob"));
        prop_assert_eq!(sealed.open(&key, &m.conversation_id, &m.message_id), Some(text.clone()));
        let via = sealed.via_transit(&transit).unwrap();
        prop_assert_eq!(sealed.open(&via, &m.conversation_id, &m.message_id), Some(text));
        prop_assert!(sealed.open(&transit, &m.conversation_id, &m.message_id).is_none());
        prop_assert!(sealed.open(&key, "other", &m.message_id).is_none());
    }
}

#[test]
fn typed_decode_refuses_another_record() {
    let bytes = encode(&parley_schemas::samples::message_posted()).unwrap();
    let err = decode::<InboxEntry>(&bytes).unwrap_err();
    assert!(
        err.to_string().contains("expected a parley.InboxEntry"),
        "{err}"
    );
    assert_eq!(MessagePosted::NAME, "parley.MessagePosted");
}
