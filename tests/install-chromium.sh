#!/usr/bin/env sh
# Debian's Chromium for the browser tests of the results page (tests/service/test_ui.py drives
# /usr/bin/chromium with Playwright; no browser is downloaded).
set -e
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
$SUDO apt-get install -y --no-install-recommends chromium \
  || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium; }
