#!/usr/bin/env bash
# Makes sure the Debian packages the tests run are installed. Runs as `pretest`:
#   chromium (+ fonts-dejavu-core)  /usr/bin/chromium      the browser tests (test/e2e/browser)
#   redis-server                    /usr/bin/redis-server  the Redis engine tests (test/helpers/redis.ts)
#   redis-tools                     /usr/bin/redis-cli     the same harness drives and checks Redis with it
#   nginx                           /usr/sbin/nginx        the tests behind a reverse proxy
# A no-op when all four binaries are there; else, as root, one `apt-get update` and one `apt-get install`
# of exactly the missing packages (CI runs as root; the only registries reachable are Debian's and npm's,
# so e.g. Playwright's own browser download cannot be used).
#
# Debian's redis-server and nginx packages start their service on install (port 6379 and 80), which
# would leave daemons running that no test asked for. A policy-rc.d that answers 101 ("action
# forbidden") keeps invoke-rc.d and deb-systemd-invoke from starting them; it is there only for the
# length of the install, and a policy-rc.d that was there before (Docker images ship one) is put back.
#
# ENSURE_PACKAGES_ASSUME_MISSING="pkg ..." (or "all") treats those packages as missing even when their
# binary exists: a way to run the install path on a machine that has everything (installing an
# installed package is a no-op for apt).
set -euo pipefail

me=ensure-packages
assume=" ${ENSURE_PACKAGES_ASSUME_MISSING:-} "
missing=()
# need BINARY PACKAGE...: the packages are missing when BINARY is not there (or one is assumed so).
need() {
  local binary=$1 package
  shift
  if [ ! -x "$binary" ] || [ "$assume" = " all " ]; then missing+=("$@"); return; fi
  for package in "$@"; do
    if [[ "$assume" == *" $package "* ]]; then missing+=("$@"); return; fi
  done
}
need /usr/bin/chromium chromium fonts-dejavu-core
need /usr/bin/redis-server redis-server
need /usr/bin/redis-cli redis-tools
need /usr/sbin/nginx nginx
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi

if [ "$(id -u)" != 0 ]; then
  echo "$me: missing Debian packages: ${missing[*]}; this is not root, so install them by hand:" >&2
  echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi

policy=/usr/sbin/policy-rc.d
saved=""
restore_policy() {
  rm -f "$policy"
  if [ -n "$saved" ]; then mv -f "$saved" "$policy"; fi
}
if [ -e "$policy" ] || [ -L "$policy" ]; then
  saved=$(mktemp "$policy.ensure-packages.XXXXXX")
  mv -f "$policy" "$saved"
fi
trap restore_policy EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
printf '#!/bin/sh\n# Written by ensure-packages.sh for the length of one apt-get install: start no service.\nexit 101\n' >"$policy"
chmod 755 "$policy"

echo "$me: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
restore_policy
trap - EXIT

# In case a service was started all the same (an init system that ignores policy-rc.d): stop the daemon
# of each service package just installed, found by the pid file Debian's configuration gives it.
stop_service() {
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill -0 "$pid" 2>/dev/null || return 0
  echo "$me: stopping the $name service that the install started" >&2
  service "$name" stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
}
for package in "${missing[@]}"; do
  case $package in
    redis-server) stop_service redis-server /run/redis/redis-server.pid ;;
    nginx) stop_service nginx /run/nginx.pid ;;
  esac
done

status=0
for binary in /usr/bin/chromium /usr/bin/redis-server /usr/bin/redis-cli /usr/sbin/nginx; do
  if [ ! -x "$binary" ]; then
    echo "$me: $binary is still missing after the install" >&2
    status=1
  fi
done
[ $status -eq 0 ] || exit $status
echo "$me: installed ${missing[*]}" >&2
