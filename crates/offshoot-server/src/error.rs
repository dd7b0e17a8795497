//! The one error type at the HTTP boundary: a status, a stable code, a public message.
//! Internal causes are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use offshoot_api_types::ErrorBody;

#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
    pub(crate) diagnostics: Vec<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), hint: None, diagnostics: Vec::new() }
    }
    pub(crate) fn not_found(what: &str, name: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} `{name}` does not exist"))
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = format!("{e:#}"), "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }
}

impl From<offshoot_store::StoreError> for ApiError {
    fn from(e: offshoot_store::StoreError) -> Self {
        match e {
            offshoot_store::StoreError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            e if e.is_full() => {
                let operation = e.operation().unwrap_or("write");
                tracing::error!(error = format!("{:#}", anyhow::Error::new(e)), "the database's disk is full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "storage_full",
                    format!("the server's disk is full: its database cannot be written (while trying to {operation})"),
                )
                .hint("free space where the server keeps its data (`--data-dir`, or the database server's disk), then try again")
            }
            e if e.is_unavailable() => {
                let operation = e.operation().unwrap_or("read");
                tracing::error!(error = format!("{:#}", anyhow::Error::new(e)), "the database cannot answer");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the server's database cannot answer (while trying to {operation})"),
                )
                .hint("try again in a moment; `offshoot doctor` on the server checks its database")
            }
            other => anyhow::Error::new(other).into(),
        }
    }
}

impl From<offshoot_control::ControlError> for ApiError {
    fn from(e: offshoot_control::ControlError) -> Self {
        use offshoot_control::ErrorKind;
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::BadInput => StatusCode::BAD_REQUEST,
            ErrorKind::Invalid | ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Internal => {
                return match e {
                    // A database that cannot answer says so (503), as it does outside the control plane.
                    offshoot_control::ControlError::Store(s) => s.into(),
                    other => anyhow::Error::new(other).into(),
                };
            }
        };
        let mut out = ApiError::new(status, e.code(), e.to_string());
        out.hint = e.hint();
        out.diagnostics = e.diagnostics().iter().filter_map(|d| serde_json::to_value(d).ok()).collect();
        out
    }
}

impl From<offshoot_control::BackendError> for ApiError {
    fn from(e: offshoot_control::BackendError) -> Self {
        use offshoot_control::BackendErrorKind;
        let out = match e.kind() {
            BackendErrorKind::NotFound => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message()),
            BackendErrorKind::Unsupported => ApiError::new(StatusCode::NOT_IMPLEMENTED, "unsupported", e.message()),
            BackendErrorKind::Failed => return anyhow::Error::new(e).into(),
        };
        match e.hint() {
            Some(h) => out.hint(h),
            None => out,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.to_owned(), message: self.message, hint: self.hint, diagnostics: self.diagnostics };
        (self.status, Json(body)).into_response()
    }
}

/// A JSON request body: a JSON object. One that cannot be read is refused as every other error
/// is, with a JSON [`ErrorBody`] (axum's own refusal is plain text): 400 for bad JSON, 413 over
/// the size limit, 415 without `Content-Type: application/json`, 422 for JSON of the wrong shape
/// (an array is not taken for an object, as serde would).
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        let value = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(r) => {
                let code = match &r {
                    JsonRejection::JsonSyntaxError(_) | JsonRejection::JsonDataError(_) => "bad_json",
                    JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
                    _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                    _ => "bad_request",
                };
                return Err(ApiError::new(r.status(), code, r.body_text()));
            }
        };
        if !value.is_object() {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", "the body must be a JSON object"));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("the body does not fit: {e}")))
    }
}

/// A request's query string, refused with a JSON [`ErrorBody`] (400) when it does not parse.
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(r) => Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", r.body_text())),
        }
    }
}
