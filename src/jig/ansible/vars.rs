//! A noderole's input as Ansible variables: its top-level keys, each value written as YAML
//! whose every string carries Ansible's `!unsafe` tag, so that no value is ever templated
//! (a value `{{ lookup('pipe', 'id') }}` stays those characters: data, not code).
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

/// The host's variables file (YAML) and the keys left out.
pub fn host_vars(input: &Value) -> (String, Vec<String>) {
    let mut yaml = String::new();
    let mut dropped = Vec::new();
    if let Value::Object(map) = input {
        for (key, value) in map {
            if !allowed(key) {
                dropped.push(key.clone());
                continue;
            }
            yaml.push_str(key);
            yaml.push_str(": ");
            write_value(&mut yaml, value);
            yaml.push('\n');
        }
    }
    if yaml.is_empty() {
        yaml.push_str("{}\n");
    }
    (yaml, dropped)
}

/// JSON as a YAML flow value. JSON's double-quoted strings are YAML double-quoted strings
/// (same escapes), so only strings need their tag.
fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::String(text) => {
            out.push_str("!unsafe ");
            out.push_str(&Value::String(text.clone()).to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

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
            "crowbar": {"node": {"name": "n1"}},
        });
        let (yaml, dropped) = host_vars(&input);
        assert_eq!(
            yaml,
            "app: {\"n\": null, \"name\": !unsafe \"{{ lookup('pipe', 'id') }}\", \"on\": true, \
             \"ports\": [80, !unsafe \"x\"]}\ncrowbar: {\"node\": {\"name\": !unsafe \"n1\"}}\n"
        );
        let mut dropped = dropped;
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
    }

    #[test]
    fn escapes_survive() {
        let (yaml, _) = host_vars(&json!({"s": "a\"b\\c\nd\u{1}é"}));
        assert_eq!(yaml, "s: !unsafe \"a\\\"b\\\\c\\nd\\u0001é\"\n");
        assert_eq!(host_vars(&json!({})).0, "{}\n");
    }
}
