//! What nodes send, made fit to store. PostgreSQL refuses NUL in `text` (and the escape
//! `\u0000` in `jsonb`), so a single NUL byte anywhere in a runlog or a wall would make the
//! whole write fail. NULs become U+FFFD, the replacement character that lossy UTF-8
//! decoding already puts where a node's bytes are not text; everything else is kept.
//! Sizes are bounded where the bytes are read (the SSH output limit, the HTTP body limit)
//! and, for runlogs, again when they are kept.

use serde_json::{Map, Value};

/// `text` with every NUL replaced.
pub fn text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// `value` with every NUL in its strings and keys replaced, at any depth.
pub fn json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(text(s)),
        Value::Array(items) => Value::Array(items.into_iter().map(json).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, value)| (text(key), json(value)))
                .collect::<Map<String, Value>>(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nuls_become_replacement_characters() {
        assert_eq!(text("A=1\0B=2".into()), "A=1\u{FFFD}B=2");
        assert_eq!(text("plain".into()), "plain");
        let wall = serde_json::from_str::<Value>(
            r#"{"a\u0000": ["x\u0000y", {"k": "\u0000"}], "n": 1, "ok": true}"#,
        )
        .unwrap();
        assert_eq!(
            json(wall),
            json!({"a\u{FFFD}": ["x\u{FFFD}y", {"k": "\u{FFFD}"}], "n": 1, "ok": true})
        );
    }

    #[test]
    fn nothing_else_changes() {
        let wall = json!({"a": ["x", {"k": "é ☃ \t\n"}], "n": 1.5, "none": null});
        assert_eq!(json(wall.clone()), wall);
    }
}
