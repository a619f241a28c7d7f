//! Maelstrom's error codes, the library's [`Error`], and the [`HandlerError`] a handler returns.

use serde_json::{Map, Value};
use std::fmt;

/// A Maelstrom error code (spec table in the crate docs).
///
/// ```
/// use maelnode::ErrorCode;
/// assert_eq!(ErrorCode::from_code(22), ErrorCode::PreconditionFailed);
/// assert_eq!(ErrorCode::PreconditionFailed.code(), 22);
/// assert_eq!(ErrorCode::from_code(1001), ErrorCode::Custom(1001));
/// assert_eq!(ErrorCode::from_code(99), ErrorCode::Other(99));
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: gave up waiting; the operation may still take effect. Indefinite.
    Timeout,
    /// 1: no such destination node. Definite.
    NodeNotFound,
    /// 10: the request type is not supported. Definite.
    NotSupported,
    /// 11: cannot serve now (e.g. no leader); retry later. Definite.
    TemporarilyUnavailable,
    /// 12: the request is structurally wrong. Definite.
    MalformedRequest,
    /// 13: the handler failed in an unknown state. Indefinite.
    Crash,
    /// 14: aborted; did not happen. Definite.
    Abort,
    /// 20: read or cas of a missing key. Definite.
    KeyDoesNotExist,
    /// 21: creating a key that exists. Definite.
    KeyAlreadyExists,
    /// 22: a precondition (e.g. cas `from`) did not hold. Definite.
    PreconditionFailed,
    /// 30: transaction aborted by a conflict. Definite.
    TxnConflict,
    /// A user code, 1000 or more. Indefinite.
    Custom(u32),
    /// A reserved code (below 1000) with no name; only ever decoded, never constructed. Indefinite.
    Other(u32),
}

impl ErrorCode {
    /// The numeric code on the wire.
    ///
    /// ```
    /// assert_eq!(maelnode::ErrorCode::Timeout.code(), 0);
    /// ```
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::Timeout => 0,
            ErrorCode::NodeNotFound => 1,
            ErrorCode::NotSupported => 10,
            ErrorCode::TemporarilyUnavailable => 11,
            ErrorCode::MalformedRequest => 12,
            ErrorCode::Crash => 13,
            ErrorCode::Abort => 14,
            ErrorCode::KeyDoesNotExist => 20,
            ErrorCode::KeyAlreadyExists => 21,
            ErrorCode::PreconditionFailed => 22,
            ErrorCode::TxnConflict => 30,
            ErrorCode::Custom(n) | ErrorCode::Other(n) => n,
        }
    }

    /// Decodes a numeric code.
    ///
    /// ```
    /// assert_eq!(maelnode::ErrorCode::from_code(1), maelnode::ErrorCode::NodeNotFound);
    /// ```
    pub fn from_code(code: u32) -> ErrorCode {
        match code {
            0 => ErrorCode::Timeout,
            1 => ErrorCode::NodeNotFound,
            10 => ErrorCode::NotSupported,
            11 => ErrorCode::TemporarilyUnavailable,
            12 => ErrorCode::MalformedRequest,
            13 => ErrorCode::Crash,
            14 => ErrorCode::Abort,
            20 => ErrorCode::KeyDoesNotExist,
            21 => ErrorCode::KeyAlreadyExists,
            22 => ErrorCode::PreconditionFailed,
            30 => ErrorCode::TxnConflict,
            n if n >= 1000 => ErrorCode::Custom(n),
            n => ErrorCode::Other(n),
        }
    }

    /// Whether the code is definite: the operation did not and will not happen.
    ///
    /// ```
    /// use maelnode::ErrorCode;
    /// assert!(ErrorCode::Abort.is_definite());
    /// assert!(!ErrorCode::Crash.is_definite());
    /// ```
    pub fn is_definite(self) -> bool {
        !matches!(
            self,
            ErrorCode::Timeout | ErrorCode::Crash | ErrorCode::Custom(_) | ErrorCode::Other(_)
        )
    }

    /// The code's name as Maelstrom spells it, e.g. `"key-does-not-exist"`.
    ///
    /// ```
    /// assert_eq!(maelnode::ErrorCode::TxnConflict.name(), "txn-conflict");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Timeout => "timeout",
            ErrorCode::NodeNotFound => "node-not-found",
            ErrorCode::NotSupported => "not-supported",
            ErrorCode::TemporarilyUnavailable => "temporarily-unavailable",
            ErrorCode::MalformedRequest => "malformed-request",
            ErrorCode::Crash => "crash",
            ErrorCode::Abort => "abort",
            ErrorCode::KeyDoesNotExist => "key-does-not-exist",
            ErrorCode::KeyAlreadyExists => "key-already-exists",
            ErrorCode::PreconditionFailed => "precondition-failed",
            ErrorCode::TxnConflict => "txn-conflict",
            ErrorCode::Custom(_) | ErrorCode::Other(_) => "unknown",
        }
    }
}

/// A Maelstrom error: a code, an optional text and optional extra body fields.
///
/// It is what a failed RPC or KV call returns, and what a handler returns to answer with an
/// error reply of that code.
///
/// ```
/// use maelnode::{Error, ErrorCode};
/// let e = Error::new(ErrorCode::TxnConflict, "write-write conflict on key 3");
/// assert_eq!(e.code(), ErrorCode::TxnConflict);
/// assert!(e.is_definite());
/// assert_eq!(e.text(), Some("write-write conflict on key 3"));
/// assert_eq!(e.to_string(), "error 30 (txn-conflict): write-write conflict on key 3");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    code: ErrorCode,
    text: Option<String>,
    extra: Map<String, Value>,
}

impl Error {
    /// An error with a named code and a text.
    ///
    /// A reserved code without a name cannot be made; `ErrorCode::Other(n)` becomes a crash (13).
    ///
    /// ```
    /// let e = maelnode::Error::new(maelnode::ErrorCode::Abort, "no");
    /// assert_eq!(e.code().code(), 14);
    /// ```
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Error {
        let code = match code {
            ErrorCode::Other(_) => ErrorCode::Crash,
            ErrorCode::Custom(n) if n < 1000 => ErrorCode::Crash,
            c => c,
        };
        Error {
            code,
            text: Some(text.into()),
            extra: Map::new(),
        }
    }

    /// A user-defined error; `code` must be 1000 or more, else the error becomes a crash (13).
    ///
    /// ```
    /// let e = maelnode::Error::custom(1001, "quota exceeded");
    /// assert_eq!(e.code(), maelnode::ErrorCode::Custom(1001));
    /// assert!(!e.is_definite());
    /// ```
    pub fn custom(code: u32, text: &str) -> Error {
        Error::new(ErrorCode::Custom(code), text)
    }

    /// Adds an extra field to the error body.
    ///
    /// ```
    /// let e = maelnode::Error::new(maelnode::ErrorCode::Abort, "retry").with_field("leader", "n2");
    /// assert_eq!(e.extra()["leader"], "n2");
    /// ```
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Error {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The error's code.
    ///
    /// ```
    /// assert_eq!(maelnode::Error::timeout("slow").code(), maelnode::ErrorCode::Timeout);
    /// ```
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The error's text, if any.
    ///
    /// ```
    /// assert_eq!(maelnode::Error::timeout("slow").text(), Some("slow"));
    /// ```
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Extra fields of the error body besides `type`, `code` and `text`.
    ///
    /// ```
    /// assert!(maelnode::Error::timeout("slow").extra().is_empty());
    /// ```
    pub fn extra(&self) -> &Map<String, Value> {
        &self.extra
    }

    /// Whether the operation definitely did not happen (see [`ErrorCode::is_definite`]).
    ///
    /// ```
    /// assert!(!maelnode::Error::timeout("slow").is_definite());
    /// ```
    pub fn is_definite(&self) -> bool {
        self.code.is_definite()
    }

    /// A timeout (code 0).
    ///
    /// ```
    /// assert_eq!(maelnode::Error::timeout("rpc to n2").code().code(), 0);
    /// ```
    pub fn timeout(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::Timeout, text)
    }

    /// A malformed-request error (code 12).
    ///
    /// ```
    /// assert_eq!(maelnode::Error::malformed("no key").code().code(), 12);
    /// ```
    pub fn malformed(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::MalformedRequest, text)
    }

    /// A crash error (code 13).
    ///
    /// ```
    /// assert_eq!(maelnode::Error::crash("boom").code().code(), 13);
    /// ```
    pub fn crash(text: impl Into<String>) -> Error {
        Error::new(ErrorCode::Crash, text)
    }

    /// Decodes an error body (`{"type":"error","code":C,"text":T,…}`).
    ///
    /// ```
    /// let body = serde_json::json!({"type":"error","code":20,"text":"key does not exist","in_reply_to":4});
    /// let e = maelnode::Error::from_body(body.as_object().unwrap());
    /// assert_eq!(e.code(), maelnode::ErrorCode::KeyDoesNotExist);
    /// assert!(e.extra().is_empty());
    /// ```
    pub fn from_body(body: &Map<String, Value>) -> Error {
        let code = body
            .get("code")
            .and_then(Value::as_u64)
            .map_or(ErrorCode::Crash, |c| {
                ErrorCode::from_code(u32::try_from(c).unwrap_or(u32::MAX))
            });
        let text = body.get("text").and_then(Value::as_str).map(String::from);
        let extra = body
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "type" | "code" | "text" | "msg_id" | "in_reply_to"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Error { code, text, extra }
    }

    /// The error body without `in_reply_to`: `{"type":"error","code":C,"text":T,…}`.
    ///
    /// ```
    /// let b = maelnode::Error::custom(1000, "x").to_body();
    /// assert_eq!(serde_json::Value::Object(b), serde_json::json!({"type":"error","code":1000,"text":"x"}));
    /// ```
    pub fn to_body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        body.insert("type".into(), "error".into());
        body.insert("code".into(), self.code.code().into());
        if let Some(t) = &self.text {
            body.insert("text".into(), t.clone().into());
        }
        for (k, v) in &self.extra {
            body.entry(k.clone()).or_insert_with(|| v.clone());
        }
        body
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error {} ({})", self.code.code(), self.code.name())?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// What a handler returns: `Ok(())`, or an error that the library turns into an error reply.
///
/// ```
/// fn check(n: i64) -> maelnode::HandlerResult {
///     if n < 0 { return Err(maelnode::Error::malformed("negative").into()) }
///     let _parsed: i64 = "12".parse()?; // any std error converts with `?`
///     Ok(())
/// }
/// assert!(check(1).is_ok());
/// ```
pub type HandlerResult = Result<(), HandlerError>;

/// A handler's failure. A [`maelnode::Error`](Error) keeps its code in the reply; any other error
/// is answered with code 13 (crash) and its `Display` text.
///
/// Like `anyhow::Error`, it converts from every `std::error::Error + Send + Sync + 'static`
/// through `?`, and for that reason does not implement `std::error::Error` itself.
///
/// ```
/// use maelnode::{HandlerError, Error, ErrorCode};
/// let e: HandlerError = Error::new(ErrorCode::Abort, "no").into();
/// assert_eq!(e.to_error().code(), ErrorCode::Abort);
/// let e: HandlerError = "x".parse::<u8>().unwrap_err().into();
/// assert_eq!(e.to_error().code(), ErrorCode::Crash);
/// ```
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl HandlerError {
    /// The Maelstrom error this failure is answered with.
    ///
    /// ```
    /// let e = maelnode::HandlerError::msg("disk on fire");
    /// assert_eq!(e.to_error().text(), Some("disk on fire"));
    /// ```
    pub fn to_error(&self) -> Error {
        match self.0.downcast_ref::<Error>() {
            Some(e) => e.clone(),
            None => Error::crash(self.0.to_string()),
        }
    }

    /// A failure with just a message (answered with code 13).
    ///
    /// ```
    /// let e = maelnode::HandlerError::msg("bad state");
    /// assert_eq!(e.to_string(), "bad state");
    /// ```
    pub fn msg(text: impl Into<String>) -> HandlerError {
        HandlerError(text.into().into())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(Box::new(e))
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(all(test, feature = "sim"))]
mod registry_tests {
    use super::ErrorCode;

    /// The library's codes agree with the registry the runner records histories with.
    #[test]
    fn every_code_matches_the_runners_error_registry() {
        for e in maelstrom_services::errors::ERRORS {
            let code = ErrorCode::from_code(e.code as u32);
            assert_eq!(code.code() as u64, e.code);
            assert_eq!(code.name(), e.name, "code {}", e.code);
            assert_eq!(code.is_definite(), e.definite, "code {}", e.code);
        }
        for n in [2, 999, 1000, 4242] {
            let (name, definite) = maelstrom_services::errors::name_and_definite(Some(n));
            assert_eq!(ErrorCode::from_code(n as u32).name(), name);
            assert_eq!(ErrorCode::from_code(n as u32).is_definite(), definite);
        }
    }
}
