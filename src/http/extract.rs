//! Extractors whose rejections speak the API's error body, and the small parsed types
//! handlers receive (pages, object keys).

use axum::{
    body::Bytes,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use super::error::ApiError;
use crate::db::{keys::Key, paging::Window};

/// Largest request body accepted (413 above it).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body. Malformed JSON is a 400 (`malformed_json`), JSON of the wrong shape
/// (wrong types, missing or unknown fields) a 422 (`invalid_body`), a missing or wrong
/// content type a 415, a body over [`BODY_LIMIT`] a 413 — all with the error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // the bytes are read first (within the body limit) to look for NULs once it parsed
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| json_rejection(JsonRejection::BytesRejection(rejection)))?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        let value = match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        if json_has_nul(&bytes) {
            return Err(ApiError::unprocessable("invalid_body", NUL_MESSAGE));
        }
        // serde fills a struct from an array too (field by field, in order): `[]` made an
        // empty document. Every body of this API is an object.
        if !is_object(&bytes) {
            return Err(ApiError::unprocessable("invalid_body", OBJECT_MESSAGE));
        }
        Ok(ApiJson(value))
    }
}

const OBJECT_MESSAGE: &str = "the body must be a JSON object (`{...}`)";

/// Whether a JSON text that parsed is an object (its first byte past whitespace is `{`).
fn is_object(json: &[u8]) -> bool {
    json.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .is_some_and(|b| *b == b'{')
}

/// Why NULs are refused: PostgreSQL cannot store them in text or JSON, and no name, address
/// or datum needs one. The OpenAPI document says so on every string (`api::conventions`).
const NUL_MESSAGE: &str = "strings may not contain the NUL character (\\u0000)";

/// Whether a JSON text that parsed has a `\u0000` escape in one of its strings (the only way
/// JSON writes a NUL). Outside strings valid JSON has no backslash, so scanning escapes is
/// enough.
fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json[i + 1..].starts_with(b"u0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Whether a raw (percent-encoded) query or path holds an encoded NUL.
fn uri_has_nul(raw: &str) -> bool {
    raw.contains("%00")
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match &rejection {
        JsonRejection::JsonDataError(_) => "invalid_body",
        JsonRejection::JsonSyntaxError(_) => "malformed_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        _ => "invalid_body",
    };
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with `Content-Type: application/json`".to_string()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request bodies are limited to {BODY_LIMIT} bytes")
        }
        JsonRejection::JsonSyntaxError(_) => {
            format!("the body is not JSON: {}", cause(&rejection.body_text()))
        }
        _ => format!("the body does not fit: {}", cause(&rejection.body_text())),
    };
    ApiError::new(status, code, message)
}

/// A query string. Anything that does not parse (unknown parameters, wrong types) is a 400
/// (`invalid_query`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if uri_has_nul(parts.uri.query().unwrap_or_default()) {
            return Err(ApiError::bad_request("invalid_query", NUL_MESSAGE));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!(
            "the query string does not parse: {}",
            cause(&rejection.body_text())
        ),
    )
}

/// What serde said, without axum's sentence before it ("Failed to deserialize ...: ").
fn cause(text: &str) -> &str {
    text.split_once(": ").map_or(text, |(_, cause)| cause)
}

/// Path parameters. A parameter that does not parse (e.g. a snapshot number that is not a
/// number) is a 400 (`invalid_path`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if uri_has_nul(parts.uri.path()) {
            return Err(ApiError::bad_request("invalid_path", NUL_MESSAGE));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => ApiError::bad_request(
            "invalid_path",
            format!("the path does not parse: {}", cause(&e.body_text())),
        ),
        other => ApiError::internal(other.body_text()),
    }
}

/// Default and largest page size of a list.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// `?limit=`: a page size, 1 to [`MAX_LIMIT`]. Lists take it as `Option<Limit>` with
/// `#[param(inline)]`, so the document declares the same bounds the parser enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub i64);

impl<'de> Deserialize<'de> for Limit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let limit = i64::deserialize(deserializer)?;
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(serde::de::Error::custom(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(Limit(limit))
    }
}

impl utoipa::PartialSchema for Limit {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        integer()
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()))
            .description(Some(format!("page size, 1 to {MAX_LIMIT}")))
            .into()
    }
}

impl utoipa::ToSchema for Limit {}

/// `?offset=`: objects to skip, 0 or more (`Option<Offset>` with `#[param(inline)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset(pub i64);

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let offset = i64::deserialize(deserializer)?;
        if offset < 0 {
            return Err(serde::de::Error::custom("offset must not be negative"));
        }
        Ok(Offset(offset))
    }
}

impl utoipa::PartialSchema for Offset {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        integer()
            .minimum(Some(0))
            .default(Some(0.into()))
            .description(Some("objects to skip"))
            .into()
    }
}

impl utoipa::ToSchema for Offset {}

/// An `int64` schema, for the bounded integers above.
fn integer() -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::{KnownFormat, SchemaFormat, schema::Type};
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
}

/// `?limit=&offset=` of a list, checked by [`Limit`] and [`Offset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub fn new(limit: Option<Limit>, offset: Option<Offset>) -> Page {
        Page {
            limit: limit.map_or(DEFAULT_LIMIT, |l| l.0),
            offset: offset.map_or(0, |o| o.0),
        }
    }

    /// This page as a window of a listing, after the id `after` when given.
    pub fn window(self, after: Option<i64>) -> Window {
        Window {
            limit: self.limit,
            offset: self.offset,
            after,
        }
    }
}

/// The query of a list with no filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[param(inline)]
    pub limit: Option<Limit>,
    #[param(inline)]
    pub offset: Option<Offset>,
}

impl PageQuery {
    pub fn page(&self) -> Page {
        Page::new(self.limit, self.offset)
    }
}

/// A reference to an object in a body: its numeric id (`3` or `"3"`) or its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(pub Key);

impl<'de> Deserialize<'de> for ObjectKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ObjectKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an id (integer) or a name (string)")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ObjectKey, E> {
                Ok(ObjectKey(Key::Id(v)))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ObjectKey, E> {
                i64::try_from(v)
                    .map(|v| ObjectKey(Key::Id(v)))
                    .map_err(|_| E::custom("id out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<ObjectKey, E> {
                // 3.0 is the integer 3 to JSON Schema
                crate::domain::number::whole(serde::de::value::F64Deserializer::<E>::new(v))
                    .map(|id| ObjectKey(Key::Id(id)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ObjectKey, E> {
                if v.is_empty() {
                    return Err(E::custom("an empty name refers to nothing"));
                }
                Ok(ObjectKey(Key::parse(v)))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl utoipa::PartialSchema for ObjectKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).format(Some(
                utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64),
            )))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .description(Some("an id (integer or digits) or a name"))
            .into()
    }
}

impl utoipa::ToSchema for ObjectKey {}

/// For fields where `null` means "clear it" and absence means "leave it alone":
/// `#[serde(default, deserialize_with = "double_option")] field: Option<Option<T>>`.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_bounded() {
        assert_eq!(
            Page::new(None, None),
            Page {
                limit: 100,
                offset: 0
            }
        );
        let page = |q: &str| {
            let uri: axum::http::Uri = format!("/?{q}").parse().unwrap();
            axum::extract::Query::<PageQuery>::try_from_uri(&uri).map(|q| q.0.page())
        };
        assert_eq!(
            page("limit=1000&offset=5").unwrap(),
            Page {
                limit: 1000,
                offset: 5
            }
        );
        for bad in ["limit=1001", "limit=0", "offset=-1", "limit="] {
            assert!(page(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nuls_are_found_in_strings_only_when_escaped_as_nul() {
        assert!(json_has_nul(br#"{"a": "x\u0000"}"#));
        assert!(json_has_nul(br#"{"\u0000": 1}"#));
        // an escaped backslash followed by the letters u0000 is no NUL
        assert!(!json_has_nul(br#"{"a": "\\u0000"}"#));
        assert!(!json_has_nul(br#"{"a": "\n0000"}"#));
        assert!(uri_has_nul("node=a%00b"));
        assert!(!uri_has_nul("node=a%2500"));
    }

    #[test]
    fn object_keys_take_ids_and_names() {
        let key: ObjectKey = serde_json::from_str("3").unwrap();
        assert_eq!(key.0, Key::Id(3));
        let key: ObjectKey = serde_json::from_str("\"3\"").unwrap();
        assert_eq!(key.0, Key::Id(3));
        let key: ObjectKey = serde_json::from_str("\"web\"").unwrap();
        assert_eq!(key.0, Key::Name("web".into()));
        assert!(serde_json::from_str::<ObjectKey>("true").is_err());
        assert!(serde_json::from_str::<ObjectKey>("\"\"").is_err());
        let key: ObjectKey = serde_json::from_str("3.0").unwrap();
        assert_eq!(key.0, Key::Id(3));
        assert!(serde_json::from_str::<ObjectKey>("3.5").is_err());
    }

    #[test]
    fn double_options_tell_null_from_absent() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default, deserialize_with = "double_option")]
            a: Option<Option<String>>,
        }
        assert_eq!(serde_json::from_str::<T>("{}").unwrap().a, None);
        assert_eq!(
            serde_json::from_str::<T>("{\"a\":null}").unwrap().a,
            Some(None)
        );
        assert_eq!(
            serde_json::from_str::<T>("{\"a\":\"x\"}").unwrap().a,
            Some(Some("x".into()))
        );
    }
}
