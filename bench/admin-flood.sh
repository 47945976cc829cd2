#!/usr/bin/env bash
# What one tenant admin's writes through the API cost the relay every tenant shares: for each
# kind of object, COUNT adds one after another with the admin's token, the wall time and the
# relay's CPU (user + system of its process) over them, and the directory reloads they caused.
# Black-box, on loopback, with the embedded store. The relay's limit on a tenant's changes
# ([http] tenant_changes_per_hour, 600 by default) is lifted here.
#
#   bench/admin-flood.sh          COUNT=500 by default
#   BIG=300000 bench/admin-flood.sh   the relay starts on a copy of a store holding that many
#                                     other tenants (3 domains, a connector and a user each,
#                                     written once by guardbench and kept), where each reload of
#                                     the directory takes seconds
#   RW=path/to/relayward              another build (the default: this one's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-500}
BIG=${BIG:-0}
HTTP=127.0.0.1:8125
. bench/api-relay.sh
start_api_relay
new_tenant northwind
$RW domain add northwind northwind.example --verified --config "$work/relayward.toml" > /dev/null
admin=$(token --name nw --role admin --tenant northwind)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
reloads() { grep -c "directory reloaded" "$work/rw.err" || true; }
# The reloads' own time (logged by builds that say it), in ms.
reload_ms() { grep "directory reloaded" "$work/rw.err" | grep -o 'took_ms=[0-9]*' | cut -d= -f2 | awk '{s += $1} END {print s + 0}' || true; }
tck=$(getconf CLK_TCK)

echo "== $(nproc) cores, $(uname -r); $COUNT adds of each kind by one tenant admin, one after another; $BIG other tenants"
printf '%-34s %9s %14s %14s %8s %12s\n' "object" "seconds" "relay CPU ms" "CPU ms / add" "reloads" "reload ms"
# A body with {i} (the add's number) and {a}.{b} (its two low bytes) filled in.
fill() { local b=${1//\{i\}/$2}; b=${b//\{a\}/$(($2 / 256))}; echo "${b//\{b\}/$(($2 % 256))}"; }
flood() { # $1: label, $2: path under the tenant, $3: body with {i}
  local label=$1 path=$2 body=$3 c0 c1 t0 t1 r0 r1 m0 m1 refused=0 code
  c0=$(cpu); r0=$(reloads); m0=$(reload_ms); t0=$(date +%s.%N)
  for i in $(seq 1 "$COUNT"); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin" \
      -H 'Content-Type: application/json' -d "$(fill "$body" "$i")" "$A/tenants/northwind/$path")
    [ "$code" = 201 ] || refused=$((refused + 1))
  done
  t1=$(date +%s.%N); c1=$(cpu); r1=$(reloads); m1=$(reload_ms)
  printf '%-34s %9.1f %14d %14.2f %8d %12d\n' "$label" "$(echo "$t1 - $t0" | bc)" \
    $(( (c1 - c0) * 1000 / tck )) "$(echo "scale=2; ($c1 - $c0) * 1000 / $tck / $COUNT" | bc)" \
    $((r1 - r0)) $((m1 - m0))
  # Let the last change's reload finish outside the next measurement.
  sleep 3
  [ "$refused" = 0 ] || echo "   ($refused of them refused)"
}
flood "unverified domains" domains '{"name":"d{i}.northwind.example"}'
flood "connectors (one address each)" connectors '{"name":"c{i}","ips":["2001:db8:{i}::1"]}'
flood "connectors (an IPv4 /24 each)" connectors '{"name":"v{i}","ips":["10.20{a}.{b}.0/24"]}'
flood "users (no password)" users '{"address":"u{i}@northwind.example"}'
flood "webhooks" webhooks '{"url":"https://hooks{i}.northwind.example/","events":["alert"]}'
# What a tenant admin's reads cost: the tenant's users listed, COUNT times.
c0=$(cpu); t0=$(date +%s.%N)
for _ in $(seq 1 "$COUNT"); do
  curl -sf -o /dev/null -H "Authorization: Bearer $admin" "$A/tenants/northwind/users"
done
t1=$(date +%s.%N); c1=$(cpu)
printf '%-34s %9.1f %14d %14.2f\n' "reads (GET the tenant's users)" "$(echo "$t1 - $t0" | bc)" \
  $(( (c1 - c0) * 1000 / tck )) "$(echo "scale=2; ($c1 - $c0) * 1000 / $tck / $COUNT" | bc)"
