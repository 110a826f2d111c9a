//! Golden bytes: the encoding of one fixed record of each kind, and every schema's
//! fingerprint, are pinned. A change here breaks every consumer of the log.

use parley_schemas::{decode_any, registry, samples};

const RECORDS: &str = include_str!("golden/records.hex");
const FINGERPRINTS: &str = include_str!("golden/fingerprints.txt");
/// Records written with earlier versions of a schema (`schemas/avro/older/`), as lines
/// `name@version hex`.
const OLDER: &str = include_str!("golden/older.hex");

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn fingerprints_are_pinned() {
    let pinned: Vec<(&str, &str)> = FINGERPRINTS
        .lines()
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert_eq!(
        pinned.len(),
        registry::all().len(),
        "one pinned fingerprint per schema"
    );
    for (name, fp) in pinned {
        let info = registry::by_name(name).unwrap_or_else(|| panic!("{name} not in registry"));
        assert_eq!(info.fingerprint_hex(), fp, "fingerprint of {name}");
    }
}

#[test]
fn one_record_of_each_kind_encodes_to_the_pinned_bytes() {
    let pinned: Vec<(&str, &str)> = RECORDS.lines().filter_map(|l| l.split_once(' ')).collect();
    let samples = samples::one_of_each();
    assert_eq!(pinned.len(), samples.len());
    assert_eq!(
        samples.len(),
        registry::all().len(),
        "a sample of every kind"
    );
    for (record, (name, bytes)) in samples.iter().zip(pinned) {
        assert_eq!(record.schema_name(), name);
        let encoded = record.encode().unwrap();
        assert_eq!(hex(&encoded), bytes, "bytes of {name}");
        assert_eq!(&decode_any(&encoded).unwrap(), record);
    }
}

#[test]
fn the_header_is_magic_then_the_fingerprint() {
    let encoded = samples::one_of_each()[3].encode().unwrap();
    assert_eq!(&encoded[..2], &[0xC3, 0x01]);
    let info = registry::by_name("parley.MessagePosted").unwrap();
    assert_eq!(&encoded[2..10], &info.fingerprint);
}

#[test]
fn records_of_an_earlier_version_read_as_the_current_one() {
    let lines: Vec<(&str, &str)> = OLDER.lines().filter_map(|l| l.split_once(' ')).collect();
    assert_eq!(
        lines.len(),
        registry::older().len(),
        "one record per older version"
    );
    for (name, hex) in lines {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let record = decode_any(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        match (name, record) {
            ("parley.MessagePosted@1", parley_schemas::AnyRecord::MessagePosted(m)) => {
                // Version 1 had no reply_to: it reads as the sample without one.
                let mut expected = samples::message_posted();
                expected.reply_to = None;
                expected.attachments = Vec::new();
                assert_eq!(m, expected);
            }
            ("parley.MessagePosted@2", parley_schemas::AnyRecord::MessagePosted(m)) => {
                // Version 2 had no attachments: it reads as the sample without any.
                let mut expected = samples::message_posted();
                expected.attachments = Vec::new();
                assert_eq!(m, expected);
            }
            ("parley.MessagePosted@3", parley_schemas::AnyRecord::MessagePosted(m)) => {
                // Version 3's body was a string: it reads as the same plain text.
                assert_eq!(m, samples::message_posted());
            }
            ("parley.MessageEdited@1", parley_schemas::AnyRecord::MessageEdited(e)) => {
                // Version 1's body was a string: it reads as the same plain text.
                let sample = samples::one_of_each()
                    .into_iter()
                    .find(|r| r.schema_name() == "parley.MessageEdited");
                assert_eq!(Some(parley_schemas::AnyRecord::MessageEdited(e)), sample);
            }
            ("parley.PushJob@1", parley_schemas::AnyRecord::PushJob(j)) => {
                // Version 1 had no mentioned: it reads as false.
                let Some(parley_schemas::AnyRecord::PushJob(mut expected)) = samples::one_of_each()
                    .into_iter()
                    .find(|r| r.schema_name() == "parley.PushJob")
                else {
                    panic!("no PushJob sample")
                };
                expected.mentioned = false;
                assert_eq!(j, expected);
            }
            ("parley.DeliveryBatch@1", parley_schemas::AnyRecord::DeliveryBatch(b)) => {
                // Version 1 had no prev_change: it reads as unknown.
                let Some(parley_schemas::AnyRecord::DeliveryBatch(mut expected)) =
                    samples::one_of_each()
                        .into_iter()
                        .find(|r| r.schema_name() == "parley.DeliveryBatch")
                else {
                    panic!("no DeliveryBatch sample")
                };
                expected.prev_change = None;
                // It carries the MessagePosted of its day (version 2, without attachments).
                let Ok(parley_schemas::AnyRecord::MessagePosted(carried)) = decode_any(&b.event)
                else {
                    panic!("the batch's event is not a MessagePosted")
                };
                let mut posted = samples::message_posted();
                posted.attachments = Vec::new();
                assert_eq!(carried, posted);
                expected.event = b.event.clone();
                assert_eq!(b, expected);
            }
            (
                "parley.GroupSettingsChanged@1",
                parley_schemas::AnyRecord::GroupSettingsChanged(g),
            ) => {
                // Version 1 had no disappearing messages: it reads as off.
                let Some(parley_schemas::AnyRecord::GroupSettingsChanged(mut expected)) =
                    samples::one_of_each()
                        .into_iter()
                        .find(|r| r.schema_name() == "parley.GroupSettingsChanged")
                else {
                    panic!("no GroupSettingsChanged sample")
                };
                expected.disappear_after_ms = None;
                assert_eq!(g, expected);
            }
            (name, other) => panic!("{name} read as {}", other.schema_name()),
        }
    }
}
