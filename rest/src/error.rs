//! The crate's error type and its JSON rendering.
//!
//! Every failure a client can see is one `RestError` variant; `IntoResponse` turns it into the PostgREST error
//! shape `{"code", "message", "details", "hint"}` with the status listed in the crate documentation. Codes follow
//! PostgREST (`PGRST…`) or PostgreSQL SQLSTATE where the meaning is the same, so existing clients can branch on
//! them; conditions PostgREST has no code for use `LC…`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Longest piece of client-supplied text echoed back in an error message: an overlong name must not turn an
/// error response into an amplifier.
const MAX_ECHO: usize = 80;

/// Shortens client-supplied text before it goes into a message.
pub(crate) fn echo(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_ECHO).collect();
    short.push('…');
    short
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("invalid query term `{term}`: {reason}")]
    BadQuery { term: String, reason: String },
    /// A body key or a `columns=` name (PostgREST's PGRST204).
    #[error("column `{column}` of table `{table}` is not in the schema")]
    UnknownColumn { table: String, column: String },
    /// A name in `select`, a filter, `order` or `on_conflict` (PostgreSQL's 42703, which PostgREST passes on).
    #[error("column `{column}` does not exist in table `{table}`")]
    UndefinedColumn { table: String, column: String },
    #[error("column `{column}` of table `{table}` cannot be written: {reason}")]
    ReadOnlyColumn { table: String, column: String, reason: &'static str },
    #[error("table `{table}` not found")]
    TableNotFound { table: String },
    #[error("no route for `{path}`")]
    RouteNotFound { path: String },
    #[error("invalid request body for table `{table}`: {reason}")]
    BadBody { table: String, reason: String },
    #[error("invalid PUT on table `{table}`: {reason}")]
    BadPut { table: String, reason: String },
    #[error("{method} on table `{table}` without a filter is refused")]
    UnfilteredWrite { table: String, method: String },
    #[error("{message}")]
    Unauthorized { reason: &'static str, message: String },
    #[error("{message}")]
    Forbidden { message: String },
    #[error("access denied to table `{table}` for role `{role}`")]
    AccessDenied { table: String, role: String },
    #[error("role `{role}` is read-only: {method} on table `{table}` denied")]
    ReadOnlyRole { table: String, role: String, method: String },
    #[error("invalid preferences given with handling=strict: {preferences}")]
    InvalidPreferences { preferences: String },
    #[error("query on table `{table}` affects {affected} rows, more than max-affected={limit}; rolled back")]
    TooManyAffected { table: String, affected: usize, limit: u64 },
    #[error(
        "no relationship between table `{parent}` and `{child}` (embedding needs a foreign key between allowed tables)"
    )]
    NoRelationship { parent: String, child: String },
    #[error(
        "table `{parent}` relates to `{child}` in {count} ways; name the foreign-key column, as in `{child}!column(...)`"
    )]
    AmbiguousRelationship { parent: String, child: String, count: usize },
    #[error("{method} on table `{table}` refused: the database is a read replica")]
    ReadReplica { table: String, method: String },
    #[error("none of the accepted media types are available: {accept}")]
    NotAcceptable { accept: String },
    #[error("JSON object requested from table `{table}`, but {rows} rows matched")]
    NotSingular { table: String, rows: usize },
    #[error("constraint violation on table `{table}`: {message}")]
    Constraint { table: String, sqlstate: &'static str, message: String },
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported request Content-Type `{content_type}`; send application/json")]
    UnsupportedMediaType { content_type: String },
    #[error("requested range not satisfiable on table `{table}`: offset {offset}, {total} rows")]
    RangeNotSatisfiable { table: String, offset: u64, total: u64 },
    #[error("query on table `{table}` canceled: it exceeded the request time limit of {limit_ms} ms")]
    Timeout { table: String, limit_ms: u128 },
    #[error("database is busy (locked by another writer) while serving table `{table}`")]
    Busy { table: String },
    #[error("database is unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("table `{table}` rejected the request: {message}")]
    Rejected { table: String, message: String },
    #[error("database error on table `{table}`: {message}")]
    Sqlite { table: String, message: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl RestError {
    pub fn bad_query(term: impl AsRef<str>, reason: impl Into<String>) -> Self {
        RestError::BadQuery { term: echo(term.as_ref()), reason: reason.into() }
    }

    pub fn unknown_column(table: &str, column: &str) -> Self {
        RestError::UnknownColumn { table: table.to_owned(), column: echo(column) }
    }

    pub fn undefined_column(table: &str, column: &str) -> Self {
        RestError::UndefinedColumn { table: table.to_owned(), column: echo(column) }
    }

    pub fn bad_body(table: &str, reason: impl Into<String>) -> Self {
        RestError::BadBody { table: table.to_owned(), reason: reason.into() }
    }

    pub fn status(&self) -> StatusCode {
        use RestError::*;
        match self {
            BadQuery { .. }
            | UnknownColumn { .. }
            | UndefinedColumn { .. }
            | ReadOnlyColumn { .. }
            | BadBody { .. }
            | BadPut { .. } => StatusCode::BAD_REQUEST,
            // PostgREST answers 400 for NOT NULL and CHECK violations: the request carried a bad value. Unique
            // and foreign-key violations conflict with other rows: 409.
            Constraint { sqlstate: "23502" | "23514", .. } => StatusCode::BAD_REQUEST,
            UnfilteredWrite { .. }
            | Rejected { .. }
            | InvalidPreferences { .. }
            | TooManyAffected { .. }
            | NoRelationship { .. } => StatusCode::BAD_REQUEST,
            AmbiguousRelationship { .. } => StatusCode::MULTIPLE_CHOICES,
            Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Forbidden { .. } | AccessDenied { .. } | ReadOnlyRole { .. } => StatusCode::FORBIDDEN,
            TableNotFound { .. } | RouteNotFound { .. } => StatusCode::NOT_FOUND,
            ReadReplica { .. } => StatusCode::METHOD_NOT_ALLOWED,
            NotAcceptable { .. } | NotSingular { .. } => StatusCode::NOT_ACCEPTABLE,
            Constraint { .. } => StatusCode::CONFLICT,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Busy { .. } | Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Sqlite { .. } | Config(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use RestError::*;
        match self {
            BadQuery { .. } => "PGRST100",
            BadBody { .. } | ReadOnlyColumn { .. } => "PGRST102",
            RangeNotSatisfiable { .. } => "PGRST103",
            BadPut { .. } => "PGRST105",
            NotAcceptable { .. } => "PGRST107",
            NotSingular { .. } => "PGRST116",
            InvalidPreferences { .. } => "PGRST122",
            NoRelationship { .. } => "PGRST200",
            AmbiguousRelationship { .. } => "PGRST201",
            TooManyAffected { .. } => "PGRST124",
            UnknownColumn { .. } => "PGRST204",
            UndefinedColumn { .. } => "42703",
            TableNotFound { .. } | RouteNotFound { .. } => "PGRST205",
            Unauthorized { .. } => "PGRST301",
            Forbidden { .. } | AccessDenied { .. } | ReadOnlyRole { .. } => "42501",
            Constraint { sqlstate, .. } => sqlstate,
            Timeout { .. } => "57014",
            UnfilteredWrite { .. } => "LC001",
            PayloadTooLarge { .. } => "LC002",
            UnsupportedMediaType { .. } => "LC003",
            Busy { .. } => "LC004",
            Unavailable { .. } => "LC005",
            Sqlite { .. } => "LC006",
            Config(_) => "LC007",
            Internal(_) => "LC008",
            Rejected { .. } => "LC009",
            ReadReplica { .. } => "LC010",
        }
    }

    fn details(&self) -> serde_json::Value {
        match self {
            RestError::NotSingular { rows, .. } => json!(format!("The result contains {rows} rows")),
            RestError::RangeNotSatisfiable { offset, total, .. } => {
                json!(format!("An offset of {offset} was requested, but there are only {total} rows."))
            }
            _ => serde_json::Value::Null,
        }
    }

    fn hint(&self) -> serde_json::Value {
        match self {
            RestError::UnfilteredWrite { .. } => json!("add a filter such as ?id=eq.1"),
            RestError::Unauthorized { .. } => json!("send `Authorization: Bearer <JWT>`"),
            RestError::Busy { .. } => json!("retry the request"),
            RestError::ReadReplica { .. } => json!("send writes to the writer's REST API"),
            _ => serde_json::Value::Null,
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "rest request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "rest request refused");
        }
        let body = json!({
            "code": self.code(),
            "message": self.to_string(),
            "details": self.details(),
            "hint": self.hint(),
        });
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let RestError::ReadReplica { .. } = &self {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
        if let RestError::Unauthorized { reason, message } = &self {
            // RFC 6750 §3: the challenge names the scheme, and why a token that was sent is refused.
            let challenge = if *reason == "missing_token" {
                "Bearer".to_owned()
            } else {
                let description: String =
                    message.chars().filter(|c| *c != '"' && *c != '\\' && c.is_ascii() && !c.is_control()).collect();
                format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
            };
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        if let RestError::RangeNotSatisfiable { total, .. } = &self
            && let Ok(value) = HeaderValue::from_str(&format!("*/{total}"))
        {
            headers.insert(header::CONTENT_RANGE, value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
