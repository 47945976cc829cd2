#!/usr/bin/env bash
# The whole signing matrix of issue 20 in one command: every cell runs bench/signing.sh
# (Relayward signing and not signing, Postfix, Postfix + OpenDKIM on a unix socket, interleaved
# in each round, then signed latency at half of the peak), and the results come out as one
# Markdown table with medians over the rounds and the ratios to both peers, and what an RSA-2048
# signature cost the machine after each round (on a shared virtual machine it moves, and the
# cell's figures with it). Needs root, as signing.sh does.
#
#   bench/signing-matrix.sh                 ROUNDS=2 MESSAGES=5000 (3000 for one session)
#   CELLS="1000:1:10:0 20000:1:1:0" bench/signing-matrix.sh      size:recipients:sessions:persist
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
MESSAGES=${MESSAGES:-5000}
CELLS=${CELLS:-1000:1:1:0 1000:1:10:0 1000:1:50:0 1000:10:10:0 20000:1:1:0 20000:1:10:0 20000:10:10:0 1000:1:10:1}
log=$(mktemp /tmp/relayward-matrix.XXXX)

median() { sort -n | awk '{v[NR]=$1} END{if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
range() { sort -n | awk 'NR==1{lo=$1} {hi=$1} END{if (NR==0) print "-"; else if (lo==hi) print lo; else print lo "–" hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (b+0 > 0) printf "%.1f×", a/b; else print "-"}'; }

rows=()
for cell in $CELLS; do
  IFS=: read -r size rcpts sessions persist <<<"$cell"
  n=$MESSAGES; [ "$sessions" = 1 ] && n=$(( MESSAGES * 3 / 5 ))
  echo "== cell: $size bytes, $rcpts recipient(s), $sessions session(s), $([ "$persist" = 1 ] && echo long-lived || echo "a connection per message"), $n messages" | tee -a "$log"
  out=$(SIZE=$size RCPTS=$rcpts SESSIONS=$sessions PERSIST=$persist MESSAGES=$n ROUNDS=$ROUNDS bench/signing.sh 2>&1 | tee -a "$log")
  pick() { echo "$out" | awk -v r="$1" -v f="$2" '$1=="RESULT" && $2==r {print $f}'; }
  sign=$(pick signing 3 | median); unsigned=$(pick unsigned 3 | median)
  postfix=$(pick postfix 3 | median); opendkim=$(pick opendkim 3 | median)
  lat=$(echo "$out" | awk '$1=="LATENCY"{print $2 " / " $3 " (" int($4) " msg/s)"}')
  shape="$((size / 1000)) KB, $rcpts, $sessions"
  [ "$persist" = 1 ] && shape="$shape, long-lived"
  rows+=("| $shape | $(pick signing 3 | range) ($(pick signing 4 | range)) | $(pick unsigned 3 | range) ($(pick unsigned 4 | range)) | $(pick postfix 3 | range) | $(pick opendkim 3 | range) | $(ratio "$sign" "$postfix") | $(ratio "$sign" "$opendkim") | ${lat:--} | $(pick signing 5 | range) | $(echo "$out" | awk '$1=="RSA"{print $3}' | range) |")
  : "$unsigned"
done

echo
echo "$(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)$(grep -qw avx512ifma /proc/cpuinfo && echo ', AVX-512 IFMA' || echo ', no AVX-512 IFMA'); $ROUNDS rounds, medians for the ratios"
echo
echo "| size, recipients, sessions | Relayward signing msg/s (CPU ms/msg) | not signing msg/s (CPU ms/msg) | Postfix msg/s | Postfix + OpenDKIM msg/s | signing ÷ Postfix | signing ÷ Postfix + OpenDKIM | signed p50 / p99 ms at half of peak | PSS MiB | RSA-2048 ms (openssl speed) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "(every round's output: $log)"
