# Postfix's smtp-sink as the next hop of a benchmark, and how many messages it has counted.
# Sourced by bench/run.sh, bench/signing.sh and bench/cluster.sh; they set $SINK (address:port),
# $work (their temporary directory) and the array pids (what their cleanup kills).

start_sink() { # (re)starts the sink with a fresh count
  pkill -f "smtp-sink -u nobody -c $SINK" 2>/dev/null || true
  sleep 0.2
  smtp-sink -u nobody -c "$SINK" 4096 > "$work/sink.out" 2>&1 &
  pids+=($!)
  sleep 0.3
}
sink_count() { tr '\r' '\n' < "$work/sink.out" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || true; }
wait_sink() { # until the sink counted $1 messages (at most 600 s); prints seconds since $2
  local want=$1 t0=$2 n=0 deadline
  deadline=$(( $(date +%s) + 600 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    n=$(sink_count); n=${n:-0}
    if [ "$n" -ge "$want" ]; then
      echo "$(date +%s.%N) - $t0" | bc
      return 0
    fi
    sleep 0.01
  done
  echo "the sink counted $n of $want messages in 600 s: no figure for this run" >&2
  return 1
}
