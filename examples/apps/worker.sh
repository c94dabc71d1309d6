#!/bin/sh
# Works for a few seconds, then crashes (exit 3) so orch restarts it.
echo "worker $ORCH_INSTANCE started (pid $$)"
i=0
while [ $i -lt $((3 + ORCH_INSTANCE * 2)) ]; do
  i=$((i + 1))
  echo "worker $ORCH_INSTANCE: job $i done"
  sleep 1
done
echo "worker $ORCH_INSTANCE: simulated crash" >&2
exit 3
