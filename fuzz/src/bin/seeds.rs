//! Writes the starting corpus: one encoded record of each kind (`seeds/avro`) and one
//! frame of each type (`seeds/client_frame`).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    std::fs::create_dir_all(dir.join("avro"))?;
    std::fs::create_dir_all(dir.join("client_frame"))?;
    for (i, record) in parley_schemas::samples::one_of_each().iter().enumerate() {
        let bytes = record.encode().expect("a sample encodes");
        std::fs::write(dir.join("avro").join(format!("{i:02}.bin")), bytes)?;
    }
    let frames = [
        r#"{"type":"send","client_msg_id":"c1","conversation_id":"g1","body":"hi"}"#,
        r#"{"type":"send","client_msg_id":"c2","conversation_id":"g1","body":"again","retry":true}"#,
        r#"{"type":"sync","cursors":{"g1":4,"g2":-1},"request_id":"s1"}"#,
        r#"{"type":"ack","conversation_id":"g1","seq":7}"#,
        r#"{"type":"read","conversation_id":"g1","seq":7}"#,
        r#"{"type":"typing","conversation_id":"g1","active":true}"#,
        r#"{"type":"history","conversation_id":"g1","after_seq":1,"before_seq":9,"limit":50,"request_id":"h"}"#,
        r#"{"type":"ping","nonce":"n"}"#,
        r#"{"type":"presence_query","user_ids":["a","b"],"request_id":"p"}"#,
    ];
    for (i, f) in frames.iter().enumerate() {
        std::fs::write(dir.join("client_frame").join(format!("{i:02}.json")), f)?;
    }
    Ok(())
}
