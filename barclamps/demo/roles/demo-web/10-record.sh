#!/usr/bin/env bash
# Records that the web front "runs" here, in front of the app on this node (which ran
# first: demo-web requires demo-app). Writes only into demo.state_dir.
set -euo pipefail
sleep "$(read_attribute demo/delay 0)"
dir=$(read_attribute demo/state_dir)
test -f "$dir/demo-app" || { echo "no demo-app on this node" >&2; exit 1; }
printf 'web on %s\n' "$(hostname)" >"$dir/demo-web"
echo "web recorded in $dir"
