#!/usr/bin/env python3
"""Exit 0 when a Kafka broker answers a Metadata request listing at least N brokers.

usage: kafka_ready.py HOST PORT [MIN_BROKERS]

Speaks the Kafka wire protocol directly (Metadata v4, request header v1), so the
broker scripts need nothing but the Python standard library.
"""
import socket
import struct
import sys


def metadata_brokers(host: str, port: int, timeout: float = 2.0) -> int:
    client_id = b"parley-ready"
    body = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id
    body += struct.pack(">ib", 0, 0)  # topics: empty array; allow_auto_topic_creation: false
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(s, 4))[0]
        resp = _read(s, size)
    correlation, _throttle, n_brokers = struct.unpack(">iii", resp[:12])
    if correlation != 7:
        raise RuntimeError("unexpected correlation id")
    return n_brokers


def _read(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    want = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    try:
        n = metadata_brokers(host, port)
    except Exception as e:  # noqa: BLE001 - any failure means "not ready yet"
        print(f"not ready: {e}", file=sys.stderr)
        return 1
    return 0 if n >= want else 1


if __name__ == "__main__":
    sys.exit(main())
