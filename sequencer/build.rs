//! RocksDB's C++ needs the C++ standard library at link time. librocksdb-sys says so when
//! it compiles RocksDB itself; when it links a library built beforehand
//! (`ROCKSDB_LIB_DIR`, which `scripts/rocksdb.sh` sets), nobody does, so this crate (the
//! one every RocksDB user here depends on) says it.

fn main() {
    println!("cargo:rerun-if-env-changed=ROCKSDB_LIB_DIR");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && std::env::var_os("ROCKSDB_LIB_DIR").is_some() {
        println!("cargo:rustc-link-lib=stdc++");
    }
}
