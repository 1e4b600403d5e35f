//! The X-Ray API's error answers: an exception name, a message and a 4xx status, as botocore reads them;
//! and reading an operation's input, whose failure is the commonest of them.

use http::StatusCode;
use serde::de::DeserializeOwned;

/// The exceptions the X-Ray service model declares, with the status X-Ray answers them with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something that does not exist.
    InvalidRequest,
    /// Creating one more sampling rule would exceed the account's limit.
    RuleLimitExceeded,
    /// The request is too large to take.
    TooLarge,
    /// The path names no operation this console offers.
    UnknownOperation,
    /// A web page of another site sent the call through its visitor's browser.
    AccessDenied,
}

impl ErrorKind {
    /// The `__type` / `x-amzn-ErrorType` name botocore maps to an exception class.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidRequest => "InvalidRequestException",
            Self::RuleLimitExceeded => "RuleLimitExceededException",
            Self::TooLarge => "InvalidRequestException",
            Self::UnknownOperation => "UnknownOperationException",
            Self::AccessDenied => "AccessDeniedException",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest | Self::RuleLimitExceeded => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownOperation => StatusCode::NOT_FOUND,
            Self::AccessDenied => StatusCode::FORBIDDEN,
        }
    }
}

/// An error answer of the X-Ray API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct XrayError {
    /// Which exception.
    pub kind: ErrorKind,
    /// What was wrong, for a person.
    pub message: String,
}

impl XrayError {
    /// An `InvalidRequestException`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::InvalidRequest, message: message.into() }
    }

    /// An `UnknownOperationException`.
    pub fn unknown_operation(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::UnknownOperation, message: message.into() }
    }

    /// A `RuleLimitExceededException`.
    pub fn rule_limit(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::RuleLimitExceeded, message: message.into() }
    }

    /// The JSON body: botocore takes the code from `__type` and the text from `message`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "__type": self.kind.code(), "message": self.message, "Message": self.message })
    }
}

/// The request body as the operation's input; an empty body is an empty object, and one that does
/// not fit is an `InvalidRequestException`.
pub fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, XrayError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| XrayError::invalid(format!("the request does not fit the operation: {e}")))
}
