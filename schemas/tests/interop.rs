//! Interop: the bytes are standard Avro. A second implementation (Python's fastavro)
//! computes the same fingerprints, re-encodes Parley's golden records to the same bytes,
//! and writes records that Parley decodes. Needs `python3` with `fastavro`
//! (`.ci/run` installs it); a missing one fails the test, with the fix in the message.

use std::path::Path;
use std::process::Command;

use parley_schemas::{decode_any, registry};

#[test]
fn fastavro_agrees_with_parley() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("interop/fastavro_check.py"))
        .arg(root.join("avro"))
        .arg(root.join("tests/golden/records.hex"))
        .output()
        .expect("python3 must be on PATH for the interop test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'fastavro'"),
        "fastavro is missing: python3 -m pip install fastavro"
    );
    assert!(out.status.success(), "fastavro check failed: {stderr}");

    let mut fingerprints = 0;
    let mut records = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let j: serde_json::Value = serde_json::from_str(line).unwrap();
        let schema = j["schema"].as_str().unwrap();
        match j["kind"].as_str().unwrap() {
            "fingerprint" => {
                let info = registry::by_name(schema).unwrap();
                assert_eq!(
                    info.fingerprint_hex(),
                    j["fingerprint"].as_str().unwrap(),
                    "{schema}"
                );
                fingerprints += 1;
            }
            "record" => {
                assert_eq!(j["reencoded_identical"], true, "{schema}");
                let hex = j["fresh"].as_str().unwrap();
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect();
                let decoded = decode_any(&bytes).unwrap();
                assert_eq!(decoded.schema_name(), schema);
                assert_eq!(decoded.meta().actor, "written-by-fastavro");
                records += 1;
            }
            other => panic!("fastavro check reported {other}: {j}"),
        }
    }
    assert_eq!(fingerprints, registry::all().len());
    assert_eq!(records, registry::all().len());
}

/// Apache Avro's reference Python library (`avro`) reads every golden record, of every
/// version, from the schema files alone, resolved to the current versions; the change
/// records carry what Parley wrote. Needs `python3` with `avro` (`scripts/setup.sh`
/// installs it).
#[test]
fn the_reference_avro_library_reads_every_record_from_the_schema_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .arg(root.join("interop/apache_avro_check.py"))
        .arg(root.join("avro"))
        .arg(root.join("tests/golden/records.hex"))
        .arg(root.join("tests/golden/older.hex"))
        .output()
        .expect("python3 must be on PATH for the interop test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'avro'"),
        "Apache Avro's library is missing: python3 -m pip install avro"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "avro check failed: {stdout}{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), registry::all().len() + registry::older().len());
    let fields = |record: &str| -> serde_json::Value {
        lines
            .iter()
            .find(|j| j["record"] == record)
            .unwrap_or_else(|| panic!("{record} not read"))["fields"]
            .clone()
    };
    assert_eq!(fields("parley.MessageEdited")["body"], "héllo, wörld ✓✓");
    assert_eq!(fields("parley.MessageDeleted")["target_seq"], 4);
    let r = fields("parley.ReactionSet");
    assert_eq!(
        (r["emoji"].as_str(), r["on"].as_bool()),
        (Some("👍"), Some(true))
    );
    assert_eq!(fields("parley.MessagePosted")["reply_to"], 3);
    assert_eq!(
        fields("parley.MessagePosted@1")["reply_to"],
        serde_json::Value::Null
    );
    assert_eq!(
        fields("parley.MessagePosted")["attachments"][0]["name"],
        "plan.png"
    );
    assert_eq!(
        fields("parley.MessagePosted@2")["attachments"],
        serde_json::json!([])
    );
    assert_eq!(fields("parley.PushJob@1")["mentioned"], false);
}
