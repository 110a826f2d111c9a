//! Embeds the web client in the gateway's binary: every file of `web/dist` (built by
//! `npm ci && npm run build` in `gateway/web`; `scripts/run.sh`, `scripts/test.sh` and
//! `.ci/run` do it) becomes an entry of `ASSETS` in `$OUT_DIR/web_assets.rs`. Without a
//! build the table is empty and the gateway serves a page that says how to build it.
//!
//! (A build script rather than a derive crate: a new proc-macro dependency changes the
//! features of the host crates RocksDB's build script shares, which rebuilds RocksDB.)

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let dist = Path::new(&manifest).join("web").join("dist");
    println!("cargo:rerun-if-changed=web/dist");
    let mut files: Vec<String> = Vec::new();
    if dist.join("index.html").is_file() {
        for entry in std::fs::read_dir(&dist).expect("web/dist is readable") {
            let path = entry.expect("web/dist is readable").path();
            if let (true, Some(name)) = (path.is_file(), path.file_name()) {
                files.push(name.to_string_lossy().to_string());
            }
        }
    }
    files.sort();
    let mut code = String::from(
        "/// The web client's files: (name, bytes).\npub static ASSETS: &[(&str, &[u8])] = &[\n",
    );
    // Paths from the crate's directory as the compiler sees it, not as this script saw
    // it: a target directory shared by two checkouts must not read one from the other.
    for name in &files {
        let path = format!("/web/dist/{name}");
        code.push_str(&format!(
            "    ({name:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {path:?}))),\n"
        ));
    }
    code.push_str("];\n");
    std::fs::write(Path::new(&out).join("web_assets.rs"), code).expect("OUT_DIR is writable");
}
