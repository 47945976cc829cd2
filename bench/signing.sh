#!/usr/bin/env bash
# Signed mail against the fair peers, in one interleaved run on loopback (issue 20): Relayward
# signing (RSA-2048 and Ed25519) and not signing, Debian's Postfix plain, and Postfix with
# Debian's OpenDKIM milter (on a unix socket) signing the same domain with RSA-2048. Every relay forwards to
# Postfix's smtp-sink; Postfix's smtp-source drives them. Needs root (it installs and runs
# Debian's postfix and opendkim).
#
#   bench/signing.sh        SIZE=1000 RCPTS=1 SESSIONS=10 MESSAGES=10000 PERSIST=0 ROUNDS=2
#   RELAYS="signing unsigned postfix opendkim"   (the default: all four; name fewer to run fewer)
#   LATENCY=1    (the default) also measures end of DATA -> 250 at half of the signing peak, signing
#                and not signing
#
# Besides the table, each result is printed as a line `RESULT <relay> <msg/s> [<CPU ms> <PSS MiB>]`
# (for Relayward also `THREADS <relay> <thread group>=<CPU ms per message> ...` and
# `SWITCHES <relay> <thread group>=<voluntary>/<involuntary context switches per message> ...`)
# and the latency as `LATENCY <p50 ms> <p99 ms> <msg/s reached>`, for bench/signing-matrix.sh;
# after each round, what an RSA-2048 signature costs the machine then, as `RSA <round> <ms>`.
#
# PERSIST=0: a new connection per message (smtp-source without -d), as most on-premises servers,
# devices and applications send; PERSIST=1: long-lived connections. Per relay and round: msg/s
# end to end (from the first connection until the sink counted every message), and for
# Relayward its CPU per message (user + system time of the process over the run) and its memory
# (PSS at the end of the run).
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1000}
RCPTS=${RCPTS:-1}
SESSIONS=${SESSIONS:-10}
MESSAGES=${MESSAGES:-10000}
PERSIST=${PERSIST:-0}
ROUNDS=${ROUNDS:-2}
RELAYS=${RELAYS:-signing unsigned postfix opendkim}
SINK=127.0.0.1:2526
RW_PORT=2625
PF_PORT=2725

for tool in smtp-sink:postfix smtp-source:postfix opendkim:opendkim opendkim-genkey:opendkim-tools bc:bc; do
  command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool##*:}" >/dev/null
done
cargo build --release -q -p relayward -p relayward-bench
RW=${RW:-target/release/relayward}
SMTPLOAD=target/release/smtpload
LATENCY=${LATENCY:-1}
work=$(mktemp -d /tmp/relayward-signing.XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  postfix stop >/dev/null 2>&1 || true
  postconf -X smtpd_milters milter_default_action 2>/dev/null || true   # leave no milter behind
  pkill -f "opendkim -x /var/lib/relayward-bench-opendkim" 2>/dev/null || true
}
trap cleanup EXIT

# start_sink, sink_count, wait_sink
. bench/sink.sh
# The machine's speed as it is now: what an RSA-2048 signature costs OpenSSL. On a shared virtual
# machine it moves within a run (0.24 to 0.33 ms within one hour in session 34), and every
# figure of a round moves with it.
rsa_now() { openssl speed -seconds 1 rsa2048 2>/dev/null | awk '/^rsa 2048/{printf "%.3f", $4 * 1000}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# The CPU each group of the process's threads ran (the scheduler's own count, ns), a line per
# group: threads named alike but for a number (dkim-signer-0 and -1) are one group.
thread_ns() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(cat "$t/comm" 2>/dev/null)" "$(cut -d' ' -f1 "$t/schedstat" 2>/dev/null)"
  done | awk 'NF == 2 {g = $1; sub(/-[0-9]+$/, "", g); ns[g] += $2} END {for (g in ns) print g, ns[g]}'
}
# The context switches of each group of threads, voluntary (a thread waiting: a lock, a channel,
# epoll, fdatasync) and involuntary (preempted), a line per group: `<group> <voluntary> <involuntary>`.
thread_switches() {
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(cat "$t/comm" 2>/dev/null)" \
      "$(awk '/^voluntary_ctxt_switches/{v=$2} /^nonvoluntary_ctxt_switches/{i=$2} END{print v, i}' "$t/status" 2>/dev/null)"
  done | awk 'NF == 3 {g = $1; sub(/-[0-9]+$/, "", g); v[g] += $2; i[g] += $3} END {for (g in v) print g, v[g], i[g]}'
}
pss_kib() { awk '/^Pss:/{print $2}' "/proc/$1/smaps_rollup"; }

# The load: $MESSAGES messages of $SIZE bytes from $1 to $RCPTS recipients over $SESSIONS sessions.
load() {
  local port=$1 from=$2 keep=""
  [ "$PERSIST" = 1 ] && keep="-d"
  smtp-source $keep -c -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -r "$RCPTS" -f "$from" \
    -t rcpt@remote.example -M client.bench "127.0.0.1:$port" > /dev/null
}

echo "== machine: $(nproc) cores, $(uname -r); Postfix $(postconf -h mail_version), $(opendkim -V 2>&1 | head -1)"
echo "== load: $MESSAGES messages of $SIZE bytes, $RCPTS recipient(s), $SESSIONS sessions, $([ "$PERSIST" = 1 ] && echo "long-lived connections" || echo "a new connection per message")"

# --- Relayward: one process; the tenant's domain is accepted (signed), fabrikam's is not -----------
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
bulk_recipients = 100000000   # the load repeats one body: not bulk here
[limits]                      # one client sends everything: lift the per-user and unregistered limits
user_messages_per_minute = 100000000
user_recipients_per_day = 100000000
unregistered_allowance_per_day = 100000000
# smtpload's one body from an unregistered domain to ten recipients scans as spam: no restriction
unregistered_suspicious_per_day = 100000000
tenant_suspicious_per_day = 100000000
connector_suspicious_per_day = 100000000
[[tenants]]
name = "contoso"
domains = [ { name = "contoso.example", verified = true } ]
connectors = [ { name = "bench", ips = ["127.0.0.1/32"], relay_unregistered = true } ]
TOML
start_relayward() { # $1: sender; warms the relay up; sets rw_pid
  local from=$1
  start_sink
  RELAYWARD_LOG=warn $RW serve --config "$work/relayward.toml" > "$work/rw.out" 2> "$work/rw.err" &
  rw_pid=$!; pids+=($rw_pid)
  for _ in $(seq 1 100); do grep -q ready "$work/rw.out" 2>/dev/null && break; sleep 0.1; done
  # Warm up outside the measurement: the domain's DKIM keys are made at start (an RSA key takes
  # about a quarter of a second), and the first connections fill the relay's caches.
  smtp-source -c -s 2 -m 50 -l "$SIZE" -f "$from" -t rcpt@remote.example -M client.bench "127.0.0.1:$RW_PORT" > /dev/null
  sleep 1
  start_sink
}
stop_relayward() {
  kill "$rw_pid"; wait "$rw_pid" 2>/dev/null || true
  rm -rf "$work/relayward-data"
}
relayward_round() { # $1: sender; prints msg/s, CPU ms per message, PSS MiB
  local from=$1
  start_relayward "$from"
  local pid=$rw_pid c0 t0 e2e c1 pss
  c0=$(cpu_ticks $pid); thread_ns $pid > "$work/threads.0"; thread_switches $pid > "$work/switches.0"
  t0=$(date +%s.%N)
  load $RW_PORT "$from"
  e2e=$(wait_sink "$MESSAGES" "$t0")
  c1=$(cpu_ticks $pid); pss=$(pss_kib $pid); thread_ns $pid > "$work/threads.1"
  thread_switches $pid > "$work/switches.1"
  # Where the CPU went, ms per message by thread group, for the caller to print (threads that
  # ended during the run, such as tokio's idle blocking threads, are missing from it).
  awk -v n="$MESSAGES" 'NR == FNR {b[$1] = $2; next} {d = ($2 - b[$1]) / 1e6 / n; if (d >= 0.001) printf " %s=%.3f", $1, d}' \
    "$work/threads.0" "$work/threads.1" > "$work/threads"
  awk -v n="$MESSAGES" 'NR == FNR {v[$1] = $2; i[$1] = $3; next} {dv = ($2 - v[$1]) / n; di = ($3 - i[$1]) / n; if (dv + di >= 0.01) printf " %s=%.2f/%.2f", $1, dv, di}' \
    "$work/switches.0" "$work/switches.1" > "$work/switches"
  stop_relayward
  local tck; tck=$(getconf CLK_TCK)
  echo "$(echo "$MESSAGES / $e2e" | bc) $(echo "scale=2; ($c1 - $c0) * 1000 / $tck / $MESSAGES" | bc) $((pss / 1024))"
}
# End of DATA -> 250 at a given rate (half of the signing peak), with the cell's shape, measured
# by this repository's smtpload; prints p50 and p99 in ms and the rate reached.
latency() { # $1: messages per second, $2: sender
  local rate=$1 from=$2 n each=""
  n=$(( rate * 8 )); [ "$n" -lt 1000 ] && n=1000
  [ "$PERSIST" = 1 ] || each=--connect-each
  start_relayward "$from"
  local out
  out=$($SMTPLOAD send --target "127.0.0.1:$RW_PORT" --connections "$SESSIONS" --messages "$n" \
    --size "$SIZE" --recipients "$RCPTS" --rate "$rate" $each \
    --from "$from" --to rcpt@remote.example)
  stop_relayward
  echo "$out" | tr ' ' '\n' | awk -F= '/^(p50_ms|p99_ms|rate)=/{v[$1]=$2} END{print v["p50_ms"], v["p99_ms"], v["rate"]}'
}

# --- Postfix, plain or with OpenDKIM ----------------------------------------------------------------
# OpenDKIM refuses a key or configuration under a directory others may write (/tmp).
dkim=/var/lib/relayward-bench-opendkim
rm -rf "$dkim"; mkdir -p "$dkim"; chmod 755 "$dkim"
opendkim-genkey -b 2048 -d contoso.example -s bench -D "$dkim"
chown -R opendkim "$dkim" 2>/dev/null || true
cat > "$dkim/opendkim.conf" <<CONF
Syslog no
Mode s
Domain contoso.example
Selector bench
KeyFile $dkim/bench.private
Socket local:$dkim/opendkim.sock
UMask 000
Canonicalization relaxed/relaxed
InternalHosts 127.0.0.1
UserID opendkim
CONF
postfix_round() { # $1: milter or none; prints msg/s
  postfix stop >/dev/null 2>&1 || true
  postconf -e "relayhost = [127.0.0.1]:2526" "mynetworks = 127.0.0.0/8" "inet_interfaces = loopback-only" \
    "inet_protocols = ipv4" "mydestination =" "myhostname = postfix.bench" "smtp_tls_security_level = none" \
    "smtpd_tls_security_level = none" "maillog_file = /var/log/relayward-bench-postfix.log" "compatibility_level = 3.6" \
    "smtpd_relay_restrictions = permit_mynetworks, reject" "default_process_limit = 200"
  if [ "$1" = milter ]; then
    # A unix socket, as Debian's packages set it up: over TCP on loopback the milter cost about
    # 90 ms a message whatever the load (small writes held back, most likely).
    postconf -e "smtpd_milters = unix:$dkim/opendkim.sock" "milter_default_action = tempfail"
    rm -f "$dkim/opendkim.sock"
    opendkim -x "$dkim/opendkim.conf" -f &
    pids+=($!)
    sleep 1
  else
    postconf -e "smtpd_milters ="
  fi
  postconf -M "127.0.0.1:$PF_PORT/inet=127.0.0.1:$PF_PORT inet n - n - - smtpd"
  newaliases 2>/dev/null || true
  postsuper -d ALL >/dev/null 2>&1 || true   # nothing an earlier run left queued is counted
  start_sink
  postfix start >/dev/null 2>&1 || { echo "postfix did not start" >&2; exit 1; }
  sleep 2
  local t0 e2e
  t0=$(date +%s.%N)
  load $PF_PORT bench@contoso.example
  e2e=$(wait_sink "$MESSAGES" "$t0")
  postfix stop >/dev/null 2>&1 || true
  pkill -f "opendkim -x /var/lib/relayward-bench-opendkim" 2>/dev/null || true
  sleep 1
  echo "$(echo "$MESSAGES / $e2e" | bc)"
}

echo "== RSA-2048 signature before the first round: $(rsa_now) ms (openssl speed)"
printf '%-6s %-30s %10s %12s %9s\n' round relay msg/s "CPU ms/msg" "PSS MiB"
signing_rates=()
for r in $(seq 1 "$ROUNDS"); do
  for relay in $RELAYS; do
    case $relay in
      signing)
        read -r m c p <<<"$(relayward_round bench@contoso.example)"
        signing_rates+=("$m")
        printf '%-6s %-30s %10s %12s %9s\n' "$r" "relayward, signing" "$m" "$c" "$p"
        echo "RESULT signing $m $c $p"
        echo "THREADS signing$(cat "$work/threads")"
        echo "SWITCHES signing$(cat "$work/switches")" ;;
      unsigned)
        read -r m c p <<<"$(relayward_round bench@fabrikam.example)"
        printf '%-6s %-30s %10s %12s %9s\n' "$r" "relayward, not signing" "$m" "$c" "$p"
        echo "RESULT unsigned $m $c $p"
        echo "THREADS unsigned$(cat "$work/threads")"
        echo "SWITCHES unsigned$(cat "$work/switches")" ;;
      postfix)
        m=$(postfix_round none)
        printf '%-6s %-30s %10s\n' "$r" "postfix" "$m"
        echo "RESULT postfix $m" ;;
      opendkim)
        m=$(postfix_round milter)
        printf '%-6s %-30s %10s\n' "$r" "postfix + opendkim" "$m"
        echo "RESULT opendkim $m" ;;
      *) echo "unknown relay $relay (signing, unsigned, postfix, opendkim)" >&2; exit 2 ;;
    esac
  done
  rsa=$(rsa_now)
  echo "== RSA-2048 signature after round $r: $rsa ms (openssl speed)"
  echo "RSA $r $rsa"
done
if [ "$LATENCY" = 1 ] && [ "${#signing_rates[@]}" -gt 0 ]; then
  best=$(printf '%s\n' "${signing_rates[@]}" | sort -n | tail -1)
  read -r p50 p99 got <<<"$(latency $(( best / 2 )) bench@contoso.example)"
  echo "== signing, end of DATA -> 250 at half of the signing peak ($(( best / 2 )) msg/s asked, $got reached): p50 $p50 ms, p99 $p99 ms"
  echo "LATENCY $p50 $p99 $got"
  read -r p50 p99 got <<<"$(latency $(( best / 2 )) bench@fabrikam.example)"
  echo "== not signing, same rate: p50 $p50 ms, p99 $p99 ms"
  echo "LATENCY-UNSIGNED $p50 $p99 $got"
fi
echo "== work directory: $work"
