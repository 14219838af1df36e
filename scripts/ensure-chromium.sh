#!/usr/bin/env bash
# Make sure a headless Chromium is available for the `browser` tests
# (tests/test_html_browser.py). Installs Debian's `chromium` package with
# apt-get when it is missing; does nothing when one is already on PATH.
#
# It only installs when it can: as root on a system with apt-get. Elsewhere it
# says what to do and exits 0, and the browser tests skip with that reason.
# Set BATCHGUARD_SKIP_CHROMIUM=1 to skip the install altogether.
set -euo pipefail

for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
        echo "ensure-chromium: found $(command -v "$name")"
        exit 0
    fi
done

if [ "${BATCHGUARD_SKIP_CHROMIUM:-0}" = "1" ]; then
    echo "ensure-chromium: BATCHGUARD_SKIP_CHROMIUM=1; browser tests will be skipped"
    exit 0
fi

if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no chromium, and cannot install it here (needs root and apt-get);" \
         "install your system's chromium package to run the browser tests" >&2
    exit 0
fi

echo "ensure-chromium: installing Debian's chromium package (a minute or two)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "ensure-chromium: installed $(command -v chromium)"
