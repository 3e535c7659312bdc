#!/usr/bin/env bash
# Look at a report the way a person does: render it in headless Chromium (Debian's `chromium` package) and save a
# screenshot. Offline: Chromium's network features are off, and the page itself loads nothing.
#   bash tools/report_screenshot.sh outputs/demo/report.html [out.png] [width] [height]
set -euo pipefail
HTML="${1:?usage: tools/report_screenshot.sh REPORT.html [OUT.png] [WIDTH] [HEIGHT]}"
OUT="${2:-${HTML%.html}.png}"
WIDTH="${3:-1366}"
HEIGHT="${4:-2400}"
CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
[ -n "$CHROMIUM" ] || { echo "tools/report_screenshot.sh: no chromium on PATH (apt-get install chromium), or set CHROMIUM" >&2; exit 1; }
[ -f "$HTML" ] || { echo "tools/report_screenshot.sh: $HTML does not exist; write it with python -m unimiss_monai report RUN_DIR" >&2; exit 1; }
PROFILE="$(mktemp -d)"
trap 'rm -rf "$PROFILE"' EXIT
URL="file://$(cd "$(dirname "$HTML")" && pwd)/$(basename "$HTML")"
OUT_ABS="$(cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")"
# written beside the profile first: a picture already at OUT (an earlier run's) must not pass for this run's, and
# OUT is replaced only by a complete screenshot
SHOT="$PROFILE/screenshot.png"
status=0
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$PROFILE/user-data" \
    --screenshot="$SHOT" --window-size="$WIDTH,$HEIGHT" "$URL" >/dev/null 2>&1 || status=$?
[ "$status" -eq 0 ] || { echo "tools/report_screenshot.sh: chromium failed (exit status $status) on $HTML" >&2; exit 1; }
[ -s "$SHOT" ] || { echo "tools/report_screenshot.sh: chromium wrote no screenshot" >&2; exit 1; }
mv -f "$SHOT" "$OUT_ABS.tmp"
mv -f "$OUT_ABS.tmp" "$OUT_ABS"
echo "$OUT_ABS"
