//! Maelstrom's error registry (spec §3.4): every reserved code with its name, whether it is
//! definite, and what it means. The runner maps error replies to histories with it, and
//! `maelstrom doc` writes the protocol's error table from it.

/// One reserved error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    /// The number in an error body's `code`.
    pub code: u64,
    /// The name histories use (`:error [:key-does-not-exist "…"]`).
    pub name: &'static str,
    /// Definite: the operation did not and will not happen. Indefinite: it may have happened
    /// or may yet happen.
    pub definite: bool,
    /// When a node or service sends it.
    pub meaning: &'static str,
}

/// Every reserved code, in increasing order. Codes 0–999 are reserved; 1000 and up are free
/// for users, and any code not listed here is indefinite and named `unknown`.
pub const ERRORS: [ErrorCode; 11] = [
    ErrorCode {
        code: 0,
        name: "timeout",
        definite: false,
        meaning: "Gave up waiting; the operation may still take effect.",
    },
    ErrorCode {
        code: 1,
        name: "node-not-found",
        definite: true,
        meaning: "The requested destination node does not exist.",
    },
    ErrorCode {
        code: 10,
        name: "not-supported",
        definite: true,
        meaning: "The request type is not supported by this node.",
    },
    ErrorCode {
        code: 11,
        name: "temporarily-unavailable",
        definite: true,
        meaning: "The node cannot serve the request right now (e.g. no leader); retry later.",
    },
    ErrorCode {
        code: 12,
        name: "malformed-request",
        definite: true,
        meaning: "The request is structurally wrong: a missing or ill-typed field.",
    },
    ErrorCode {
        code: 13,
        name: "crash",
        definite: false,
        meaning: "The handler failed in a way that leaves the outcome unknown.",
    },
    ErrorCode {
        code: 14,
        name: "abort",
        definite: true,
        meaning: "The operation was aborted and did not happen.",
    },
    ErrorCode {
        code: 20,
        name: "key-does-not-exist",
        definite: true,
        meaning: "A read or cas of a key that does not exist.",
    },
    ErrorCode {
        code: 21,
        name: "key-already-exists",
        definite: true,
        meaning: "An attempt to create a key that already exists.",
    },
    ErrorCode {
        code: 22,
        name: "precondition-failed",
        definite: true,
        meaning: "A precondition did not hold, e.g. a cas whose `from` does not match.",
    },
    ErrorCode {
        code: 30,
        name: "txn-conflict",
        definite: true,
        meaning: "The transaction was aborted because of a conflict with another.",
    },
];

/// The registry entry for `code`, if it is a reserved one.
///
/// ```
/// use maelstrom_services::errors;
/// assert_eq!(errors::lookup(20).map(|e| e.name), Some("key-does-not-exist"));
/// assert!(errors::lookup(1000).is_none());
/// ```
pub fn lookup(code: u64) -> Option<&'static ErrorCode> {
    ERRORS.iter().find(|e| e.code == code)
}

/// The history name and definiteness of an error reply's code: unknown, custom and missing
/// codes are `unknown` and indefinite.
///
/// ```
/// use maelstrom_services::errors::name_and_definite;
/// assert_eq!(name_and_definite(Some(22)), ("precondition-failed", true));
/// assert_eq!(name_and_definite(Some(1234)), ("unknown", false));
/// assert_eq!(name_and_definite(None), ("unknown", false));
/// ```
pub fn name_and_definite(code: Option<u64>) -> (&'static str, bool) {
    code.and_then(lookup)
        .map_or(("unknown", false), |e| (e.name, e.definite))
}
