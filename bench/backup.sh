#!/usr/bin/env bash
# What `relayward backup` costs a running relay: a store whose trace holds MESSAGES messages
# (written straight into it, as bench/trace-search.sh does) is backed up while the relay takes a
# steady load; the load's end of DATA -> 250 latency is printed for a run without a backup and
# for one during it, with the backup's time and size. Needs root for Debian's smtp-sink.
#
#   bench/backup.sh       MESSAGES=2000000 RATE=1000 SECONDS_LOAD=20 by default
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-2000000}
RATE=${RATE:-1000}
SECONDS_LOAD=${SECONDS_LOAD:-20}
SINK=127.0.0.1:2526
RW_PORT=2625
command -v smtp-sink >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix >/dev/null
cargo build --release -q -p relayward -p relayward-bench
RW=${RW:-target/release/relayward}
LOAD=target/release/smtpload
work=$(mktemp -d /tmp/relayward-backup.XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
. bench/sink.sh

cat > "$work/relayward.toml" <<TOML
[smtp]
relay_listen = "127.0.0.1:$RW_PORT"
submission_listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[storage]
data_dir = "$work/data"
[delivery]
smart_host = "$SINK"
tls = false
[scan]
bulk_recipients = 100000000
[limits]
user_messages_per_minute = 100000000
user_recipients_per_day = 100000000
[[tenants]]
name = "contoso"
domains = [ { name = "contoso.example", verified = true } ]
connectors = [ { name = "bench", ips = ["127.0.0.1/32"] } ]
TOML
"$RW" -c "$work/relayward.toml" tenant list > /dev/null
python3 - "$work/data/relayward.sqlite" "$MESSAGES" <<'PY'
import random, sqlite3, sys, time
path, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
now = int(time.time() * 1000)
c = sqlite3.connect(path)
c.executemany("INSERT INTO trace_messages (message_id, received_at, sender, tenant, origin,"
              " client_ip, size) VALUES (?, ?, ?, ?, ?, ?, ?)",
              ((f"M{i:010d}", now - (n - i) * 1000, f"user{random.randrange(200000)}@s{random.randrange(5000)}.example",
                f"t{i % 1000}", "relay", "10.0.0.1", 1000) for i in range(n)))
c.executemany("INSERT INTO trace_recipients (message_id, address, status) VALUES (?, ?, ?)",
              ((f"M{i:010d}", f"rcpt{random.randrange(100000)}@d{random.randrange(3000)}.example", "Delivered")
               for i in range(n)))
c.executemany("INSERT INTO trace_events (message_id, at, kind, recipient, detail) VALUES (?, ?, ?, ?, ?)",
              ((f"M{i:010d}", now - (n - i) * 1000, "delivered", None, "250 ok") for i in range(n)))
c.commit()
PY
start_sink
RELAYWARD_LOG=warn "$RW" serve --config "$work/relayward.toml" > "$work/rw.out" 2> "$work/rw.err" &
pids+=($!)
for _ in $(seq 1 300); do grep -q ready "$work/rw.out" 2>/dev/null && break; sleep 0.1; done
echo "== $MESSAGES messages in the trace, database $(du -h "$work/data/relayward.sqlite" | cut -f1); load $RATE msg/s, 1 KB, 10 connections, $SECONDS_LOAD s"
n=$((RATE * SECONDS_LOAD))
echo "without a backup: $($LOAD send --target 127.0.0.1:$RW_PORT --connections 10 --messages $n --size 1000 --rate "$RATE")"
during() { # label, then what the backup command runs under (env: nothing)
  local label=$1; shift
  local dest="$work/backup-$RANDOM" t0 t1
  $LOAD send --target 127.0.0.1:$RW_PORT --connections 10 --messages $n --size 1000 --rate "$RATE" > "$work/during.out" &
  local load=$!
  sleep 2
  t0=$(date +%s.%N)
  "$@" "$RW" -c "$work/relayward.toml" backup "$dest" > "$work/backup.out"
  t1=$(date +%s.%N)
  wait $load
  echo "$label: $(cat "$work/during.out")"
  echo "  the backup took $(echo "$t1 - $t0" | bc) s, $(du -h "$dest/relayward.sqlite" | cut -f1)"
  rm -rf "$dest"
}
during "during a backup" env
