#!/usr/bin/env bash
# SMTP AUTH under a password flood (issue 17). Prints, for each case: the relay's peak and
# final resident memory, how many wrong passwords it checked per account and how many it
# refused unchecked, and normal mail's end of DATA -> 250 latency on the relay port while the
# flood runs (and before it, for comparison). Needs root for Debian's postfix (smtp-sink).
#
#   bench/authflood.sh          FLOOD_SECONDS=30 CONNS=40 RATE=50 by default
#
# Cases: the default limits (5 failures per account, 20 per client address), and the limits
# lifted (every attempt is hashed: the password checkers alone bound the cost).
set -euo pipefail
cd "$(dirname "$0")/.."
FLOOD_SECONDS=${FLOOD_SECONDS:-30}
CONNS=${CONNS:-40}
RATE=${RATE:-50}
SINK=127.0.0.1:2526
command -v smtp-sink >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null
cargo build --release -q -p relayward -p relayward-bench
RW=target/release/relayward
work=$(mktemp -d /tmp/relayward-authflood.XXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

pkill -f "smtp-sink -u nobody -c $SINK" 2>/dev/null || true
smtp-sink -u nobody -c "$SINK" 1024 > "$work/sink.out" 2>&1 &
pids+=($!)

accounts=(--account alice@contoso.example)
for i in $(seq 1 199); do accounts+=(--account "user$i@contoso.example"); done
sources=()
for i in $(seq 1 "$CONNS"); do sources+=(--source "127.0.1.$i"); done
messages=$((RATE * FLOOD_SECONDS))

run_case() { # name, extra [smtp] keys
  local name=$1 extra=$2 dir="$work/$1"
  mkdir -p "$dir"
  cat > "$dir/relayward.toml" <<TOML
[smtp]
relay_listen = "127.0.0.1:2625"
submission_listen = "127.0.0.1:2687"
hostname = "relay.example"
$extra
[http]
listen = "127.0.0.1:8625"
[storage]
data_dir = "$dir/data"
[delivery]
smart_host = "$SINK"
[scan]
bulk_recipients = 100000000   # the load repeats one body: not bulk here
[[tenants]]
name = "contoso"
domains = [ { name = "contoso.example", kind = "authoritative", verified = true } ]
connectors = [ { name = "on-prem", ips = ["127.0.0.1/32"] } ]
users = [ { address = "alice@contoso.example", password = "the right password" } ]
TOML
  RELAYWARD_LOG=error "$RW" serve --config "$dir/relayward.toml" > "$dir/out" 2>&1 &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 300); do grep -q "relayward ready" "$dir/out" && break; sleep 0.1; done
  echo "== $name"
  echo "idle: $(grep VmRSS /proc/$pid/status | tr -s ' ')  threads: $(grep Threads /proc/$pid/status | awk '{print $2}')"
  echo -n "normal mail, no flood:   "
  target/release/smtpload send --target 127.0.0.1:2625 --connections 2 --messages $((RATE * 10)) --rate "$RATE" --size 2000
  target/release/smtpload send --target 127.0.0.1:2625 --connections 2 --messages "$messages" --rate "$RATE" --size 2000 > "$dir/during" &
  local load=$!
  target/release/authflood --target 127.0.0.1:2687 --connections "$CONNS" --seconds "$FLOOD_SECONDS" "${accounts[@]}" "${sources[@]}"
  wait "$load"
  echo -n "normal mail, with flood: "
  cat "$dir/during"
  echo "relay: $(grep -E 'VmHWM' /proc/$pid/status | tr -s ' ')  $(grep VmRSS /proc/$pid/status | tr -s ' ')  threads: $(grep Threads /proc/$pid/status | awk '{print $2}')"
  echo "metrics: $(curl -s http://127.0.0.1:8625/metrics | grep -E '^relayward_auth_' | tr '\n' ' ')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_case "default limits" ""
run_case "limits lifted" $'auth_failures_per_account = 1000000\nauth_failures_per_address = 1000000'
