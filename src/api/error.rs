//! API errors, each mapped to its HTTP status in one place.

use http::StatusCode;

use crate::chart::ChartError;
use crate::repository::TenantError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    RouteNotFound,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Conflict(String),
    #[error("request too large")]
    TooLarge,
    #[error("request body not received in time")]
    Timeout,
    #[error("repo has reached storage limit")]
    StorageLimit,
    /// `per-chart-limit`: the upload would be one of the versions removed.
    #[error("{0}")]
    ChartLimit(String),
    #[error("unsupported file extension")]
    BadExtension,
    #[error("{0}")]
    Chart(#[from] ChartError),
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// A stored chart cannot be shown within the server's limits (`/templates`, `/values`).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::RouteNotFound | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) | ApiError::Chart(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::StorageLimit | ApiError::ChartLimit(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadExtension | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Storage(e) => match e {
                StorageError::NotFound(_) => StatusCode::NOT_FOUND,
                StorageError::AlreadyExists(_) => StatusCode::CONFLICT,
                StorageError::InvalidPath(_) => StatusCode::BAD_REQUEST,
                StorageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                StorageError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                StorageError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            },
        }
    }

    /// The message for the JSON body. Storage failures are described without leaking
    /// server-side paths.
    pub fn message(&self) -> String {
        match self {
            ApiError::Storage(StorageError::NotFound(_)) => "object not found".into(),
            ApiError::Storage(StorageError::AlreadyExists(_)) => "file already exists".into(),
            ApiError::Storage(StorageError::Io { .. }) => "storage error".into(),
            ApiError::Storage(StorageError::Unavailable(_)) => "storage unavailable".into(),
            ApiError::Storage(StorageError::TooLarge(why)) => why.clone(),
            other => other.to_string(),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> ApiError {
        match e {
            TenantError::Storage(e) => ApiError::Storage(e),
            refused => ApiError::BadRequest(refused.to_string()),
        }
    }
}
