#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian: apt-get install chromium) to a PNG, to see
# the report as people do: the plots' axes, legends and tables. Usage:
#   bash scripts/report-screenshot.sh RUN_DIR [OUT.png]   (default RUN_DIR/report.png)
set -euo pipefail
run=${1:?usage: report-screenshot.sh RUN_DIR [OUT.png]}
out=${2:-$run/report.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium: apt-get install chromium" >&2; exit 1; }
[ -f "$run/report.html" ] || { echo "$run has no report.html" >&2; exit 1; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=820,1900 \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$run/report.html")" 2>/dev/null
echo "$out"
