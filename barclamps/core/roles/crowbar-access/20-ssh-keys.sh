#!/usr/bin/env bash
# Lets the admin's SSH keys log in as root: appends every key of crowbar/access/keys that the
# authorized keys file (crowbar/access/authorized_keys_file) lacks. Keys added by hand stay.
# Runs under crowbar's script jig: the read_attribute and get_keys helpers come from it.
set -euo pipefail

file=$(read_attribute crowbar/access/authorized_keys_file /root/.ssh/authorized_keys)
keys=()
while IFS= read -r index; do
    key=$(read_attribute "crowbar/access/keys/$index")
    if [ -n "$key" ] && [[ "$key" != *$'\n'* ]]; then
        keys+=("$key")
    fi
done < <(get_keys crowbar/access/keys)

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
write_attribute --json crowbar/access/keys_added "$added"
