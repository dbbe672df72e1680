#!/usr/bin/env bash
# Installs the headless browser the browser tests drive: Debian's `chromium` and
# `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver). Does nothing when both
# are already there; safe to run again. Without root or apt-get it only says so: the
# browser tests then skip loudly (or fail under THREADLINE_REQUIRE_SERVICES=1).
set -u

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: apt-get not found; install chromium and chromium-driver by hand" >&2
  exit 1
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo -n)
  else
    echo "browser: not root and no sudo; install chromium and chromium-driver by hand" >&2
    exit 1
  fi
fi
echo "browser: installing chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq >/dev/null 2>&1 ||
  echo "browser: apt-get update failed; trying the install anyway" >&2
if "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver \
  >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "browser: chromium and chromedriver installed"
else
  echo "browser: could not install chromium and chromium-driver" >&2
  exit 1
fi
