//! Prints the golden files of `schemas/tests/golden/` as this build writes them:
//! `fingerprints.txt` and `records.hex` (one sample of each kind). After a deliberate
//! change to the contract (a new record, a new version of one), compare and copy:
//!
//!     cargo run -p parley-schemas --example golden -- fingerprints > schemas/tests/golden/fingerprints.txt
//!     cargo run -p parley-schemas --example golden -- records > schemas/tests/golden/records.hex
//!
//! An existing line that changes breaks every consumer of the log: add a version
//! (`schemas/avro/older/`) instead of editing a schema in place.

use parley_schemas::{registry, samples};

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("fingerprints") => {
            for info in registry::all() {
                println!("{} {}", info.name, info.fingerprint_hex());
            }
        }
        Some("records") => {
            for record in samples::one_of_each() {
                let bytes = record.encode().expect("a sample encodes");
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                println!("{} {hex}", record.schema_name());
            }
        }
        _ => {
            eprintln!("usage: golden fingerprints|records");
            std::process::exit(2);
        }
    }
}
