#!/usr/bin/env bash
# What the broker is asked for each message, and by whom: the requests the single broker
# of `scripts/kafka.sh start` completes over a window, by client and API, per record
# appended, with the broker's CPU per request.
#
#   bench/one-to-one/kafka-requests.sh [SECONDS] [RATE]   # default 5 s
#
# With RATE (the load's messages/s) the counts are also given per message.
#
# Run it while a load runs against that broker: `../shared/peer-bench/compare.sh --only
# parley` against a `parley dev` on it, or a `kafka-floor.sh` run (4 s in). Not inside
# `cpu-compare.sh`'s measured window: it would add its own cost to that CPU. It takes:
# 1. the broker's CPU over SECONDS (from /proc/PID/stat), with nothing changed;
# 2. then every request over the next SECONDS: it turns the broker's request logger
#    (kafka.request.logger) to DEBUG with Kafka's own ConfigCommand, counts the
#    "Completed request" lines the broker writes to its log, and turns it back to WARN.
# Logging a line per request costs the broker CPU, so the CPU is taken first, and the
# requests while it logs; a broker that logs answers slower, and its clients' requests
# can then carry a little more each. Needs python3 and the broker's jars (kafka.sh fetch).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SECONDS_=${1:-5} RATE=${2:-0}
[[ $SECONDS_ =~ ^[1-9][0-9]*$ && $RATE =~ ^[0-9]+$ ]] || { sed -n 2,19p "$0" >&2; exit 2; }
DIR="$(dirname "$("$ROOT/scripts/kafka.sh" data-dir)")"
LOG="$DIR/logs/server.log"
LIBS="$("$ROOT/scripts/kafka.sh" libs)"
BROKER=$(pgrep -f "kafka.Kafka $DIR/server.properties" | head -1) \
  || { echo "kafka-requests.sh: the broker of scripts/kafka.sh start is not running" >&2; exit 1; }
[[ -f $LOG ]] || { echo "kafka-requests.sh: no broker log at $LOG" >&2; exit 1; }
PORT="${PARLEY_KAFKA_PORT:-9092}"
logger() {
  java -cp "$LIBS/*" kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$PORT" \
    --entity-type broker-loggers --entity-name 1 --alter --add-config "kafka.request.logger=$1" \
    >/dev/null 2>&1 || { echo "kafka-requests.sh: could not set the broker's request logger to $1" >&2; exit 1; }
}
trap 'logger WARN' EXIT
TCK=$(getconf CLK_TCK)
ticks() { awk '{print $14+$15}' "/proc/$BROKER/stat"; }
a=$(ticks); sleep "$SECONDS_"; b=$(ticks)
CPU=$(echo "scale=1; 100 * ($b - $a) / $TCK / $SECONDS_" | bc)
logger DEBUG
from=$(stat -c %s "$LOG"); sleep "$SECONDS_"; to=$(stat -c %s "$LOG")
logger WARN
trap - EXIT
tail -c +"$((from + 1))" "$LOG" | head -c "$((to - from))" | python3 -c '
import json, sys, collections
seconds, cpu, rate = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
requests = collections.Counter()
batches = collections.Counter()
for line in sys.stdin:
    at = line.find("Completed request:")
    if at < 0:
        continue
    try:
        r = json.loads(line[at + len("Completed request:"):line.rindex("}") + 1])
    except ValueError:
        continue
    head = r["requestHeader"]
    requests[(head["clientId"], head["requestApiKeyName"])] += 1
    if head["requestApiKeyName"] == "PRODUCE":
        for topic in r["request"].get("topicData", []):
            name = topic["name"].rsplit(".", 1)[-1]
            for _ in topic.get("partitionData", []):
                batches[name] += 1
produced = sum(batches.values())
total = sum(requests.values())
if not total:
    sys.exit("kafka-requests.sh: the broker logged no request in the window: is a load running?")
per = lambda n: f"{n / produced:.2f}" if produced else "-"
msg = lambda n: f" {n / seconds / rate:.2f} |" if rate else ""
print(f"the broker over {seconds:g} s: {total / seconds:,.0f} requests/s; its CPU (the {seconds:g} s before) {cpu:g}% of a core")
print()
print("| client | API | requests/s | per batch appended |" + (" per message |" if rate else ""))
print("|---|---|---:|---:|" + ("---:|" if rate else ""))
for (client, api), n in requests.most_common():
    print(f"| {client} | {api} | {n / seconds:,.0f} | {per(n)} |{msg(n)}")
print(f"| all | | {total / seconds:,.0f} | {per(total)} |{msg(total)}")
print()
print("batches appended (one partition of a produce request each), by topic: "
      + ", ".join(f"{t} {n / seconds:,.0f}/s" for t, n in batches.most_common()))
print(f"the broker\u2019s CPU per request: {cpu * 10 / (total / seconds) * 1000:.0f} \u00b5s"
      + (f"; per message: {cpu * 10 / rate:.3f} ms" if rate else ""))
' "$SECONDS_" "$CPU" "$RATE"
