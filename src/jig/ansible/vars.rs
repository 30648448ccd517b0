//! A noderole's input as Ansible variables: its top-level keys, written as a JSON host-vars
//! file whose every string is wrapped as Ansible's unsafe text
//! (`{"__ansible_unsafe": "..."}`), so that no value is ever templated (a value
//! `{{ lookup('pipe', 'id') }}` stays those characters: data, not code) and every string
//! stays a string. (YAML's `!unsafe` tag would not do: Ansible reads a tagged scalar as if
//! unquoted, so a MAC address becomes a number and `yes` a boolean.)
//!
//! Keys Ansible gives a meaning of its own are left out and named in the runlog: a
//! variable may not set how Ansible connects (`ansible_*`: `ansible_ssh_common_args` could
//! run a program on crowbar's machine) nor shadow what Ansible itself provides
//! (`hostvars`, `inventory_hostname`, ...).

use serde_json::Value;

/// Names Ansible provides itself; a variable of that name would shadow or confuse them.
const RESERVED: &[&str] = &[
    "environment",
    "group_names",
    "groups",
    "hostvars",
    "inventory_dir",
    "inventory_file",
    "inventory_hostname",
    "inventory_hostname_short",
    "item",
    "omit",
    "play_hosts",
    "playbook_dir",
    "role_name",
    "role_names",
    "role_path",
    "vars",
];

/// Whether `name` may become a play variable.
pub fn allowed(name: &str) -> bool {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    identifier && !name.to_ascii_lowercase().starts_with("ansible_") && !RESERVED.contains(&name)
}

/// The host's variables file (`host_vars/<node>.json`) and the keys left out.
pub fn host_vars(input: &Value) -> (String, Vec<String>) {
    let mut vars = serde_json::Map::new();
    let mut dropped = Vec::new();
    if let Value::Object(map) = input {
        for (key, value) in map {
            if allowed(key) {
                vars.insert(key.clone(), unsafe_strings(value));
            } else {
                dropped.push(key.clone());
            }
        }
    }
    (Value::Object(vars).to_string(), dropped)
}

/// The value with every string wrapped as unsafe text (keys are never templated).
fn unsafe_strings(value: &Value) -> Value {
    match value {
        Value::String(text) => serde_json::json!({ UNSAFE: text }),
        Value::Array(items) => Value::Array(items.iter().map(unsafe_strings).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| (key.clone(), unsafe_strings(item)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// How Ansible's JSON decoder recognises a string it must never template.
const UNSAFE: &str = "__ansible_unsafe";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_string_is_unsafe_and_connection_settings_stay_out() {
        let input = json!({
            "app": {"name": "{{ lookup('pipe', 'id') }}", "ports": [80, "x"], "on": true, "n": null},
            "ansible_ssh_common_args": "-o ProxyCommand=touch /tmp/x",
            "ANSIBLE_host": "h",
            "hostvars": {},
            "2bad": 1,
            "with-dash": 1,
            "crowbar": {"node": {"mac": "52:54:00:12:34:56"}},
        });
        let (text, mut dropped) = host_vars(&input);
        let vars: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            vars,
            json!({
                "app": {"name": {UNSAFE: "{{ lookup('pipe', 'id') }}"}, "ports": [80, {UNSAFE: "x"}],
                        "on": true, "n": null},
                "crowbar": {"node": {"mac": {UNSAFE: "52:54:00:12:34:56"}}},
            })
        );
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "2bad",
                "ANSIBLE_host",
                "ansible_ssh_common_args",
                "hostvars",
                "with-dash"
            ]
        );
        assert_eq!(host_vars(&json!({})).0, "{}");
    }
}
