//! The Avro single-object decoder every consumer of the log runs: whatever the bytes,
//! an error or a record, never a panic; a record that decodes encodes and decodes back
//! to itself.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(record) = parley_schemas::decode_any(data) {
            let again = record.encode().expect("a decoded record encodes");
            let back = parley_schemas::decode_any(&again).expect("and decodes back");
            assert_eq!(back, record);
        }
    });
}
