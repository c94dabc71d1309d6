#!/usr/bin/env bash
# bench/keepalive.sh [ROUNDS]: keep-alive requests/s of the same Node app,
# alternating the targets round by round (default 8 rounds of 5 s each):
# PM2 -i 2, orch round-robin, orch shared (2 instances each) and a plain node.
# bench/run takes 3 runs of 10 s; keep-alive figures on a shared 2-core VM vary
# by +-20 % from run to run, so this one takes more, shorter samples, all
# four targets under the same conditions. Needs wrk and node; PM2 is installed
# from npm into bench/run's cache (~/.cache/orch-bench/pm2) unless $PM2 names a pm2 binary.
set -euo pipefail
ROUNDS=${1:-8}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "usage: bench/keepalive.sh [ROUNDS] (a positive number, not '$ROUNDS')" >&2; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ORCH=${ORCH_BIN:-$ROOT/build/orch}
APP=$ROOT/bench/apps/hello.js
TMP=$(mktemp -d /tmp/orch-keepalive-XXXXXX)
export PM2_HOME=$TMP/pm2 ORCH_HOME=$TMP/orch
NODE_PID=""
cleanup() {
  "$PM2" kill >/dev/null 2>&1 || :
  "$ORCH" kill >/dev/null 2>&1 || :
  [[ -z $NODE_PID ]] || kill "$NODE_PID" 2>/dev/null || :
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${PM2:-} ]]; then # bench/run's cache of PM2, installed there once
  CACHE=${ORCH_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/orch-bench}/pm2
  PM2=$CACHE/node_modules/.bin/pm2
  if [[ ! -x $PM2 ]]; then
    rm -rf "$CACHE.new" && mkdir -p "$CACHE.new"
    npm install --prefix "$CACHE.new" --no-audit --no-fund pm2 >"$TMP/npm.log" 2>&1 || { cat "$TMP/npm.log"; exit 1; }
    rm -rf "$CACHE" && mv "$CACHE.new" "$CACHE"
  fi
fi
cat >"$TMP/ecosystem.config.lua" <<EOF
return { apps = {
  { name = 'rr', script = '$APP', exec_mode = 'cluster', instances = 2, balance = 'round-robin', env = { PORT = 18101 } },
  { name = 'shared', script = '$APP', exec_mode = 'cluster', instances = 2, balance = 'shared', env = { PORT = 18102 } },
} }
EOF
PORT=18100 "$PM2" start "$APP" -i 2 --name hello >/dev/null
"$ORCH" start "$TMP/ecosystem.config.lua" >/dev/null
PORT=18103 HOST=127.0.0.1 node "$APP" &
NODE_PID=$!
for port in 18100 18101 18102 18103; do # every target answers before the first round
  until curl -sf "http://127.0.0.1:$port/" >/dev/null; do read -rt 0.1 <> <(:) || :; done
done

declare -A samples
for ((r = 1; r <= ROUNDS; r++)); do
  for target in pm2:18100 orch-rr:18101 orch-shared:18102 node:18103; do
    rps=$(wrk -t1 -c50 -d5s "http://127.0.0.1:${target#*:}/" | awk '/Requests\/sec/ {print int($2)}')
    samples[${target%%:*}]+="$rps "
  done
done
echo "keep-alive requests/s, wrk -t1 -c50, $ROUNDS alternating rounds of 5 s: median (min-max)"
for name in pm2 orch-rr orch-shared node; do
  read -ra s <<<"$(tr ' ' '\n' <<<"${samples[$name]}" | sort -n | tr '\n' ' ')"
  n=${#s[@]}
  echo "$name $(((s[(n - 1) / 2] + s[n / 2]) / 2)) (${s[0]}-${s[n - 1]})"
done
