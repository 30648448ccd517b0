//! What holds for every operation of the OpenAPI document, applied after the routes are in,
//! so that routes added later follow it without writing it again:
//!
//! - bearer auth, an operation id made from the path, and the error body on 400, 401, 403
//!   and anything unexpected;
//! - every response has a description (OpenAPI 3.1 requires one);
//! - strings never hold a NUL: PostgreSQL can store none, and the extractors refuse them
//!   (`http::extract`), so every string without a pattern or format of its own says so;
//! - links from each create operation to the operations that take the id it returns, for
//!   clients and for stateful fuzzing.

use serde_json::{Map, Value, json};
use utoipa::Modify;

use crate::domain::data::{JSON_OBJECT, JSON_VALUE};

/// Applies the conventions to the routes' document; returns it as JSON.
pub fn apply(mut document: utoipa::openapi::OpenApi) -> Value {
    Conventions.modify(&mut document);
    let mut document = serde_json::to_value(&document)
        .unwrap_or_else(|e| json!({"error": format!("the OpenAPI document: {e}")}));
    describe_responses(&mut document);
    forbid_nul(&mut document);
    define_json_data(&mut document);
    link_created_ids(&mut document);
    document
}

/// What holds for every operation: bearer auth, an operation id, and the error body on 400,
/// 401, 403 and anything unexpected.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{
            Ref, ResponseBuilder,
            content::ContentBuilder,
            security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an admin token, or a node token for its own node"))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, operation) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
            ] {
                let Some(operation) = operation else {
                    continue;
                };
                // unique and readable: get /api/v2/nodes/{node}/events → get_nodes_node_events
                let words: Vec<&str> = path
                    .trim_start_matches("/api/v2/")
                    .split('/')
                    .map(|w| w.trim_matches(|c| c == '{' || c == '}'))
                    .collect();
                operation.operation_id = Some(format!("{method}_{}", words.join("_")));
                let responses = &mut operation.responses.responses;
                for (status, description) in [
                    ("400", "a query, path or body that does not parse"),
                    ("401", "no token, or an unknown one"),
                    ("403", "a node token outside its own node"),
                    ("default", "any other error"),
                ] {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The description of a response that has none, by its status.
fn response_description(status: &str) -> String {
    match status {
        "200" => "the answer".into(),
        "201" => "created".into(),
        "202" => "accepted; not finished yet".into(),
        "204" => "done; no body".into(),
        "404" => "no such object".into(),
        "409" => "refused: it conflicts with the current state".into(),
        "413" => "the body is too large".into(),
        "415" => "the body is not JSON".into(),
        "422" => "refused: a value that is not acceptable".into(),
        other => other
            .parse::<u16>()
            .ok()
            .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
            .and_then(|code| code.canonical_reason())
            .unwrap_or("an answer")
            .to_string(),
    }
}

fn operations_mut(document: &mut Value) -> impl Iterator<Item = (&String, &mut Value)> {
    document["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .flat_map(|(path, item)| {
            item.as_object_mut()
                .into_iter()
                .flat_map(|item| item.iter_mut())
                .filter(|(method, _)| METHODS.contains(&method.as_str()))
                .map(move |(_, operation)| (path, operation))
        })
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

fn describe_responses(document: &mut Value) {
    for (_, operation) in operations_mut(document) {
        let Some(responses) = operation["responses"].as_object_mut() else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            if let Some(response) = response.as_object_mut()
                && response.get("description").is_none_or(|d| d == "")
            {
                response.insert("description".into(), response_description(status).into());
            }
        }
    }
}

/// A string without a NUL (`\u0000`).
const NO_NUL: &str = "^[^\\u0000]*$";

/// Gives every string schema without a pattern, format or list of values of its own the
/// [`NO_NUL`] pattern. Only schemas have a `type` of `string` in an OpenAPI document.
fn forbid_nul(value: &mut Value) {
    match value {
        Value::Object(object) => {
            let is_string = match object.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
                _ => false,
            };
            let constrained = ["pattern", "format", "enum", "const"]
                .iter()
                .any(|k| object.contains_key(*k));
            if is_string && !constrained {
                object.insert("pattern".into(), NO_NUL.into());
            }
            object.values_mut().for_each(forbid_nul);
        }
        Value::Array(items) => items.iter_mut().for_each(forbid_nul),
        _ => {}
    }
}

/// The schemas of role data (`schemas::object`): any JSON inside an object, but no NUL in
/// a string or a key, at any depth, since PostgreSQL's `jsonb` cannot hold one.
fn define_json_data(document: &mut Value) {
    let reference = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let schemas = &mut document["components"]["schemas"];
    schemas[JSON_VALUE] = json!({
        "description": "any JSON value; strings and keys without NUL",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            {"type": "string", "pattern": NO_NUL},
            {"type": "array", "items": reference(JSON_VALUE)},
            reference(JSON_OBJECT),
        ],
    });
    schemas[JSON_OBJECT] = json!({
        "description": "a JSON object; strings and keys without NUL, at any depth",
        "type": "object",
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": reference(JSON_VALUE),
    });
}

/// Operations no create links to, by operation id. A link says "this works on the new
/// object, and a DELETE makes it go": a node has an OS install only once one was requested;
/// deleting a token revokes it (it stays readable, its name taken); deleting a host key
/// forgets the pin (the node's host key then reads as null).
const NOT_LINKED: [&str; 3] = [
    "get_nodes_node_install",
    "delete_tokens_token",
    "delete_nodes_node_host_key",
];

/// For each `POST <collection>` answering 201 with an `id`, a link to every operation on
/// `<collection>/{param}...` whose only other parameters are the collection's own: the new
/// id fills `{param}`, the rest come from the request.
fn link_created_ids(document: &mut Value) {
    let schemas = document["components"]["schemas"].clone();
    let mut targets: Vec<(String, String, Vec<String>)> = Vec::new();
    for (path, operation) in operations_mut(document) {
        if let Some(id) = operation["operationId"].as_str() {
            targets.push((path.clone(), id.to_string(), path_params(path)));
        }
    }
    for (path, operation) in operations_mut(document) {
        let created = &operation["responses"]["201"];
        if created.is_null() || !returns_id(created, &schemas) {
            continue;
        }
        let own = path_params(path);
        let mut links = Map::new();
        for (target, operation_id, params) in &targets {
            let Some(rest) = target.strip_prefix(&format!("{path}/")) else {
                continue;
            };
            let Some(new) = rest
                .split('/')
                .next()
                .and_then(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            else {
                continue;
            };
            if NOT_LINKED.contains(&operation_id.as_str()) || params.len() != own.len() + 1 {
                continue;
            }
            let mut parameters = Map::new();
            for param in &own {
                parameters.insert(param.clone(), format!("$request.path.{param}").into());
            }
            parameters.insert(new.to_string(), "$response.body#/id".into());
            links.insert(
                operation_id.clone(),
                json!({"operationId": operation_id, "parameters": parameters}),
            );
        }
        if !links.is_empty() {
            operation["responses"]["201"]["links"] = Value::Object(links);
        }
    }
}

/// The `{params}` of a path template, in order.
fn path_params(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_string)
        .collect()
}

/// Whether a response's JSON body is an object with an `id` (through `$ref`s and `allOf`).
fn returns_id(response: &Value, schemas: &Value) -> bool {
    fn has_id(schema: &Value, schemas: &Value, depth: usize) -> bool {
        if depth > 8 {
            return false;
        }
        if let Some(name) = schema["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
        {
            return has_id(&schemas[name], schemas, depth + 1);
        }
        schema["properties"].get("id").is_some()
            || schema["allOf"]
                .as_array()
                .is_some_and(|all| all.iter().any(|s| has_id(s, schemas, depth + 1)))
    }
    has_id(
        &response["content"]["application/json"]["schema"],
        schemas,
        0,
    )
}
