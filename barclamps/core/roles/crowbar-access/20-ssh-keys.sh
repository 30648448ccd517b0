#!/usr/bin/env bash
# Lets the admin's SSH keys log in as root: appends every key of crowbar.access.keys that the
# authorized keys file (crowbar.access.authorized_keys_file) lacks. Keys added by hand stay.
set -euo pipefail
: "${CROWBAR_DATA:?the script jig sets CROWBAR_DATA to the role data file}"

file=$(jq -r '.crowbar.access.authorized_keys_file // "/root/.ssh/authorized_keys"' "$CROWBAR_DATA")
mapfile -t keys < <(jq -r '(.crowbar.access.keys // [])[] | select(type == "string" and . != "")' "$CROWBAR_DATA")

dir=$(dirname "$file")
if [ ! -d "$dir" ]; then
    mkdir -p "$dir"
    chmod 700 "$dir"
fi
if [ ! -e "$file" ]; then
    install -m 600 /dev/null "$file"
fi
# A last line without its newline would swallow the first key appended.
if [ -s "$file" ] && [ -n "$(tail -c 1 "$file")" ]; then
    echo >>"$file"
fi

added=0
for key in "${keys[@]}"; do
    if ! grep -qxF -- "$key" "$file"; then
        printf '%s\n' "$key" >>"$file"
        added=$((added + 1))
    fi
done
echo "$file: $added key(s) added, ${#keys[@]} wanted"
