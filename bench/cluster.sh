#!/usr/bin/env bash
# Cluster throughput on this machine (issue 22): 1, 2 and 3 nodes on one PostgreSQL database,
# beside one node on the embedded SQLite store, in one interleaved run on loopback. Nodes listen
# on 127.0.0.2, .3 and .4; Postfix's smtp-source drives each node with its share of the load
# (a new connection per message unless PERSIST=1); every node forwards to one smtp-sink.
# Needs the PostgreSQL at 127.0.0.1:5432 (trust auth) and root (it installs Debian's postfix
# for smtp-source and smtp-sink).
#
#   bench/cluster.sh        SIZE=1000 SESSIONS=10 MESSAGES=10000 PERSIST=0 ROUNDS=2 SIGN=0
#
# SIGN=0 sends from a domain that is not the tenant's (nothing is signed: the cluster's own cost
# shows); SIGN=1 from the tenant's accepted domain (RSA-2048 and Ed25519 signatures).
# Per setup and round: msg/s end to end (until the sink counted every message), CPU ms per
# message of the relay processes and of PostgreSQL's, and PostgreSQL statements per 1,000
# messages (the nodes' relayward_store_statements_total).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1000}
SESSIONS=${SESSIONS:-10}
MESSAGES=${MESSAGES:-10000}
PERSIST=${PERSIST:-0}
ROUNDS=${ROUNDS:-2}
SIGN=${SIGN:-0}
SINK=127.0.0.1:2526
PG=${PG:-postgres://postgres@127.0.0.1:5432}
DB=relayward_bench_cluster

for tool in smtp-sink:postfix smtp-source:postfix bc:bc psql:postgresql-client; do
  command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool##*:}" >/dev/null
done
cargo build --release -q -p relayward
RW=${RW:-target/release/relayward}
work=$(mktemp -d /tmp/relayward-cluster.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_sink, sink_count, wait_sink
. bench/sink.sh
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
pg_pids() { pgrep -u postgres -d ' ' postgres || true; }
pg_ticks() { # every PostgreSQL process, the ones that come and go included (summed over /proc)
  local t=0 p
  for p in $(pg_pids); do t=$((t + $(awk '{print $14 + $15 + $16 + $17}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
  echo $t
}
statements() { # the nodes' statement counters, summed
  local n=0 ip v
  for ip in "$@"; do
    v=$(curl -s "http://$ip:8025/metrics" | awk '/^relayward_store_statements_total/{print $2}')
    n=$((n + ${v:-0}))
  done
  echo $n
}
sender() { [ "$SIGN" = 1 ] && echo bench@contoso.example || echo bench@fabrikam.example; }

node_config() { # $1: address, $2: storage lines
  cat <<TOML
[smtp]
relay_listen = "$1:2625"
submission_listen = "$1:0"
hostname = "relayward.bench"
max_connections = 30000
max_connections_per_ip = 30000
[http]
listen = "$1:8025"
[storage]
data_dir = "$work/data-$1"
$2
[forwarding]
srs_secret = "bench-secret-the-same-on-every-node"
[delivery]
smart_host = "$SINK"
tls = false
[scan]
bulk_recipients = 100000000   # the load repeats one body: not bulk here
[limits]                      # one client sends everything: lift the per-user and unregistered limits
user_messages_per_minute = 100000000
user_recipients_per_day = 100000000
unregistered_allowance_per_day = 100000000
[[tenants]]
name = "contoso"
domains = [ { name = "contoso.example", verified = true } ]
connectors = [ { name = "bench", ips = ["127.0.0.1/32"], relay_unregistered = true } ]
TOML
}

round() { # $1: nodes, $2: sqlite or postgres; prints msg/s, relay CPU ms/msg, PG CPU ms/msg, statements per 1,000
  local nodes=$1 engine=$2 ips=() node_pids=() i
  for i in $(seq 2 $((nodes + 1))); do ips+=("127.0.0.$i"); done
  if [ "$engine" = postgres ]; then
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
    psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  fi
  for ip in "${ips[@]}"; do
    rm -rf "$work/data-$ip"
    local storage=""
    [ "$engine" = postgres ] && storage="database_url = \"$PG/$DB\"
node_name = \"$ip\""
    node_config "$ip" "$storage" > "$work/$ip.toml"
    RELAYWARD_LOG=warn $RW serve --config "$work/$ip.toml" > "$work/$ip.out" 2> "$work/$ip.err" &
    node_pids+=($!); pids+=($!)
    for _ in $(seq 1 200); do grep -q ready "$work/$ip.out" 2>/dev/null && break; sleep 0.1; done
  done
  start_sink
  for ip in "${ips[@]}"; do   # warm up: caches, DKIM keys made at start
    smtp-source -c -s 2 -m 50 -l "$SIZE" -f "$(sender)" -t rcpt@remote.example -M client.bench "$ip:2625" > /dev/null
  done
  sleep 2
  start_sink
  local keep="" c0 p0 s0 t0 e2e c1 p1 s1 each=$((MESSAGES / nodes)) sess=$(((SESSIONS + nodes - 1) / nodes)) loads=()
  [ "$PERSIST" = 1 ] && keep="-d"
  c0=$(ticks "${node_pids[@]}"); p0=$(pg_ticks); s0=$(statements "${ips[@]}"); t0=$(date +%s.%N)
  for ip in "${ips[@]}"; do
    smtp-source $keep -c -s "$sess" -m "$each" -l "$SIZE" -f "$(sender)" -t rcpt@remote.example -M client.bench "$ip:2625" > /dev/null &
    loads+=($!)
  done
  wait "${loads[@]}"
  e2e=$(wait_sink $((each * nodes)) "$t0")
  sleep 1   # the last counters and trace rows
  c1=$(ticks "${node_pids[@]}"); p1=$(pg_ticks); s1=$(statements "${ips[@]}")
  for p in "${node_pids[@]}"; do kill "$p"; wait "$p" 2>/dev/null || true; done
  local tck n=$((each * nodes)); tck=$(getconf CLK_TCK)
  echo "$(echo "$n / $e2e" | bc) $(echo "scale=2; ($c1 - $c0) * 1000 / $tck / $n" | bc) $(echo "scale=2; ($p1 - $p0) * 1000 / $tck / $n" | bc) $(echo "($s1 - $s0) * 1000 / $n" | bc)"
}

echo "== machine: $(nproc) cores, $(uname -r); $(psql "$PG/postgres" -Atc 'SHOW server_version' | cut -d' ' -f1) PostgreSQL"
echo "== load: $MESSAGES messages of $SIZE bytes over $SESSIONS sessions in all, $([ "$PERSIST" = 1 ] && echo "long-lived connections" || echo "a new connection per message"), $([ "$SIGN" = 1 ] && echo signed || echo "not signed")"
printf '%-6s %-22s %8s %14s %12s %16s\n' round setup msg/s "relay CPU ms" "PG CPU ms" "statements/1000"
for r in $(seq 1 "$ROUNDS"); do
  read -r m c p s <<<"$(round 1 sqlite)"
  printf '%-6s %-22s %8s %14s %12s %16s\n' "$r" "1 node, SQLite" "$m" "$c" "-" "-"
  for n in 1 2 3; do
    read -r m c p s <<<"$(round "$n" postgres)"
    printf '%-6s %-22s %8s %14s %12s %16s\n' "$r" "$n node(s), PostgreSQL" "$m" "$c" "$p" "$s"
  done
done
psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
echo "== work directory: $work"
