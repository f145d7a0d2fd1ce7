//! The API's one error type. It tells the client what it needs (a status, a stable code, a
//! message and the field at fault) and nothing more: for 5xx answers the cause (SQL errors,
//! connection trouble) is logged server-side with a request id, and only the id is returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::types::{ErrorBody, ErrorDetail};
use crate::error::Error;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    /// The cause, logged (never sent) for 5xx answers.
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    /// An error with `status`, a stable `code` and a message for the client.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            source: None,
        }
    }

    /// Name the request field or parameter at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the body is not JSON.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", message)
    }

    /// 422: a field has the wrong type or value.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).field(field)
    }

    /// 400: a query or path parameter is wrong.
    pub fn invalid_parameter(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message).field(param)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 401: no token, or a token the server does not know.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is required: send `Authorization: Bearer <token>`",
        )
    }

    /// 403: a read-only token on an admin action.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this action needs the admin token; the token given is read-only",
        )
    }

    /// 413.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body exceeds the limit of {limit} bytes"),
        )
    }

    /// 500 with a cause that is logged, not sent.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }

    /// Keep `source` as the cause (logged for 5xx answers, never sent).
    pub fn caused_by(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The field or parameter named, if any.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Invalid(m) => {
                let field = m
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .find(|w| KNOWN_FIELDS.contains(w))
                    .unwrap_or("body")
                    .to_string();
                ApiError::invalid_field(field, m.clone())
            }
            Error::InvalidField { field, message } => {
                ApiError::invalid_field(field.clone(), message.clone())
            }
            Error::PayloadTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                e.to_string(),
            ),
            Error::DuplicateId(_) => ApiError::conflict(e.to_string()).field("task_id"),
            Error::NotFound(_) | Error::ScheduleNotFound(_) => ApiError::not_found(e.to_string()),
            Error::ScheduleExists(_) => ApiError::conflict(e.to_string()).field("name"),
            Error::Database(sqlx::Error::Database(db)) if db.code().as_deref() == Some("57014") => {
                ApiError {
                    source: Some(Box::new(e)),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "query_timeout",
                        "the query took too long: narrow the filters (e.g. add since= or state=)",
                    )
                }
            }
            _ if e.is_transient() => ApiError {
                source: Some(Box::new(e)),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; try again",
                )
            },
            _ => ApiError::internal(e),
        }
    }
}

/// Fields of an enqueue request, to name the one a library validation message is about.
const KNOWN_FIELDS: &[&str] = &[
    "task",
    "args",
    "kwargs",
    "headers",
    "queue",
    "priority",
    "countdown",
    "eta",
    "expires",
    "max_retries",
    "retry_delay",
    "retry_backoff",
    "retry_backoff_max",
    "soft_time_limit",
    "time_limit",
    "unique_key",
    "unique_scope",
    "unique_window",
    "rate",
    "concurrency",
    "partition_by",
];

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = if self.status.is_server_error() {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let id = id.get(..12).unwrap_or(&id).to_string();
            let chain = self
                .source
                .as_deref()
                .map(|e| error_chain(e))
                .unwrap_or_default();
            tracing::error!(
                request_id = %id, status = self.status.as_u16(), code = self.code,
                error = %chain, "request failed"
            );
            Some(id)
        } else {
            None
        };
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
                field: self.field,
                request_id,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"celeriac\""),
            );
        }
        response
    }
}

/// `error: cause: cause…` on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}
