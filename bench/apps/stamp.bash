# shellcheck shell=bash
# Same probe as stamp.sh, but the timestamp is bash 5's $EPOCHREALTIME, read
# by the shell itself: no fork+exec of date before the stamp. Microseconds;
# every non-digit (the locale's decimal point) is dropped.
t=${EPOCHREALTIME//[!0-9]/}
echo "$$ ${t}000" > "$OUT/stamp.tmp" && mv "$OUT/stamp.tmp" "$OUT/stamp"
exec sleep 1000
