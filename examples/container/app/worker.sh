#!/bin/sh
# A background worker: a line every 10 s. SIGINT (orch's default
# kill_signal) or SIGTERM ends it cleanly, with what it started (a
# background job ignores SIGINT: SIGTERM to its whole process group), then
# exit 0.
stop() {
  echo "worker: stopping, bye"
  trap '' TERM
  kill -TERM 0
  exit 0
}
trap stop INT TERM
n=0
while :; do
  n=$((n + 1))
  echo "job $n done"
  sleep 10 &
  wait $!
done
