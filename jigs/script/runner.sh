#!/usr/bin/env bash
# crowbar's script jig, node side: runs one role's scripts on this node.
#
# The daemon ships a fresh temporary directory (given as $1) holding this runner, the
# helper library lib.sh, the run's frozen input data input.json, the node's and role's
# names in the files node and role, and the role's scripts in scripts/, then runs `bash runner.sh DIR` as root. The runner
#   - runs every file of scripts/ in name order (C collation) with `bash -e` (errexit),
#     stdin from /dev/null, working directory DIR, the helpers of lib.sh available as
#     functions, and CROWBAR_NODE, CROWBAR_ROLE, CROWBAR_DATA, CROWBAR_WALL, CROWBAR_DIR set;
#   - stops at the first script that fails and exits with its status;
#   - prints what the scripts printed (stdout and stderr, interleaved) on its stderr, the
#     last CROWBAR_LOG_LIMIT bytes of it, saying how much was cut;
#   - on success prints the wall (the JSON object the scripts built with write_attribute) on
#     its stdout, and nothing else ever goes there;
#   - removes DIR whatever happens.
# No value from the input data is ever part of a command line: scripts reach their data
# only through the helpers, which pass it to jq as arguments.
set -u
dir=${1:?usage: runner.sh DIR}
trap 'cd / && rm -rf -- "$dir"' EXIT
# fd 3 keeps the real stdout for the wall; everything else goes to stderr.
exec 3>&1 1>&2 </dev/null
export LC_ALL=C
limit=${CROWBAR_LOG_LIMIT:-65536}

if ! command -v jq >/dev/null 2>&1; then
    echo "crowbar: jq is not installed on this node; the script jig needs it"
    exit 97
fi

export CROWBAR_DIR=$dir
export CROWBAR_DATA=$dir/input.json
export CROWBAR_WALL=$dir/wall.json
export CROWBAR_LIB=$dir/lib.sh
# plain files written by the daemon (validated names), read without starting a process
CROWBAR_NODE=$(<"$dir/node") || exit 96
CROWBAR_ROLE=$(<"$dir/role") || exit 96
export CROWBAR_NODE CROWBAR_ROLE
printf '{}\n' >"$CROWBAR_WALL"
# shellcheck source=lib.sh
. "$CROWBAR_LIB"

log=$dir/output.log
: >"$log"
status=0
cd "$dir" || exit 96
for script in "$dir"/scripts/*; do
    [ -f "$script" ] || continue
    name=${script##*/}
    printf '== %s\n' "$name" >>"$log"
    bash -e -- "$script" >>"$log" 2>&1
    status=$?
    if [ "$status" -ne 0 ]; then
        printf '== %s failed with exit status %d\n' "$name" "$status" >>"$log"
        break
    fi
done

size=$(stat -c %s "$log")
if [ "$size" -gt "$limit" ]; then
    printf '[%d earlier bytes of output cut]\n' "$((size - limit))"
    tail -c "$limit" "$log"
else
    cat "$log"
fi

# the daemon checks that the wall is a JSON object
if [ "$status" -eq 0 ]; then
    printf '%s\n' "$(<"$CROWBAR_WALL")" >&3
fi
exit "$status"
