# crowbar script helpers: how a role's scripts read their data and return wall data.
# The runner sources this file and exports the functions to every script.
#
# Attribute paths are slash-separated keys, like attrib maps: `crowbar/access/keys`. A
# numeric segment indexes an array (`crowbar/access/keys/0`). Values never pass through a
# command line: paths and values go to jq as --arg/--argjson, and data comes from files.
#
#   read_attribute PATH [DEFAULT]   prints the value: a string as it is, anything else as
#                                   compact JSON; when unset (or null) prints DEFAULT, or
#                                   fails (status 1) without a default
#   read_attribute --json PATH      prints the value as JSON (fails when unset)
#   has_attribute PATH              status 0 when set (and not null), 1 otherwise
#   get_keys PATH                   the keys of an object (sorted) or the indexes of an
#                                   array, one per line
#   write_attribute PATH VALUE      sets PATH in the wall to VALUE as a JSON *string*,
#                                   whatever it looks like ("42", "true", "cafe" stay strings)
#   write_attribute --json PATH JSON  sets PATH to the JSON value JSON (fails if invalid)
#
# Command substitution drops trailing newlines: `v=$(read_attribute a/b)` loses those of
# the value; use `read_attribute --json` when they matter.

_crowbar_usage() {
    printf '%s\n' "$1" >&2
    return 2
}

read_attribute() {
    local json=false
    if [ "${1-}" = --json ]; then
        json=true
        shift
    fi
    [ $# -ge 1 ] && [ -n "$1" ] || { _crowbar_usage "usage: read_attribute [--json] PATH [DEFAULT]"; return; }
    local status=0
    jq -e -r --arg path "$1" --argjson json "$json" '
        def cget($p): reduce ($p | split("/"))[] as $k (.;
            if type == "object" then .[$k]
            elif type == "array" and ($k | test("^[0-9]+$")) then .[$k | tonumber]
            else null end);
        cget($path) | if . == null then empty
                      elif $json or type != "string" then tojson
                      else . end' "$CROWBAR_DATA" || status=$?
    case $status in
        0) return 0 ;;
        4) if [ $# -ge 2 ] && ! $json; then
               printf '%s\n' "$2"
               return 0
           fi
           printf 'read_attribute: %s is not set\n' "$1" >&2
           return 1 ;;
        *) printf 'read_attribute: cannot read %s (jq status %d)\n' "$1" "$status" >&2
           return "$status" ;;
    esac
}

has_attribute() {
    [ $# -eq 1 ] && [ -n "$1" ] || { _crowbar_usage "usage: has_attribute PATH"; return; }
    jq -e --arg path "$1" '
        def cget($p): reduce ($p | split("/"))[] as $k (.;
            if type == "object" then .[$k]
            elif type == "array" and ($k | test("^[0-9]+$")) then .[$k | tonumber]
            else null end);
        cget($path) != null' "$CROWBAR_DATA" >/dev/null
}

get_keys() {
    [ $# -eq 1 ] && [ -n "$1" ] || { _crowbar_usage "usage: get_keys PATH"; return; }
    jq -r --arg path "$1" '
        def cget($p): reduce ($p | split("/"))[] as $k (.;
            if type == "object" then .[$k]
            elif type == "array" and ($k | test("^[0-9]+$")) then .[$k | tonumber]
            else null end);
        cget($path) | if type == "object" then keys[]
                      elif type == "array" then range(length)
                      else empty end' "$CROWBAR_DATA"
}

write_attribute() {
    local kind=--arg
    if [ "${1-}" = --json ]; then
        kind=--argjson
        shift
    fi
    [ $# -eq 2 ] && [ -n "$1" ] || { _crowbar_usage "usage: write_attribute [--json] PATH VALUE"; return; }
    local tmp
    tmp=$(mktemp "$CROWBAR_WALL.XXXXXX") || return
    if jq --arg path "$1" "$kind" value "$2" \
        'setpath($path | split("/"); $value)' "$CROWBAR_WALL" >"$tmp"; then
        mv -f -- "$tmp" "$CROWBAR_WALL"
    else
        local status=$?
        rm -f -- "$tmp"
        printf 'write_attribute: cannot set %s\n' "$1" >&2
        return "$status"
    fi
}

export -f _crowbar_usage read_attribute has_attribute get_keys write_attribute
