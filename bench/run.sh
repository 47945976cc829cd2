#!/usr/bin/env bash
# Relayward against a stock Postfix relay, on loopback, in one run. Prints the figures that
# BENCHMARKS.md records. Needs root (it installs Debian's postfix if missing and runs it).
#
#   bench/run.sh                       MESSAGES=20000 CONNS=20 SIZE=5000 IDLE=10000 by default
#
# Both relays forward everything to Postfix's smtp-sink (a fast discard server) and are driven by
# the same client (crates/bench, `smtpload`). End-to-end time runs from the first connection
# until the sink has counted every message. fsync is on for both: Relayward fsyncs its spool
# before every 250 (grouped), Postfix fsyncs each queue file.
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-20000}
CONNS=${CONNS:-20}
SIZE=${SIZE:-5000}
IDLE=${IDLE:-10000}
SINK=127.0.0.1:2526
RW_PORT=2625
PF_PORT=2725

for tool in smtp-sink:postfix postfix:postfix bc:bc; do
  command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool##*:}" >/dev/null
done
cargo build --release -q -p relayward -p relayward-bench
RW=${RW:-target/release/relayward}   # RW=path compares another build
LOAD=target/release/smtpload
work=$(mktemp -d /tmp/relayward-bench.XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  postfix stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"   # 10,000 idle connections need that many descriptors in each process

# start_sink, sink_count, wait_sink
. bench/sink.sh
field() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); Postfix $(postconf -h mail_version)"
echo "== load: $MESSAGES messages of $SIZE bytes over $CONNS connections, one recipient each"

# --- Relayward --------------------------------------------------------------------------------
cat > "$work/relayward.toml" <<TOML
[smtp]
relay_listen = "127.0.0.1:$RW_PORT"
submission_listen = "127.0.0.1:0"
hostname = "relayward.bench"
max_connections = 30000
max_connections_per_ip = 30000
[http]
listen = "127.0.0.1:0"
[storage]
data_dir = "$work/relayward-data"
[delivery]
smart_host = "$SINK"
tls = false
[scan]
bulk_recipients = 100000000   # the load repeats one body to one address: not bulk here
[limits]                      # the load comes from one user: lift the per-user guard limits
user_messages_per_minute = 100000000
user_recipients_per_day = 100000000
[[tenants]]
name = "contoso"
domains = [ { name = "contoso.example", verified = true } ]
connectors = [ { name = "bench", ips = ["127.0.0.1/32"] } ]
users = [ { address = "bench@contoso.example" } ]
TOML
start_sink
RELAYWARD_LOG=warn $RW serve --config "$work/relayward.toml" > "$work/rw.out" 2> "$work/rw.err" &
rw_pid=$!; pids+=($rw_pid)
for _ in $(seq 1 100); do grep -q ready "$work/rw.out" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s.%N)
rw_peak=$($LOAD send --target 127.0.0.1:$RW_PORT --connections "$CONNS" --messages "$MESSAGES" --size "$SIZE")
rw_e2e=$(wait_sink "$MESSAGES" "$t0")
echo "relayward peak:     $rw_peak"
echo "relayward end-to-end: $MESSAGES messages delivered in ${rw_e2e}s = $(echo "$MESSAGES / $rw_e2e" | bc) msg/s"
half=$(echo "$(field "$rw_peak" rate | cut -d/ -f1) / 2" | bc)
start_sink
rw_half=$($LOAD send --target 127.0.0.1:$RW_PORT --connections "$CONNS" --messages "$((MESSAGES / 2))" --size "$SIZE" --rate "$half")
echo "relayward at half of peak ($half msg/s): $rw_half"

rss0=$(awk '/VmRSS/{print $2}' /proc/$rw_pid/status)
$LOAD idle --target 127.0.0.1:$RW_PORT --connections "$IDLE" --hold 8 > "$work/idle.out" &
idle_pid=$!
for _ in $(seq 1 600); do grep -q idle_connections "$work/idle.out" 2>/dev/null && break; sleep 0.1; done
sleep 2
rss1=$(awk '/VmRSS/{print $2}' /proc/$rw_pid/status)
echo "relayward idle: $(cat "$work/idle.out"); RSS before ${rss0} KiB, with them ${rss1} KiB = $((rss1 / 1024)) MiB"
wait $idle_pid || true
kill $rw_pid; wait $rw_pid 2>/dev/null || true

# --- Postfix ----------------------------------------------------------------------------------
postfix stop >/dev/null 2>&1 || true
postconf -e "relayhost = [127.0.0.1]:2526" "mynetworks = 127.0.0.0/8" "inet_interfaces = loopback-only" \
  "inet_protocols = ipv4" "mydestination =" "myhostname = postfix.bench" "smtp_tls_security_level = none" \
  "smtpd_tls_security_level = none" "maillog_file = /var/log/relayward-bench-postfix.log" "compatibility_level = 3.6" \
  "smtpd_relay_restrictions = permit_mynetworks, reject"
postconf -M "127.0.0.1:$PF_PORT/inet=127.0.0.1:$PF_PORT inet n - n - - smtpd"
newaliases 2>/dev/null || true
# Mail an earlier run left queued (the half-of-peak load is not waited for) would go to the sink
# first, and to a sink not yet listening Postfix defers the whole destination for minutes.
postsuper -d ALL >/dev/null 2>&1 || true
start_sink
postfix start || { echo "postfix did not start; see /var/log/relayward-bench-postfix.log" >&2; exit 1; }
sleep 2
t0=$(date +%s.%N)
pf_peak=$($LOAD send --target 127.0.0.1:$PF_PORT --connections "$CONNS" --messages "$MESSAGES" --size "$SIZE")
pf_e2e=$(wait_sink "$MESSAGES" "$t0")
echo "postfix peak:       $pf_peak"
echo "postfix end-to-end: $MESSAGES messages delivered in ${pf_e2e}s = $(echo "$MESSAGES / $pf_e2e" | bc) msg/s"
pf_half=$(echo "$(field "$pf_peak" rate | cut -d/ -f1) / 2" | bc)
start_sink
pf_half_out=$($LOAD send --target 127.0.0.1:$PF_PORT --connections "$CONNS" --messages "$((MESSAGES / 2))" --size "$SIZE" --rate "$pf_half")
echo "postfix at half of its peak ($pf_half msg/s): $pf_half_out"
postfix stop >/dev/null 2>&1 || true
postsuper -d ALL >/dev/null 2>&1 || true

echo "== ratio (end-to-end, relayward / postfix): $(echo "scale=2; $pf_e2e / $rw_e2e" | bc)"
