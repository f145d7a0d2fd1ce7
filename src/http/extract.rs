//! Request extractors that answer with [`ApiError`]s naming the field at fault: JSON bodies
//! (400 when not JSON, 422 with the field's path when a field has the wrong type or value, 413
//! over the body limit, 415 when the body says it is not JSON) and query strings (400 naming an
//! unknown or malformed parameter).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;

/// A JSON body of type `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

/// A JSON body of type `T`, or `T::default()` when the body is empty.
#[derive(Debug)]
pub struct OptionalJsonBody<T>(pub T);

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ));
    };
    let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or_default().trim();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected `Content-Type: application/json`, got `{essence}`"),
        ))
    }
}

async fn body_bytes(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(state.body_limit())
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "the request body could not be read",
            )
        }
    })
}

/// Parse `bytes` as `T` (a JSON object), naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        // (serde would read an array as a struct's fields in order: refuse it plainly.)
        return match serde_json::from_slice::<serde_json::Value>(bytes) {
            Err(e) => Err(json_error(".", &e)),
            Ok(v) => Err(ApiError::invalid_field(
                "body",
                format!(
                    "the body must be a JSON object, got {}",
                    crate::task::json_kind(&v)
                ),
            )),
        };
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let msg = e.to_string();
            let quoted = msg.split('`').nth(1).map(str::to_string);
            // A missing field is reported at its parent; name it. (An unknown one is already
            // the last segment of the path.)
            let field = if msg.starts_with("missing field") {
                match (path, quoted) {
                    (".", Some(q)) => q,
                    (p, Some(q)) => format!("{p}.{q}"),
                    (p, None) => p.to_string(),
                }
            } else if path == "." {
                "body".to_string()
            } else {
                path.to_string()
            };
            let shown = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            ApiError::invalid_field(field.clone(), format!("{field}: {shown}"))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            ApiError::malformed(format!("the body is not valid JSON: {e}"))
        }
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let has_type = req.headers().contains_key(CONTENT_TYPE);
        let headers = req.headers().clone();
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if has_type {
            check_content_type(&headers)?;
        } else {
            check_content_type(&HeaderMap::new())?;
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// The query string as name/value pairs; handlers take the parameters they know and
/// [`QueryParams::finish`] refuses the rest.
#[derive(Debug, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    /// Take parameter `name` (an error when given twice). Empty values count as absent.
    pub fn take(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        let mut found = None;
        let mut i = 0;
        while i < self.pairs.len() {
            if self.pairs[i].0 == name {
                let (_, v) = self.pairs.remove(i);
                if found.is_some() {
                    return Err(ApiError::invalid_parameter(
                        name,
                        format!("{name} is given more than once"),
                    ));
                }
                found = Some(v);
            } else {
                i += 1;
            }
        }
        Ok(found.filter(|v| !v.trim().is_empty()))
    }

    /// Take `name` and parse it with `parse`, whose error message is returned naming it.
    pub fn parse<T>(
        &mut self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        match self.take(name)? {
            None => Ok(None),
            Some(v) => parse(v.trim())
                .map(Some)
                .map_err(|m| ApiError::invalid_parameter(name, format!("{name}: {m}"))),
        }
    }

    /// Refuse parameters nobody took.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.pairs.into_iter().next() {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::invalid_parameter(
                k.clone(),
                format!("unknown query parameter {k:?}"),
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or_default();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(q).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                format!("the query string cannot be read: {e}"),
            )
        })?;
        Ok(QueryParams { pairs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u8,
        #[serde(default)]
        b: Vec<u32>,
    }

    fn status(body: &str) -> StatusCode {
        parse_json::<T>(body.as_bytes()).unwrap_err().status()
    }

    #[test]
    fn errors_name_the_field() {
        assert!(parse_json::<T>(br#"{"a": 1}"#).is_ok());
        assert_eq!(status(r#"{"a": 1"#), StatusCode::BAD_REQUEST);
        assert_eq!(status("nope"), StatusCode::BAD_REQUEST);
        assert_eq!(status(r#"{"a": 1} x"#), StatusCode::BAD_REQUEST);
        for (body, want) in [
            (r#"{"a": "x"}"#, "a"),
            (r#"{"a": 300}"#, "a"),
            (r#"{"a": 1, "b": [1, "x"]}"#, "b[1]"),
            (r#"{"a": 1, "zz": 1}"#, "zz"),
            (r#"{}"#, "a"),
            (r#"[1]"#, "body"),
        ] {
            let e = parse_json::<T>(body.as_bytes()).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert_eq!(e.field_name(), Some(want), "{body}");
        }
    }
}
