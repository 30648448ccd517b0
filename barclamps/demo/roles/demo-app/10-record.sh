#!/usr/bin/env bash
# Records that the app "runs" here and which database it would use (the wall of
# demo-database, handed down by the annealer). Writes only into demo.state_dir.
set -euo pipefail
sleep "$(read_attribute demo/delay 0)"
dir=$(read_attribute demo/state_dir)
database=$(read_attribute demo/database/host unknown)
mkdir -p -- "$dir"
printf 'app on %s using the database on %s\n' "$(hostname)" "$database" >"$dir/demo-app"
echo "app recorded in $dir"
