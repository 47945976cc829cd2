#!/usr/bin/env bash
# What a message trace search costs on the embedded store as the trace grows: MESSAGES messages
# (5,000 sender domains, 200,000 local parts, 1,000 tenants, one a second back from now; one
# recipient each, 1% of them Failed and the rest Delivered) are written straight into a store
# the relay made, then `relayward trace` is timed for a sender, a recipient, a tenant and each
# status, with and without the last hour as the window.
# The store has one connection: while a search runs, the API, the console and the trace writer
# wait for it.
#
#   bench/trace-search.sh          MESSAGES=2000000 by default (about a minute to write)
#   RW=path/to/relayward           another build (the default: this one's release build)
#   FROM=path/to/older/relayward   the store is made by that build; RW migrates it at its first
#                                  command, timed apart
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${MESSAGES:-2000000}
cargo build --release -q -p relayward
RW=${RW:-target/release/relayward}
work=$(mktemp -d /tmp/relayward-tracesearch.XXXX)
cat > "$work/relayward.toml" <<TOML
[storage]
data_dir = "$work/data"
TOML
"${FROM:-$RW}" -c "$work/relayward.toml" tenant list > /dev/null
python3 - "$work/data/relayward.sqlite" "$MESSAGES" <<'PY'
import random, sqlite3, sys, time
path, n = sys.argv[1], int(sys.argv[2])
random.seed(7)
now = int(time.time() * 1000)
c = sqlite3.connect(path)
rows = ((f"M{i:010d}", now - (n - i) * 1000,
         f"user{random.randrange(200000)}@Sender{random.randrange(5000)}.example",
         f"t{i % 1000}", "relay", "10.0.0.1", 1000) for i in range(n))
c.executemany("INSERT INTO trace_messages (message_id, received_at, sender, tenant, origin,"
              " client_ip, size) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
rcpts = ((f"M{i:010d}", f"rcpt{random.randrange(100000)}@dest{random.randrange(3000)}.example",
          "Failed" if i % 100 == 7 else "Delivered") for i in range(n))
c.executemany("INSERT INTO trace_recipients (message_id, address, status) VALUES (?, ?, ?)", rcpts)
c.commit()
PY
pick() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$work/data/relayward.sqlite" "$1"; }
known=$(pick "SELECT upper(sender) FROM trace_messages WHERE rowid = 12345")
recipient=$(pick "SELECT address FROM trace_recipients WHERE rowid = 777")
timed() { # label, then the command's arguments
  local label=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  "$RW" -c "$work/relayward.toml" "$@" > /dev/null
  t1=$(date +%s.%N)
  printf '%-44s %8.3f s\n' "$label" "$(echo "$t1 - $t0" | bc)"
}
echo "== $MESSAGES messages in the trace ($(du -h "$work/data/relayward.sqlite" | cut -f1)), $($RW --version)"
timed "first command (any migration)" tenant list
timed "a sender that is there, another letter case" trace --sender "$known"
timed "a sender that is not" trace --sender nobody@nowhere.example
timed "a tenant and a sender that is not" trace --tenant t1 --sender nobody@nowhere.example
timed "a tenant alone (its newest 50)" trace --tenant t1
timed "a recipient" trace --recipient "$recipient"
for status in Delivered Failed Deferred; do
  timed "status $status" trace --status $status
  timed "status $status, the last hour" trace --status $status --since 1h
  timed "status $status, the last 7 days" trace --status $status --since 7d
  timed "status $status, one tenant" trace --status $status --tenant t2
done
rm -rf "$work"
