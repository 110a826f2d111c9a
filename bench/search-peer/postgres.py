#!/usr/bin/env python3
"""PostgreSQL full-text search (what Zulip searches with) on the messages of
`parley bench search-index --dump DIR`, measured the way `parley bench search` measures
Parley: the load's rate (messages/s into a table with its GIN index), the index's size,
then queries at fixed rates, each filtered to the asking user's conversations, newest
first, with a highlighted fragment (ts_headline), while messages are inserted at a fixed
rate beside them.

    parley bench search-index --messages 1000000 --dump /tmp/corpus
    python3 -m venv /tmp/pgvenv && /tmp/pgvenv/bin/pip install 'psycopg[binary]'
    /tmp/pgvenv/bin/python bench/search-peer/postgres.py --data /tmp/corpus

Runs its own server (Debian's postgresql package, `initdb` in a scratch directory as
the `postgres` user, on 127.0.0.1), and stops it at the end.
"""

import argparse
import concurrent.futures
import glob
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import psycopg


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        sys.exit(f"postgres.py: no {name} (apt-get install postgresql)")
    return found[-1]


def as_postgres(*cmd):
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, stdout=subprocess.DEVNULL)


def quantiles(xs):
    xs = sorted(xs)
    if not xs:
        return "n=0"
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))] * 1000
    return f"n={len(xs)} p50={q(0.5):.2f} ms p90={q(0.9):.2f} ms p99={q(0.99):.2f} ms max={xs[-1] * 1000:.2f} ms"


QUERY = """SELECT conversation, seq, ts_headline('simple', body, plainto_tsquery('simple', %s),
  'MaxFragments=1, MaxWords=25, MinWords=5, StartSel=<b>, StopSel=</b>')
FROM messages WHERE conversation = ANY(%s) AND tsv @@ plainto_tsquery('simple', %s)
ORDER BY ts DESC LIMIT 20"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the directory of `parley bench search-index --dump`")
    ap.add_argument("--rates", default="10,100", help="query rates per second, one phase each")
    ap.add_argument("--seconds", type=int, default=30, help="seconds per phase")
    ap.add_argument("--insert-rate", type=int, default=1000, help="messages inserted per second beside the queries")
    a = ap.parse_args()
    for f in ("messages.tsv", "members.tsv", "queries.tsv"):
        if not os.path.exists(os.path.join(a.data, f)):
            sys.exit(f"postgres.py: {a.data}/{f} missing: run parley bench search-index --dump {a.data}")

    scratch = tempfile.mkdtemp(prefix="pg-search-")
    shutil.chown(scratch, "postgres")
    os.chmod(a.data, 0o755)
    for f in os.listdir(a.data):
        os.chmod(os.path.join(a.data, f), 0o644)
    port = free_port()
    pgdata = os.path.join(scratch, "data")
    as_postgres(pg_bin("initdb"), "-D", pgdata, "--auth=trust", "-U", "postgres", "-E", "UTF8")
    as_postgres(pg_bin("pg_ctl"), "-D", pgdata, "-l", os.path.join(scratch, "log"), "-w", "-o",
                f"-p {port} -c listen_addresses=127.0.0.1 -k {scratch} -c shared_buffers=512MB", "start")
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    try:
        run(a, dsn)
    finally:
        as_postgres(pg_bin("pg_ctl"), "-D", pgdata, "-m", "fast", "stop")
        shutil.rmtree(scratch, ignore_errors=True)


def run(a, dsn):
    with open("/proc/cpuinfo") as f:
        cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    print("# PostgreSQL full-text search (the peer row of parley bench search)")
    print(f"machine: {os.cpu_count()} cores, {cpu}")
    with psycopg.connect(dsn, autocommit=True) as c:
        print("server:", c.execute("SHOW server_version").fetchone()[0])
        c.execute("CREATE TABLE members (conversation text, user_id text)")
        c.execute("CREATE TABLE messages (conversation text, seq bigint, sender text, ts bigint, body text, "
                  "tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', body)) STORED)")
        c.execute("CREATE INDEX messages_tsv ON messages USING gin (tsv)")
        c.execute("CREATE INDEX messages_conversation ON messages (conversation, ts)")
        with open(os.path.join(a.data, "members.tsv")) as f, c.cursor().copy("COPY members FROM STDIN") as cp:
            for line in f:
                cp.write(line)
        c.execute("CREATE INDEX ON members (user_id)")
        started = time.monotonic()
        n = 0
        with open(os.path.join(a.data, "messages.tsv")) as f, \
                c.cursor().copy("COPY messages (conversation, seq, sender, ts, body) FROM STDIN") as cp:
            for line in f:
                cp.write(line)
                n += 1
        took = time.monotonic() - started
        print(f"loaded {n} messages with the GIN index in place: {took:.1f} s ({n / took:.0f} messages/s)")
        c.execute("VACUUM ANALYZE messages")
        gin, table = c.execute("SELECT pg_relation_size('messages_tsv'), pg_table_size('messages')").fetchone()
        print(f"GIN index {gin / 2**20:.0f} MiB ({gin / 2**20 * 1e6 / n:.0f} MiB per million); "
              f"table with its tsvector {table / 2**20:.0f} MiB")
        convs = {}
        for conv, user in c.execute("SELECT conversation, user_id FROM members"):
            convs.setdefault(user, []).append(conv)
        seq = c.execute("SELECT max(seq) FROM messages").fetchone()[0] or 0
    with open(os.path.join(a.data, "queries.tsv")) as f:
        queries = [l.rstrip("\n").split("\t", 1) for l in f]
    bodies = []
    with open(os.path.join(a.data, "messages.tsv")) as f:
        for i, line in enumerate(f):
            if i >= 20000:
                break
            bodies.append(line.rstrip("\n").split("\t"))
    local = threading.local()

    def conn():
        if not hasattr(local, "c"):
            local.c = psycopg.connect(dsn, autocommit=True)
        return local.c

    def inserts(stop, latencies):
        nonlocal seq
        c = psycopg.connect(dsn, autocommit=True)
        tick, batch, every = time.monotonic(), 10, 10 / a.insert_rate
        while not stop.is_set():
            rows = []
            for _ in range(batch):
                conv, _, sender, _, body = random.choice(bodies)
                seq += 1
                rows.append((conv, seq, sender, int(time.time() * 1000), body))
            t = time.monotonic()
            with c.cursor() as cur:
                cur.executemany("INSERT INTO messages (conversation, seq, sender, ts, body) VALUES (%s, %s, %s, %s, %s)", rows)
            latencies.append(time.monotonic() - t)
            tick += every
            time.sleep(max(0.0, tick - time.monotonic()))
        c.close()

    def phase(rate):
        stop = threading.Event()
        inserted = []
        t = threading.Thread(target=inserts, args=(stop, inserted))
        t.start()
        latencies, empty, futures = [], [0], []
        rng = random.Random(rate)

        def one(user, q, asked):
            rows = conn().execute(QUERY, (q, convs.get(user, []), q)).fetchall()
            latencies.append(time.monotonic() - asked)
            if not rows:
                empty[0] += 1

        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            start = time.monotonic()
            k = 0
            while time.monotonic() - start < a.seconds:
                user, q = queries[rng.randrange(len(queries))]
                futures.append(pool.submit(one, user, q, time.monotonic()))
                k += 1
                time.sleep(max(0.0, start + k / rate - time.monotonic()))
            for fu in futures:
                fu.result()
        stop.set()
        t.join()
        print(f"queries at {rate}/s: {quantiles(latencies)} ({len(futures)} asked, {empty[0]} found nothing)")
        print(f"  inserts beside them at {a.insert_rate}/s (batches of 10): {quantiles(inserted)}")

    for rate in [int(r) for r in a.rates.split(",")]:
        phase(rate)


if __name__ == "__main__":
    main()
