# shellcheck shell=sh
# Restart-latency probe for bench/foundation.lua (run by orch under sh).
# Writes "PID NANOSECONDS" as soon as it starts, then stays up like a
# long-running app. The rename makes the write atomic, so the reader never
# sees a partial line; exec keeps $$ the pid orch watches (and we SIGKILL).
# The timestamp costs a fork+exec of date, as in the PM2 reference figure.
echo "$$ $(date +%s%N)" > "$OUT/stamp.tmp" && mv "$OUT/stamp.tmp" "$OUT/stamp"
exec sleep 1000
