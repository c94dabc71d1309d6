#!/bin/sh
# Installs what orch needs on Debian 12 (only the packages that are missing,
# as root or through sudo) and builds it into ./build. Idempotent; says
# nothing when everything is already there and up to date.
#   ./setup.sh            build (RelWithDebInfo)
#   ./setup.sh --asan     build with AddressSanitizer + UBSan into ./build-asan
set -eu
cd "$(dirname "$0")"

PACKAGES="gcc make cmake pkg-config libc6-dev luajit libluajit-5.1-dev libuv1-dev
lua-cjson-dev lua-luv-dev lua-busted procps zlib1g-dev"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: update once on failure.
  $SUDO apt-get install -y -q $missing >/tmp/orch-setup-apt.log 2>&1 ||
    { $SUDO apt-get update -q >>/tmp/orch-setup-apt.log 2>&1 &&
      $SUDO apt-get install -y -q $missing >>/tmp/orch-setup-apt.log 2>&1; } ||
    { cat /tmp/orch-setup-apt.log; echo "setup: apt-get failed" >&2; exit 1; }
fi

dir=build; flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo"
if [ "${1:-}" = "--asan" ]; then dir=build-asan; flags="-DCMAKE_BUILD_TYPE=Debug -DORCH_SANITIZE=ON"; fi
log=$(mktemp)
if ! { cmake -S . -B "$dir" $flags && cmake --build "$dir" -j2; } >"$log" 2>&1; then
  cat "$log"; rm -f "$log"; echo "setup: build failed" >&2; exit 1
fi
rm -f "$log"
