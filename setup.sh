#!/bin/sh
# Installs what orch and its test suite need on Debian 12 (only the packages
# that are missing, as root or through sudo) and builds it into ./build.
# Idempotent; says nothing when everything is already there and up to date.
#   ./setup.sh            build (RelWithDebInfo)
#   ./setup.sh --asan     build with AddressSanitizer + UBSan into ./build-asan
#   ./setup.sh --fuzz     install clang, build the libFuzzer targets into ./build-fuzz
#   ./setup.sh --lint     install luacheck and shellcheck (builds nothing)
set -eu
cd "$(dirname "$0")"

# Build: compiler, libraries. Specs: busted, and what they run besides orch:
# node and python3 (apps), curl, ss (iproute2), ps (procps), strace. lua-yaml:
# YAML ecosystem files (PM2's apps.yml). prometheus: a real scrape of /metrics (and promtool).
# chromium, chromium-driver, python3-selenium: the dashboard's spec drives a headless browser.
PACKAGES="gcc make cmake pkg-config libc6-dev luajit libluajit-5.1-dev libuv1-dev
lua-cjson-dev lua-luv-dev lua-yaml lua-busted procps zlib1g-dev
nodejs python3 curl iproute2 strace tmux prometheus
chromium chromium-driver python3-selenium"
mode=${1:-}
case "$mode" in
  "") ;;
  --asan) ;;
  --fuzz) PACKAGES="$PACKAGES clang" ;;
  --lint) PACKAGES="lua-check shellcheck" ;;
  *) echo "usage: ./setup.sh [--asan | --fuzz | --lint]" >&2; exit 2 ;;
esac

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh machine may have no package lists yet: update once on failure.
  # shellcheck disable=SC2086 # $missing is a list of words
  $SUDO apt-get install -y -q $missing >/tmp/orch-setup-apt.log 2>&1 ||
    { $SUDO apt-get update -q >>/tmp/orch-setup-apt.log 2>&1 &&
      $SUDO apt-get install -y -q $missing >>/tmp/orch-setup-apt.log 2>&1; } ||
    { cat /tmp/orch-setup-apt.log; echo "setup: apt-get failed" >&2; exit 1; }
fi

case "$mode" in
  --lint) exit 0 ;;
  --asan) dir=build-asan; flags="-DCMAKE_BUILD_TYPE=Debug -DORCH_SANITIZE=ON" ;;
  --fuzz) dir=build-fuzz; flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo -DORCH_FUZZ=ON -DCMAKE_C_COMPILER=clang" ;;
  *) dir=build; flags="-DCMAKE_BUILD_TYPE=RelWithDebInfo" ;;
esac
log=$(mktemp)
# shellcheck disable=SC2086 # $flags is a list of words
if ! { cmake -S . -B "$dir" $flags && cmake --build "$dir" -j2; } >"$log" 2>&1; then
  cat "$log"; rm -f "$log"; echo "setup: build failed" >&2; exit 1
fi
rm -f "$log"
