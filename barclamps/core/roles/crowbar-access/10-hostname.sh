#!/usr/bin/env bash
# Gives the node its crowbar name: the running hostname, and the hostname file
# (crowbar.access.hostname_file; an empty value leaves the file alone).
set -euo pipefail
: "${CROWBAR_NODE:?the script jig sets CROWBAR_NODE to the node name}"
: "${CROWBAR_DATA:?the script jig sets CROWBAR_DATA to the role data file}"

file=$(jq -r '.crowbar.access.hostname_file // "/etc/hostname"' "$CROWBAR_DATA")

if [ "$(hostname)" != "$CROWBAR_NODE" ]; then
    hostname "$CROWBAR_NODE"
    echo "hostname set to $CROWBAR_NODE"
fi

if [ -n "$file" ] && [ "$(cat "$file" 2>/dev/null || true)" != "$CROWBAR_NODE" ]; then
    printf '%s\n' "$CROWBAR_NODE" >"$file.crowbar-new"
    mv -f "$file.crowbar-new" "$file"
    echo "$file now holds $CROWBAR_NODE"
fi
