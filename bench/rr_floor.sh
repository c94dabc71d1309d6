#!/usr/bin/env bash
# bench/rr_floor.sh [ROUNDS] [SECONDS]: the floor of round-robin balancing per
# connection on this machine (bench/rr_floor.c) beside orch's round-robin, in
# one run, rounds interleaved (default 5 rounds of 5 s each), the order rotated.
# Load: wrk -t1 -c50 -H "Connection: close" on loopback. Measured: CPU ns of
# every thread of the process that accepts and passes (/proc/PID/task/*/schedstat)
# during the wrk run, divided by wrk's requests: µs per connection; and the
# times those threads went to sleep (voluntary_ctxt_switches) per connection.
#   VARIANTS="epoll ack block uring orch" by default (bench/rr_floor.c's modes,
#   and orch); also epoll-lN / uring-lN (RR_LINGER_US=N: wake-ups batched).
#   SYSCALLS=1: then one more run per variant, counting system calls per
#   connection (perf stat -e syscalls:sys_enter_*), shown in its own table.
#   orch=PATH: another orch binary beside ORCH_BIN's (default build/orch),
#   each with its own daemon, e.g. VARIANTS="orch orch=/tmp/orch-old". PERF=1: perf record -g of
#   each variant's passer (orch: the daemon) in the last round ($TMP kept, path printed).
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-5}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/rr_floor.sh [ROUNDS] [SECONDS]" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ORCH=${ORCH_BIN:-$ROOT/build/orch}
read -r -a VARIANTS <<<"${VARIANTS:-epoll ack block uring orch}"
command -v wrk >/dev/null || { echo "bench/rr_floor.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }
TMP=$(mktemp -d /tmp/orch-rrfloor-XXXXXX)
FLOOR_PID="" HOMES=()
cleanup() {
  [[ -z $FLOOR_PID ]] || kill "$FLOOR_PID" 2>/dev/null || :
  local h
  for h in "${HOMES[@]}"; do ORCH_HOME=${h%%:*} "${h#*:}" kill >/dev/null 2>&1 || :; done
  if [[ -n ${PERF:-} ]]; then echo "perf data kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cc -std=c11 -O2 -Wall -Wextra -Werror -o "$TMP/rr_floor" "$ROOT/bench/rr_floor.c"
free_port() { local p=$1; while [[ -n $(ss -Htan "sport = :$p") ]]; do p=$((p + 1)); done; REPLY=$p; }
serves() { # port: answers within 30 s
  local i
  for ((i = 0; i < 300; i++)); do
    [[ $(curl -s --max-time 1 "http://127.0.0.1:$1/" 2>/dev/null) == hello ]] && return 0
    sleep 0.1
  done
  return 1
}
cpu_ns() { # pid: REPLY = ns its threads have run, SLEEPS = times they slept (voluntary switches)
  local f s t=0 w=0 k v
  for f in /proc/"$1"/task/*/schedstat; do if { read -r s _ <"$f"; } 2>/dev/null; then t=$((t + s)); fi; done
  for f in /proc/"$1"/task/*/status; do
    while read -r k v; do [[ $k != voluntary_ctxt_switches: ]] || w=$((w + v)); done <"$f" 2>/dev/null || :
  done
  REPLY=$t SLEEPS=$w
}

declare -A PORT=() PID=() # orch variant -> its port, its daemon's pid
for v in "${VARIANTS[@]}"; do
  [[ $v =~ ^orch(=(.+))?$ ]] || continue
  bin=${BASH_REMATCH[2]:-$ORCH}
  home=$TMP/home$((${#PORT[@]} + 1))
  free_port $((18700 + ${#PORT[@]} * 10)); PORT[$v]=$REPLY
  mkdir -p "$home"
  cat >"$home/rr.config.lua" <<EOF
return { apps = { { name = 'rr', script = '$ROOT/bench/apps/hello.js', instances = 2, exec_mode = 'cluster',
  balance = 'round-robin', env = { PORT = ${PORT[$v]} } } } }
EOF
  ORCH_HOME=$home "$bin" start "$home/rr.config.lua" >/dev/null
  HOMES+=("$home:$bin")
  serves "${PORT[$v]}" || { echo "$v round-robin does not answer on ${PORT[$v]}" >&2; exit 1; }
  read -r "PID[$v]" <"$home/daemon.pid"
done

up() { # variant: port and pid of its passer (an rr_floor started, or an orch daemon), warmed up
  local linger=0 mode=$1
  if [[ -n ${PORT[$1]:-} ]]; then
    port=${PORT[$1]} pid=${PID[$1]}
  else
    free_port 18750; port=$REPLY
    [[ $1 =~ ^(epoll|uring)-l([0-9]+)$ ]] && mode=${BASH_REMATCH[1]} linger=${BASH_REMATCH[2]}
    RR_LINGER_US=$linger "$TMP/rr_floor" "$mode" "$port" >"$TMP/$1.out" &
    FLOOR_PID=$! pid=$!
    serves "$port" || { echo "rr_floor $1 does not answer" >&2; exit 1; }
  fi
  wrk -t1 -c50 -d1s -H "Connection: close" "http://127.0.0.1:$port/" >/dev/null
}
down() { # variant: an rr_floor ends, an orch daemon stays
  if [[ -z ${PORT[$1]:-} ]]; then kill -TERM "$FLOOR_PID"; wait "$FLOOR_PID" || :; FLOOR_PID=""; fi
}

declare -A US RPS SL # variant -> space-separated samples
echo "bench/rr_floor.sh $ROUNDS x ${SECS}s, wrk -t1 -c50 -H 'Connection: close'; $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((r = 0; r < ROUNDS; r++)); do
  n=${#VARIANTS[@]}
  for ((k = 0; k < n; k++)); do
    v=${VARIANTS[$(((k + r) % n))]}
    up "$v"
    perfpid=""
    if [[ -n ${PERF:-} ]] && ((r == ROUNDS - 1)); then
      pname=${v//\//_}
      perf record -q -F 5000 -g -p "$pid" -o "$TMP/perf.${pname//=/_}.data" -- sleep "$SECS" >/dev/null 2>&1 &
      perfpid=$!
    fi
    cpu_ns "$pid"; c0=$REPLY w0=$SLEEPS
    out=$(wrk -t1 -c50 -d"$SECS"s -H "Connection: close" "http://127.0.0.1:$port/")
    cpu_ns "$pid"; c1=$REPLY w1=$SLEEPS
    [[ -z $perfpid ]] || wait "$perfpid" || :
    [[ $out =~ ([0-9]+)\ requests\ in ]] || { echo "wrk: $out" >&2; exit 1; }
    reqs=${BASH_REMATCH[1]}
    [[ $out =~ Requests/sec:[[:space:]]+([0-9.]+) ]]
    rps=${BASH_REMATCH[1]}
    [[ $out != *"Socket errors"* ]] || echo "  $v: $(grep 'Socket errors' <<<"$out")"
    us=$(awk -v d=$((c1 - c0)) -v n="$reqs" 'BEGIN { printf "%.2f", d / n / 1000 }')
    sl=$(awk -v d=$((w1 - w0)) -v n="$reqs" 'BEGIN { printf "%.2f", d / n }')
    US[$v]+="$us " RPS[$v]+="${rps%.*} " SL[$v]+="$sl "
    echo "  round $((r + 1)) $v: $us us/conn, $rps req/s, $sl sleeps/conn"
    down "$v"
  done
done
med() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { printf "%s (%s-%s)", (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2), a[1], a[NR] }'; }
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| variant | µs of CPU per connection, median (min-max) | requests/s | sleeps per connection |"
echo "|---|---|---|---|"
for v in "${VARIANTS[@]}"; do echo "| $v | $(med "${US[$v]}") | $(med "${RPS[$v]}") | $(med "${SL[$v]}") |"; done
[[ -n ${SYSCALLS:-} ]] || exit 0
# one more run each, not in the figures above: system calls per connection
# (perf stat on the syscall tracepoints, every thread of the passer)
CALLS=(accept4 sendmsg close recvmsg recvfrom epoll_wait epoll_ctl io_uring_enter)
ev=""
for c in "${CALLS[@]}"; do ev+="${ev:+,}syscalls:sys_enter_$c"; done
echo
hdr="| variant |" sep="|---|"
for c in "${CALLS[@]}"; do hdr+=" $c |" sep+="---|"; done
echo "$hdr requests/s |"
echo "$sep---|"
for v in "${VARIANTS[@]}"; do
  up "$v"
  perf stat -x, -e "$ev" -p "$pid" -o "$TMP/stat.txt" -- sleep "$SECS" 2>/dev/null &
  statpid=$!
  out=$(wrk -t1 -c50 -d"$SECS"s -H "Connection: close" "http://127.0.0.1:$port/")
  wait "$statpid" || :
  down "$v"
  [[ $out =~ ([0-9]+)\ requests\ in ]] || { echo "wrk: $out" >&2; exit 1; }
  reqs=${BASH_REMATCH[1]}
  [[ $out =~ Requests/sec:[[:space:]]+([0-9.]+) ]]
  row="| $v |"
  for c in "${CALLS[@]}"; do
    row+=$(awk -F, -v c="syscalls:sys_enter_$c" -v n="$reqs" '$3 == c { printf " %.2f |", $1 / n; f = 1 } END { if (!f) printf " - |" }' "$TMP/stat.txt")
  done
  echo "$row ${BASH_REMATCH[1]%.*} |"
done
