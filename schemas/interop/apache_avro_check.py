#!/usr/bin/env python3
"""Decodes Parley's golden records with Apache Avro's reference Python library (`avro`),
from the schema files alone: an outside consumer's view of the log.

usage: apache_avro_check.py SCHEMA_DIR GOLDEN_HEX_FILE...

Every `.avsc` under SCHEMA_DIR (the current versions, and the earlier ones in `older/`)
is parsed. A golden line names its record (`parley.X`, or `parley.X@N` for version N,
`older/X.N.avsc`): that file is the writer's schema, and the record is read resolved to
the current version of its name. (The writer is chosen by name because this library's
fingerprint differs from the header's: its canonical form keeps a logical type's wrapper,
`{"type":"string"}` for a uuid, where the specification, Java, fastavro and Parley reduce
it to `"string"` (AVRO-4004); `schemas/interop/fastavro_check.py` checks the
fingerprints.) Prints one JSON line per record: its name, its writer's file and the
decoded fields. Exit 1 on any failure.
"""
import io
import json
import pathlib
import sys

import avro.io
import avro.schema

MAGIC = b"\xc3\x01"


def main() -> int:
    schema_dir = pathlib.Path(sys.argv[1])
    def parse(path):
        return avro.schema.parse(path.read_text())
    ok = True
    for golden in sys.argv[2:]:
        for line in pathlib.Path(golden).read_text().splitlines():
            if not line.strip():
                continue
            label, hexbytes = line.split()
            data = bytes.fromhex(hexbytes)
            try:
                assert data[:2] == MAGIC, "bad magic"
                name, _, version = label.partition("@")
                short = name.split(".")[-1]
                file = f"older/{short}.{version}.avsc" if version else f"{short}.avsc"
                writer = parse(schema_dir / file)
                reader = parse(schema_dir / f"{short}.avsc")
                decoder = avro.io.BinaryDecoder(io.BytesIO(data[10:]))
                record = avro.io.DatumReader(writer, reader).read(decoder)
                print(json.dumps({"record": label, "schema": writer.fullname, "writer": file,
                                  "fields": record}, default=str, ensure_ascii=False))
            except Exception as e:  # noqa: BLE001 - every failure is reported
                ok = False
                print(json.dumps({"record": label, "error": repr(e)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
