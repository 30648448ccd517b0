//! Noderole data: deep merging of layers, slash-separated attrib paths (SEMANTICS.md §8),
//! and the content hash that tells whether two pieces of data are equal (snapshots, run
//! inputs).

use serde_json::{Map, Value};
use utoipa::openapi::{
    Ref, RefOr,
    schema::{AnyOfBuilder, ObjectBuilder, Schema, Type},
};

/// The OpenAPI schemas of data: a JSON object, and any JSON value inside one. No string or
/// key holds a NUL, at any depth (`jsonb` cannot store one); the API's document defines them
/// (`http::api::conventions`), bodies refer to them through the functions below.
pub const JSON_OBJECT: &str = "JsonObject";
pub const JSON_VALUE: &str = "JsonValue";

/// Data: a JSON object (`#[schema(schema_with = object_schema)]`).
pub fn object_schema() -> RefOr<Schema> {
    Ref::from_schema_name(JSON_OBJECT).into()
}

/// Data or `null`.
pub fn object_or_null_schema() -> Schema {
    AnyOfBuilder::new()
        .item(object_schema())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .into()
}

/// Any JSON value (an attrib's value).
pub fn value_schema() -> RefOr<Schema> {
    Ref::from_schema_name(JSON_VALUE).into()
}

/// Sha-256 over the canonical JSON text (object keys sorted): equal data, equal hash. A
/// snapshot's content and a run's input are compared by it.
pub fn content_hash(content: &Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(content.to_string().as_bytes()))
}

/// Merges `overlay` into `base`: objects merge key by key, recursively; anything else in
/// `overlay` replaces what `base` had (later layers win).
pub fn deep_merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => deep_merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// Merges layers in order into a new object.
pub fn layered<'a>(layers: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut out = Value::Object(Map::new());
    for layer in layers {
        deep_merge(&mut out, layer);
    }
    out
}

/// The value at `a/b/c` in `data`, if any.
pub fn get_path<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/')
        .filter(|k| !k.is_empty())
        .try_fold(data, |v, key| v.get(key))
}

/// Sets `a/b/c` in `data`, creating objects on the way (replacing non-objects).
pub fn set_path(data: &mut Value, path: &str, value: Value) {
    let keys: Vec<&str> = path.split('/').filter(|k| !k.is_empty()).collect();
    let Some((last, parents)) = keys.split_last() else {
        *data = value;
        return;
    };
    let mut cursor = data;
    for key in parents {
        if !cursor.is_object() {
            *cursor = Value::Object(Map::new());
        }
        cursor = cursor
            .as_object_mut()
            .expect("made an object above")
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cursor.is_object() {
        *cursor = Value::Object(Map::new());
    }
    cursor
        .as_object_mut()
        .expect("made an object above")
        .insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn later_layers_win_and_objects_merge_deeply() {
        let merged = layered([
            &json!({"test": {"delay": 0, "fail": false}, "keep": 1}),
            &json!({"test": {"delay": 3}}),
            &json!({"test": {"fail": true}, "list": [1]}),
        ]);
        assert_eq!(
            merged,
            json!({"test": {"delay": 3, "fail": true}, "keep": 1, "list": [1]})
        );
    }

    #[test]
    fn scalars_and_arrays_replace() {
        let mut base = json!({"a": [1, 2], "b": {"c": 1}});
        deep_merge(&mut base, &json!({"a": [3], "b": 5}));
        assert_eq!(base, json!({"a": [3], "b": 5}));
    }

    #[test]
    fn paths_get_and_set() {
        let mut data = json!({});
        set_path(&mut data, "test/delay", json!(4));
        assert_eq!(get_path(&data, "test/delay"), Some(&json!(4)));
        assert_eq!(get_path(&data, "test/missing"), None);
        set_path(&mut data, "test/delay/deeper", json!(true));
        assert_eq!(data, json!({"test": {"delay": {"deeper": true}}}));
    }
}
