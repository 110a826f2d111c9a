#!/usr/bin/env bash
# Runs a real Apache Kafka broker (KRaft mode) for Parley, fetched from Maven Central.
#
#   scripts/kafka.sh start            single broker+controller on 127.0.0.1:${PARLEY_KAFKA_PORT:-9092}
#   scripts/kafka.sh stop             stop it (clean shutdown, then SIGKILL after a grace period)
#   scripts/kafka.sh status           is it running, where is its log
#   scripts/kafka.sh data-dir         print where the single broker keeps its log segments
#   scripts/kafka.sh libs             print where the broker's jars are (for Kafka's own tools)
#   scripts/kafka.sh crowded          warn (stderr) when it holds over 1,000 partitions of earlier runs
#   scripts/kafka.sh reset            stop it and delete its state (every topic): the next
#                                     start formats a new one
#   scripts/kafka.sh fetch            only download the broker jars into the cache
#   scripts/kafka.sh cluster start    three brokers (RF 3, min ISR 2) on ports 9192/9292/9392
#   scripts/kafka.sh cluster stop|status
#   scripts/kafka.sh cluster kill N   SIGKILL broker N (1..3) of the cluster, for fault tests
#   scripts/kafka.sh cluster restart N  start broker N again
#   scripts/kafka.sh cluster pause N  SIGSTOP broker N (a hung broker: its sockets stay open)
#   scripts/kafka.sh cluster resume N SIGCONT broker N after a pause
#   scripts/kafka.sh cluster pid N    print broker N's pid (exit 3 if it is not running)
#
# Environment:
#   PARLEY_KAFKA_VERSION   broker version (default 4.1.1)
#   PARLEY_KAFKA_PORT      client port of the single broker (default 9092; controller = port+1)
#   PARLEY_KAFKA_CLUSTER_PORT  first client port of the cluster (default 9192; broker N uses
#                          base+100*(N-1), its controller that port+1)
#   PARLEY_CACHE           cache for jars and broker state (default ~/.cache/parley)
#   PARLEY_KAFKA_HEAP      JVM heap (default 512m)
#   PARLEY_KAFKA_JVM_OPTS  garbage collector and other JVM flags (default -XX:+UseParallelGC:
#                          on a small heap its young collections pause the broker for less
#                          than G1's, and each pause stalls every append and fetch; see
#                          docs/benchmarks.md, "Parley against Centrifugo, the morning of 2026-12-05")
#   PARLEY_KAFKA_PROPS     extra broker properties, comma-separated (key=value,key=value),
#                          written after the defaults, so they override them. E.g.
#                          num.network.threads=1,num.io.threads=2 costs less CPU on two
#                          shared cores but lengthened the tail under load; see
#                          docs/benchmarks.md, "Parley against Centrifugo, … 2026-12-07, late night"
#
# start and stop are idempotent. State (data, logs, pid) lives outside the repository.
set -euo pipefail

VERSION="${PARLEY_KAFKA_VERSION:-4.1.1}"
LOG4J_VERSION="2.24.3"
CACHE="${PARLEY_CACHE:-$HOME/.cache/parley}"
LIBS="$CACHE/kafka-$VERSION/libs"
HEAP="${PARLEY_KAFKA_HEAP:-512m}"
JVM_OPTS="${PARLEY_KAFKA_JVM_OPTS:--XX:+UseParallelGC}"
PROPS="${PARLEY_KAFKA_PROPS:-}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
READY_TIMEOUT="${PARLEY_KAFKA_READY_TIMEOUT:-90}"

die() { echo "kafka.sh: $*" >&2; exit 1; }
say() { echo "kafka.sh: $*" >&2; }

fetch() {
  if [ -f "$LIBS/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  command -v java >/dev/null || die "java not found: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
  say "fetching Kafka $VERSION from Maven Central into $LIBS"
  local work; work="$(mktemp -d)"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.parley</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-api</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$LIBS.tmp"
  mkdir -p "$LIBS.tmp"
  if ! (cd "$work" && mvn -B -q dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$LIBS.tmp" >"$work/mvn.log" 2>&1); then
    cat "$work/mvn.log" >&2
    die "could not fetch Kafka $VERSION from Maven Central (see above)"
  fi
  rm -rf "$LIBS"
  mv "$LIBS.tmp" "$LIBS"
  touch "$LIBS/.complete"
  rm -rf "$work"
  say "fetched $(ls "$LIBS" | wc -l) jars"
}

# write_config DIR NODE_ID PORT CONTROLLER_PORT VOTERS RF MIN_ISR
write_config() {
  local dir="$1" node="$2" port="$3" cport="$4" voters="$5" rf="$6" isr="$7"
  mkdir -p "$dir/data" "$dir/logs"
  local quorum
  if [ -n "$voters" ]; then
    quorum="controller.quorum.voters=$voters"
  else
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$cport"
  fi
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$node
$quorum
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.segment.bytes=67108864
log.retention.check.interval.ms=60000
$(tr ',' '\n' <<<"$PROPS")
EOF
  cat >"$dir/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = $dir/logs/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRefs = file
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

is_running() { # DIR
  local pidf="$1/broker.pid"
  [ -f "$pidf" ] && kill -0 "$(cat "$pidf")" 2>/dev/null
}

launch() { # DIR CLUSTER_ID [standalone]
  local dir="$1" cid="$2" standalone="${3:-}"
  if [ ! -f "$dir/data/meta.properties" ]; then
    local extra=()
    [ -n "$standalone" ] && extra=(--standalone)
    java -cp "$LIBS/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
      kafka.tools.StorageTool format -t "$cid" -c "$dir/server.properties" "${extra[@]}" \
      --ignore-formatted >"$dir/logs/format.log" 2>&1 \
      || { cat "$dir/logs/format.log" >&2; die "formatting storage in $dir failed"; }
  fi
  # setsid: the broker must not die with the shell (or the test harness) that started it.
  # shellcheck disable=SC2086 # JVM_OPTS is a list of flags
  setsid nohup java "-Xms$HEAP" "-Xmx$HEAP" $JVM_OPTS -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir/logs" \
    -cp "$LIBS/*" kafka.Kafka "$dir/server.properties" \
    >"$dir/logs/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/broker.pid"
}

wait_ready() { # DIR PORT [MIN_BROKERS]
  local dir="$1" port="$2" want="${3:-1}" deadline=$((SECONDS + READY_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    if ! is_running "$dir"; then
      tail -n 40 "$dir/logs/stdout.log" "$dir/logs/server.log" >&2 2>/dev/null || true
      die "broker in $dir exited during start-up (log: $dir/logs/server.log)"
    fi
    if python3 "$SCRIPT_DIR/kafka_ready.py" 127.0.0.1 "$port" "$want" 2>/dev/null; then
      return 0
    fi
    sleep 0.5
  done
  die "broker on port $port did not answer metadata requests within ${READY_TIMEOUT}s (log: $dir/logs/server.log)"
}

stop_dir() { # DIR
  local dir="$1"
  if ! is_running "$dir"; then rm -f "$dir/broker.pid"; return 0; fi
  local pid; pid="$(cat "$dir/broker.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "broker $pid did not stop in 30s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/broker.pid"
}

single_dir() { echo "$CACHE/run/kafka-${PARLEY_KAFKA_PORT:-9092}"; }

single() {
  local port="${PARLEY_KAFKA_PORT:-9092}"
  local cport=$((port + 1))
  local dir; dir="$(single_dir)"
  case "${1:-}" in
    start)
      if is_running "$dir"; then
        say "already running on 127.0.0.1:$port (pid $(cat "$dir/broker.pid"), log $dir/logs/server.log)"
        return 0
      fi
      fetch
      write_config "$dir" 1 "$port" "$cport" "" 1 1
      launch "$dir" "${PARLEY_KAFKA_CLUSTER_ID:-cGFybGV5LWRldi0wMDAwMQ}" standalone
      wait_ready "$dir" "$port"
      say "broker ready on 127.0.0.1:$port (pid $(cat "$dir/broker.pid"))"
      say "log: $dir/logs/server.log"
      ;;
    stop)
      stop_dir "$dir"
      say "stopped (127.0.0.1:$port)"
      ;;
    status)
      if is_running "$dir"; then
        echo "running on 127.0.0.1:$port (pid $(cat "$dir/broker.pid")); log: $dir/logs/server.log"
      else
        echo "not running (127.0.0.1:$port)"; return 3
      fi
      ;;
    reset)
      stop_dir "$dir"; rm -rf "$dir"; say "removed $dir"
      ;;
    *) usage ;;
  esac
}

cluster() {
  local base="${PARLEY_KAFKA_CLUSTER_PORT:-9192}"
  local voters="" n
  for n in 1 2 3; do
    local p=$((base + 100 * (n - 1)))
    voters+="${voters:+,}$n@127.0.0.1:$((p + 1))"
  done
  local root="$CACHE/run/cluster-$base"
  case "${1:-}" in
    start)
      fetch
      for n in 1 2 3; do
        local p=$((base + 100 * (n - 1))) dir="$root/broker-$n"
        is_running "$dir" && continue
        write_config "$dir" "$n" "$p" "$((p + 1))" "$voters" 3 2
        launch "$dir" "${PARLEY_KAFKA_CLUSTER_ID:-cGFybGV5LWNsdXN0ZXIwMQ}"
      done
      for n in 1 2 3; do
        wait_ready "$root/broker-$n" "$((base + 100 * (n - 1)))" 3
      done
      say "cluster ready: bootstrap 127.0.0.1:$base,127.0.0.1:$((base + 100)),127.0.0.1:$((base + 200))"
      say "logs: $root/broker-*/logs/server.log"
      ;;
    stop)
      # All at once: stopped one by one, the last ones lose their controller quorum
      # and cannot shut down cleanly.
      for n in 1 2 3; do
        if is_running "$root/broker-$n"; then kill -TERM "$(cat "$root/broker-$n/broker.pid")" 2>/dev/null || true; fi
      done
      for n in 1 2 3; do stop_dir "$root/broker-$n"; done
      say "cluster stopped"
      ;;
    status)
      local up=0
      for n in 1 2 3; do
        if is_running "$root/broker-$n"; then echo "broker $n: running (port $((base + 100 * (n - 1))))"; up=$((up + 1));
        else echo "broker $n: not running"; fi
      done
      [ $up -gt 0 ] || return 3
      ;;
    kill)
      n="${2:-}"; [[ "$n" =~ ^[123]$ ]] || die "cluster kill takes a broker number 1..3"
      local dir="$root/broker-$n"
      if is_running "$dir"; then kill -KILL "$(cat "$dir/broker.pid")"; fi
      rm -f "$dir/broker.pid"
      say "broker $n killed"
      ;;
    restart)
      n="${2:-}"; [[ "$n" =~ ^[123]$ ]] || die "cluster restart takes a broker number 1..3"
      local dir="$root/broker-$n" p=$((base + 100 * (n - 1)))
      is_running "$dir" || launch "$dir" "${PARLEY_KAFKA_CLUSTER_ID:-cGFybGV5LWNsdXN0ZXIwMQ}"
      # A broker that rejoins a busy cluster recovers its logs first: give it longer.
      READY_TIMEOUT=$((READY_TIMEOUT * 3)) wait_ready "$dir" "$p" 1
      say "broker $n running"
      ;;
    pause|resume|pid)
      n="${2:-}"; [[ "$n" =~ ^[123]$ ]] || die "cluster $1 takes a broker number 1..3"
      local dir="$root/broker-$n"
      if ! is_running "$dir"; then
        [ "$1" = pid ] && { echo "broker $n: not running" >&2; return 3; }
        die "broker $n is not running"
      fi
      local pid; pid="$(cat "$dir/broker.pid")"
      case "$1" in
        pause) kill -STOP "$pid"; say "broker $n paused (SIGSTOP, pid $pid)" ;;
        resume) kill -CONT "$pid"; say "broker $n resumed (SIGCONT, pid $pid)" ;;
        pid) echo "$pid" ;;
      esac
      ;;
    reset)
      for n in 1 2 3; do stop_dir "$root/broker-$n"; done
      rm -rf "$root"; say "removed $root"
      ;;
    *) usage ;;
  esac
}

usage() {
  sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  start|stop|status|reset) single "$1" ;;
  data-dir) echo "$(single_dir)/data" ;;
  libs) echo "$LIBS" ;;
  crowded)
    # Benchmarks make fresh topics each run; a broker holding thousands of partitions
    # spends CPU and latency on them (docs/benchmarks.md: a p99 of 10.35 ms against
    # 3.18-4.55 ms after a reset).
    held=$(find "$(single_dir)/data" -mindepth 1 -maxdepth 1 -type d -name '*-[0-9]*' 2>/dev/null | wc -l)
    if (( held > 1000 )); then
      echo "kafka.sh: warning: the broker holds $held partitions from earlier runs; for comparable figures: scripts/kafka.sh reset; scripts/kafka.sh start" >&2
    fi
    ;;
  fetch) fetch ;;
  cluster) shift; cluster "$@" ;;
  *) usage ;;
esac
