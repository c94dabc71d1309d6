#!/bin/sh
# The app of bench/run's log capture rows: writes the file $1 to stdout, then
# stays up, so that the tool reads the pipe to its end without a race at exit.
cat "$1"
exec sleep 1000
