#!/usr/bin/env python3
"""Cross-checks Parley's Avro contract with a second implementation (fastavro).

usage: fastavro_check.py SCHEMA_DIR GOLDEN_HEX_FILE

For every schema: prints its fingerprint as fastavro computes it (Parsing Canonical Form,
CRC-64-AVRO, little-endian hex). For every golden record (lines "name hex"): decodes
Parley's single-object bytes with fastavro and re-encodes them, which must give the same
bytes; then encodes a fresh record of its own for Parley to decode. Output is JSON lines;
the Rust test `schemas/tests/interop.rs` reads them. Exit 1 on any mismatch.
"""
import io
import json
import pathlib
import sys

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

MAGIC = b"\xc3\x01"


def main() -> int:
    schema_dir, golden = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    by_fp = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        raw = json.loads(path.read_text())
        fp = fingerprint(to_parsing_canonical_form(raw), "CRC-64-AVRO")
        name = f"{raw['namespace']}.{raw['name']}"
        by_fp[fp] = (name, parse_schema(raw))
        print(json.dumps({"kind": "fingerprint", "schema": name, "fingerprint": fp}))

    ok = True
    for line in golden.read_text().splitlines():
        if not line.strip():
            continue
        name, hexbytes = line.split()
        data = bytes.fromhex(hexbytes)
        if data[:2] != MAGIC:
            print(json.dumps({"kind": "error", "schema": name, "error": "bad magic"}))
            ok = False
            continue
        fp = data[2:10].hex()
        if fp not in by_fp:
            print(json.dumps({"kind": "error", "schema": name, "error": f"unknown fingerprint {fp}"}))
            ok = False
            continue
        found, schema = by_fp[fp]
        record = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
        out = io.BytesIO()
        fastavro.schemaless_writer(out, schema, record)
        same = MAGIC + data[2:10] + out.getvalue() == data
        ok &= same and found == name
        # A fresh record, written by fastavro: Parley must decode it.
        if "actor" in record:
            record["actor"] = "written-by-fastavro"
        fresh = io.BytesIO()
        fastavro.schemaless_writer(fresh, schema, record)
        print(json.dumps({
            "kind": "record",
            "schema": found,
            "reencoded_identical": same,
            "fresh": (MAGIC + data[2:10] + fresh.getvalue()).hex(),
        }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
