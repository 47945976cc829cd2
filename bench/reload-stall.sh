#!/usr/bin/env bash
# What another tenant's admin waits for while the relay reloads a large directory: one tenant
# admin adds a connector a second (each change makes the relay reload its whole directory),
# while another tenant's admin reads its users through the API in a loop, one request after
# another; prints the reloads and how long the reads took (curl's time_total). Black-box, on
# loopback, with the embedded store, on a copy of a store holding BIG other tenants (3 domains,
# a connector and a user each; the same seeded file as bench/admin-flood.sh).
#
#   bench/reload-stall.sh          BIG=300000 SECONDS_=10
#   RW=path/to/relayward           another build (the default: this one's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
BIG=${BIG:-300000}
SECONDS_=${SECONDS_:-10}
HTTP=127.0.0.1:8126
. bench/api-relay.sh
start_api_relay
new_tenant northwind
new_tenant fabrikam
changer=$(token --name nw --role admin --tenant northwind)
reader=$(token --name fb --role admin --tenant fabrikam)
sleep 4   # the reloads the setup caused are over
( for i in $(seq 1 "$SECONDS_"); do
    curl -s -o /dev/null -H "Authorization: Bearer $changer" -H 'Content-Type: application/json' \
      -d "{\"name\":\"c$i\",\"ips\":[\"2001:db8:$i::1\"]}" "$A/tenants/northwind/connectors"
    sleep 1
  done ) &
changes=$!
end=$(( $(date +%s) + SECONDS_ ))
: > "$work/times"
while [ "$(date +%s)" -lt "$end" ]; do
  curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $reader" \
    "$A/tenants/fabrikam/users" >> "$work/times"
done
wait $changes
echo "== $(nproc) cores, $(uname -r); $BIG other tenants; a connector added each second for $SECONDS_ s"
echo "reloads: $(grep -c 'directory reloaded' "$work/rw.err" || true) ($(grep 'directory reloaded' "$work/rw.err" | grep -o 'took_ms=[0-9]*' | cut -d= -f2 | tr '\n' ' ')ms)"
sort -n "$work/times" | awk '{a[NR] = $1; if ($1 > 0.05) slow++}
  END {printf "another tenant'"'"'s reads: %d, p50 %.1f ms, p99 %.1f ms, max %.1f ms, over 50 ms: %d\n",
       NR, a[int(NR * .5)] * 1000, a[int(NR * .99)] * 1000, a[NR] * 1000, slow + 0}'
