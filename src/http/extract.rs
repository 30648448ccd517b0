//! Extractors whose rejections speak the API's error body, and the small parsed types
//! handlers receive (pages, object keys).

use axum::{
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};

use super::ApiError;
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
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
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
        _ => rejection.body_text(),
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
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
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
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    match rejection {
        PathRejection::FailedToDeserializePathParams(e) => {
            ApiError::bad_request("invalid_path", e.body_text())
        }
        other => ApiError::internal(other.body_text()),
    }
}

/// Default and largest page size of a list.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// `?limit=&offset=` of a list, checked: 1 ≤ limit ≤ 1000 (default 100), offset ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Page {
    pub fn new(limit: Option<i64>, offset: Option<i64>) -> Result<Page, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        let offset = offset.unwrap_or(0);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        if offset < 0 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "offset must not be negative",
            ));
        }
        Ok(Page { limit, offset })
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
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// Objects to skip (default 0).
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, ApiError> {
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
            .item(ObjectBuilder::new().schema_type(Type::String))
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
            Page::new(None, None).unwrap(),
            Page {
                limit: 100,
                offset: 0
            }
        );
        assert!(Page::new(Some(1000), Some(5)).is_ok());
        assert!(Page::new(Some(1001), None).is_err());
        assert!(Page::new(Some(0), None).is_err());
        assert!(Page::new(None, Some(-1)).is_err());
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
