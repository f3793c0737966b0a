#!/usr/bin/env bash
# Fetches and runs wardflow's local services, bound to 127.0.0.1:
#   the Apache Kafka broker (KRaft, single node) and the Flink SQL connector jars, from Maven Central;
#   Redis (Debian's redis-server) for the Feast online store in integration tests;
#   an in-memory HAPI FHIR R4 server (jars from Maven Central, deploy/local/fhir/WardflowFhirServer.java
#   compiled with javac at fetch time) standing in for the EHR that alerts are written back to:
#   base URL http://127.0.0.1:18080/fhir (WARDFLOW_FHIR_PORT), readiness probe GET [base]/metadata,
#   POST [base]/$reset empties it; Flag, RiskAssessment, DetectedIssue, Patient, Encounter, Observation.
#   It rejects unknown elements and invalid values with a 400 (WARDFLOW_FHIR_STRICT=false: lenient).
# ClickHouse needs no service: chdb runs embedded (clickhouse-connect's chdb:// DSN).
#
# usage: deploy/local/services.sh {fetch|start|stop|status|env} [kafka|redis|fhir|all]
# Idempotent: start on a running service and stop on a stopped one are no-ops.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${WARDFLOW_CACHE:-$HOME/.cache/wardflow}"
STATE="${WARDFLOW_STATE:-$CACHE/state}"
KAFKA_VERSION="4.1.1"
KAFKA_PORT="${WARDFLOW_KAFKA_PORT:-19092}"
CONTROLLER_PORT="${WARDFLOW_KAFKA_CONTROLLER_PORT:-19093}"
# The local broker's heap: it buffers requests, not data (the log is on disk, in the page cache).
# 512 MiB carries the device-rate benchmark (bench/device_rate.py, settings.kafka_jvm_heap).
KAFKA_HEAP="${WARDFLOW_KAFKA_HEAP:--Xms128m -Xmx512m}"
REDIS_PORT="${WARDFLOW_REDIS_PORT:-16379}"
# hapi-fhir-server 8.8.0 is the newest that resolves from the Maven mirror here (8.10+ are not served).
FHIR_VERSION="8.8.0"
FHIR_PORT="${WARDFLOW_FHIR_PORT:-18080}"
FHIR_URL="http://127.0.0.1:$FHIR_PORT/fhir"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
FLINK_JARS="$CACHE/flink-jars"
FHIR_HOME="$CACHE/fhir-server-$FHIR_VERSION"

die() { echo "services.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # name port seconds logfile
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    port_open "$2" && return 0
    sleep 0.1
  done
  echo "--- last lines of $4" >&2; tail -n 30 "$4" >&2 || true
  die "$1 did not open 127.0.0.1:$2 within $3 s"
}

fetch_kafka() {
  [[ -f "$KAFKA_LIBS/.complete" ]] && return 0
  need java "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
  need mvn "install Maven (Debian: apt-get install maven)"
  echo "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$HERE/maven/kafka-pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" || die "mvn could not resolve the Kafka jars"
  touch "$KAFKA_LIBS/.complete"
}

fetch_fhir() {
  local src="$HERE/fhir/WardflowFhirServer.java" sum
  if [[ ! -f "$FHIR_HOME/libs/.complete" ]]; then
    need java "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
    need mvn "install Maven (Debian: apt-get install maven)"
    echo "fetching HAPI FHIR $FHIR_VERSION server jars from Maven Central into $FHIR_HOME/libs"
    rm -rf "$FHIR_HOME/libs"; mkdir -p "$FHIR_HOME/libs"
    mvn -q -B -f "$HERE/maven/fhir-pom.xml" dependency:copy-dependencies -Dhapi.version="$FHIR_VERSION" \
      -DincludeScope=runtime -DoutputDirectory="$FHIR_HOME/libs" || die "mvn could not resolve the HAPI FHIR jars"
    touch "$FHIR_HOME/libs/.complete"
  fi
  # recompiled whenever the source changes (its checksum is kept beside the classes)
  sum="$(sha256sum "$src" | cut -d' ' -f1)"
  [[ -f "$FHIR_HOME/classes/.complete" && "$(cat "$FHIR_HOME/classes/.complete")" == "$sum" ]] && return 0
  need javac "install a Java 17+ JDK (Debian: apt-get install openjdk-17-jdk-headless)"
  echo "compiling $src into $FHIR_HOME/classes"
  rm -rf "$FHIR_HOME/classes"; mkdir -p "$FHIR_HOME/classes"
  javac -nowarn -d "$FHIR_HOME/classes" -cp "$FHIR_HOME/libs/*" "$src" || die "javac could not compile $src"
  echo "$sum" > "$FHIR_HOME/classes/.complete"
}

fetch_flink() {
  [[ -f "$FLINK_JARS/.complete" ]] && return 0
  need mvn "install Maven (Debian: apt-get install maven)"
  echo "fetching the Flink Kafka SQL connector and Avro format jars into $FLINK_JARS"
  rm -rf "$FLINK_JARS"; mkdir -p "$FLINK_JARS"
  mvn -q -B -f "$HERE/maven/flink-pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DexcludeArtifactIds=slf4j-api,jsr305 -DoutputDirectory="$FLINK_JARS" \
    || die "mvn could not resolve the Flink connector jars"
  touch "$FLINK_JARS/.complete"
}

fetch_redis() {
  command -v redis-server >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and apt-get is not available"
  echo "installing Debian's redis-server"
  if [[ $(id -u) -eq 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
}

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_kafka() {
  need java "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
  fetch_kafka
  local dir="$STATE/kafka" pidf="$STATE/kafka.pid" log="$STATE/kafka.out"
  if pid_alive "$pidf" && port_open "$KAFKA_PORT"; then echo "kafka already running on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  port_open "$KAFKA_PORT" && die "127.0.0.1:$KAFKA_PORT is taken by another process (set WARDFLOW_KAFKA_PORT)"
  mkdir -p "$dir/data" "$dir/logs"
  sed -e "s|@BROKER_PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$dir/data|g" "$HERE/kafka/server.properties.in" > "$dir/server.properties"
  local heap; read -ra heap <<< "$KAFKA_HEAP"
  local java=(java "${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true
              "-Dkafka.logs.dir=$dir/logs" "-Dlog4j2.configurationFile=$HERE/kafka/log4j2.yaml"
              -cp "$KAFKA_LIBS/*")
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    "${java[@]}" kafka.tools.StorageTool format -t "wardflow-local-kraft-01" \
      -c "$dir/server.properties" >"$dir/format.out" 2>&1 || { cat "$dir/format.out" >&2; die "kafka storage format failed"; }
  fi
  nohup "${java[@]}" kafka.Kafka "$dir/server.properties" >"$log" 2>&1 &
  echo $! > "$pidf"
  wait_port kafka "$KAFKA_PORT" 60 "$dir/logs/server.log"
  echo "kafka $KAFKA_VERSION running on 127.0.0.1:$KAFKA_PORT (pid $(cat "$pidf"), data $dir/data)"
}

start_redis() {
  fetch_redis
  local pidf="$STATE/redis.pid" log="$STATE/redis.log"
  mkdir -p "$STATE/redis"
  if pid_alive "$pidf" && port_open "$REDIS_PORT"; then echo "redis already running on 127.0.0.1:$REDIS_PORT"; return 0; fi
  port_open "$REDIS_PORT" && die "127.0.0.1:$REDIS_PORT is taken by another process (set WARDFLOW_REDIS_PORT)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE/redis" --save "" --appendonly no \
    --daemonize yes --pidfile "$pidf" --logfile "$log" >/dev/null
  wait_port redis "$REDIS_PORT" 20 "$log"
  echo "redis running on 127.0.0.1:$REDIS_PORT"
}

http_ok() {  # port path: a 200 from GET http://127.0.0.1:port/path
  if command -v curl >/dev/null 2>&1; then
    curl -sf --noproxy '*' --max-time 5 -o /dev/null "http://127.0.0.1:$1$2"; return
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3 &&
   IFS= read -r -t 5 line <&3 && [[ "$line" == HTTP/1.?" 200"* ]]) 2>/dev/null
}

start_fhir() {
  need java "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)"
  fetch_fhir
  local pidf="$STATE/fhir.pid" log="$STATE/fhir.out" i
  if pid_alive "$pidf" && http_ok "$FHIR_PORT" /fhir/metadata; then echo "fhir already running on $FHIR_URL"; return 0; fi
  port_open "$FHIR_PORT" && die "127.0.0.1:$FHIR_PORT is taken by another process (set WARDFLOW_FHIR_PORT)"
  # in memory, about 150 MB resident; C1 only and the serial GC keep it small
  nohup java -Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=48m -Xss512k \
    -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true "-Dwardflow.fhir.strict=${WARDFLOW_FHIR_STRICT:-true}" \
    -cp "$FHIR_HOME/classes:$FHIR_HOME/libs/*" WardflowFhirServer "$FHIR_PORT" >"$log" 2>&1 &
  echo $! > "$pidf"
  wait_port fhir "$FHIR_PORT" 60 "$log"
  for ((i = 0; i < 600; i++)); do
    http_ok "$FHIR_PORT" /fhir/metadata && break
    pid_alive "$pidf" || i=600
    sleep 0.1
  done
  if ((i >= 600)); then
    echo "--- last lines of $log" >&2; tail -n 30 "$log" >&2 || true
    die "fhir did not answer GET $FHIR_URL/metadata within 60 s"
  fi
  echo "fhir (HAPI FHIR $FHIR_VERSION, R4, in memory) running on $FHIR_URL (pid $(cat "$pidf"))"
}

stop_pid() {  # name pidfile
  if pid_alive "$2"; then
    local pid; pid="$(cat "$2")"; kill "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "$1 stopped"
  fi
  rm -f "$2"
}

status() {
  pid_alive "$STATE/kafka.pid" && port_open "$KAFKA_PORT" && echo "kafka: up on 127.0.0.1:$KAFKA_PORT" || echo "kafka: down"
  pid_alive "$STATE/redis.pid" && port_open "$REDIS_PORT" && echo "redis: up on 127.0.0.1:$REDIS_PORT" || echo "redis: down"
  pid_alive "$STATE/fhir.pid" && port_open "$FHIR_PORT" && echo "fhir: up on $FHIR_URL" || echo "fhir: down"
}

cmd="${1:-}"; what="${2:-all}"
mkdir -p "$CACHE" "$STATE"
case "$cmd:$what" in
  fetch:kafka) fetch_kafka; fetch_flink ;;
  fetch:redis) fetch_redis ;;
  fetch:fhir) fetch_fhir ;;
  fetch:all) fetch_kafka; fetch_flink; fetch_redis; fetch_fhir ;;
  start:kafka) fetch_flink; start_kafka ;;
  start:redis) start_redis ;;
  start:fhir) start_fhir ;;
  start:all) fetch_flink; start_kafka; start_redis; start_fhir ;;
  stop:kafka) stop_pid kafka "$STATE/kafka.pid" ;;
  stop:redis) stop_pid redis "$STATE/redis.pid" ;;
  stop:fhir) stop_pid fhir "$STATE/fhir.pid" ;;
  stop:all) stop_pid kafka "$STATE/kafka.pid"; stop_pid redis "$STATE/redis.pid"; stop_pid fhir "$STATE/fhir.pid" ;;
  reset:kafka) stop_pid kafka "$STATE/kafka.pid"; rm -rf "$STATE/kafka" ;;
  reset:fhir) stop_pid fhir "$STATE/fhir.pid" ;;  # it keeps nothing on disk
  status:*) status ;;
  env:*)
    echo "WARDFLOW_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT"
    echo "WARDFLOW_FLINK_JARS=$FLINK_JARS"
    echo "WARDFLOW_FEAST_ONLINE_STORE=127.0.0.1:$REDIS_PORT"
    echo "WARDFLOW_FHIR_SERVER_URL=$FHIR_URL" ;;
  *) die "usage: $0 {fetch|start|stop|reset|status|env} [kafka|redis|fhir|all]" ;;
esac
