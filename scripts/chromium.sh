#!/usr/bin/env bash
# Make sure Debian's chromium is installed: the browser tests drive it with Playwright (no download).
set -euo pipefail

chromium=/usr/bin/chromium

[ -x "$chromium" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian's chromium for the browser tests"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
else
  echo "The browser tests need Debian's chromium at $chromium: run 'sudo apt-get install chromium'" >&2
  exit 1
fi
