# A relay on the embedded store for benchmarks of the API, with every other tenant the seeded
# store holds. Sourced by bench/admin-flood.sh and bench/reload-stall.sh from the repository's
# root; they set $BIG (how many other tenants: 0 for an empty store) and $HTTP (the API's
# address), and may set $RW (the relay binary; the default: this one's release build).
#
# start_api_relay: builds, starts the relay and waits until it is ready; sets work (its
#   temporary directory), pid, A (the API's base URL) and ops (an operator's token), and
#   kills the relay on exit.
# token ARGS...: a new token, `relayward token create ARGS`.
# new_tenant NAME: creates a tenant with the operator's token.

start_api_relay() {
  cargo build --release -q -p relayward -p relayward-bench
  RW=${RW:-target/release/relayward}
  work=$(mktemp -d /tmp/relayward-api.XXXX)
  mkdir -p "$work/data"
  if [ "$BIG" -gt 0 ]; then
    # 3 domains, a connector and a user each, written once by guardbench and kept
    local seeded=/tmp/relayward-adminflood-$BIG.sqlite
    [ -f "$seeded" ] || target/release/guardbench --tenants "$BIG" --decisions 1 --sqlite "$seeded" > /dev/null
    cp "$seeded" "$work/data/relayward.sqlite"
  fi
  cat > "$work/relayward.toml" <<TOML
[smtp]
relay_listen = "127.0.0.1:0"
submission_listen = "127.0.0.1:0"
[http]
listen = "$HTTP"
tenant_changes_per_hour = 0   # what each change costs, not the limit that bounds them
[storage]
data_dir = "$work/data"
[delivery]
smart_host = "127.0.0.1:9"
TOML
  RELAYWARD_LOG=info $RW serve --config "$work/relayward.toml" > "$work/rw.out" 2> "$work/rw.err" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
  for _ in $(seq 1 1200); do grep -q ready "$work/rw.out" 2>/dev/null && break; sleep 0.1; done
  A=http://$HTTP/api/v1
  ops=$(token --name ops --role operator)
}

token() { $RW token create --config "$work/relayward.toml" "$@" 2>/dev/null | grep -o 'rw_[A-Za-z0-9_]*' | head -1; }

new_tenant() {
  curl -sf -o /dev/null -H "Authorization: Bearer $ops" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\"}" "$A/tenants"
}
