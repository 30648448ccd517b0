#!/usr/bin/env bash
# Records that the database "runs" here. Writes only into demo.state_dir.
set -euo pipefail
sleep "$(read_attribute demo/delay 0)"
dir=$(read_attribute demo/state_dir)
mkdir -p -- "$dir"
printf 'database on %s\n' "$(hostname)" >"$dir/demo-database"
write_attribute demo/database/host "$CROWBAR_NODE"
echo "database recorded in $dir"
