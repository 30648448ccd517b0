#!/usr/bin/env bash
# Gives the node its crowbar name: the running hostname, and the hostname file
# (crowbar/access/hostname_file; an empty value leaves the file alone).
# Runs under crowbar's script jig: CROWBAR_NODE and the read_attribute helper come from it.
set -euo pipefail
: "${CROWBAR_NODE:?the script jig sets CROWBAR_NODE to the node name}"

file=$(read_attribute crowbar/access/hostname_file /etc/hostname)

if [ "$(hostname)" != "$CROWBAR_NODE" ]; then
    hostname "$CROWBAR_NODE"
    echo "hostname set to $CROWBAR_NODE"
fi

if [ -n "$file" ] && [ "$(cat "$file" 2>/dev/null || true)" != "$CROWBAR_NODE" ]; then
    printf '%s\n' "$CROWBAR_NODE" >"$file.crowbar-new"
    mv -f "$file.crowbar-new" "$file"
    echo "$file now holds $CROWBAR_NODE"
fi
write_attribute crowbar/access/hostname "$CROWBAR_NODE"
