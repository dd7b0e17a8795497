//! What a use case refuses or fails with. Adapters translate [`ErrorKind`] to their own form
//! (an HTTP status, a dashboard flash, a delivery's result) and show the message and the hint.

use crate::gate::Role;
use crate::imports::ImportError;
use offshoot_store::StoreError;
use offshoot_template::diag::Diagnostic;

/// The kind of a [`ControlError`], for adapters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// What the request names does not exist.
    NotFound,
    /// The request contradicts the current state (a name taken, an environment still live).
    Conflict,
    /// The request itself is malformed.
    BadInput,
    /// A configuration file is invalid; the error carries its diagnostics.
    Invalid,
    /// Well-formed, understood, and not possible as asked.
    Unprocessable,
    /// The actor's role does not allow the operation.
    Forbidden,
    /// This server's engine cannot do it.
    Unsupported,
    /// A fault of the server or its store: the cause is logged, not shown.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{what} `{name}` does not exist")]
    NotFound { what: &'static str, name: String, hint: Option<String> },
    #[error("{message}")]
    Conflict { code: &'static str, message: String, hint: Option<String> },
    #[error("{message}")]
    BadInput { message: String, hint: Option<String> },
    #[error("{message}")]
    Invalid { message: String, diagnostics: Vec<Diagnostic> },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String, hint: Option<String> },
    #[error("`{operation}` needs the {needs} role; {actor} has the {has} role")]
    Forbidden { actor: String, operation: &'static str, needs: Role, has: Role },
    #[error("cannot fetch `{repo}`: {why}")]
    Fetch { repo: String, why: String },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("cannot encrypt the secret")]
    Seal(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot read the repository")]
    Git(#[from] offshoot_git::GitError),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a blocking task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl ControlError {
    pub fn not_found(what: &'static str, name: &str, hint: impl Into<String>) -> Self {
        ControlError::NotFound { what, name: name.to_owned(), hint: Some(hint.into()) }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        ControlError::BadInput { message: message.into(), hint: None }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ControlError::NotFound { .. } => ErrorKind::NotFound,
            ControlError::Conflict { .. } | ControlError::Store(StoreError::Conflict { .. }) => ErrorKind::Conflict,
            ControlError::BadInput { .. } | ControlError::Fetch { .. } => ErrorKind::BadInput,
            ControlError::Invalid { .. } | ControlError::Import(ImportError::InvalidTemplate { .. }) => ErrorKind::Invalid,
            ControlError::Unprocessable { .. } | ControlError::Import(_) => ErrorKind::Unprocessable,
            ControlError::Forbidden { .. } => ErrorKind::Forbidden,
            ControlError::Backend(b) => match b.kind() {
                crate::backend::BackendErrorKind::NotFound => ErrorKind::NotFound,
                crate::backend::BackendErrorKind::Unsupported => ErrorKind::Unsupported,
                crate::backend::BackendErrorKind::Failed => ErrorKind::Internal,
            },
            ControlError::Seal(_) | ControlError::Git(_) | ControlError::Store(_) | ControlError::Join(_) => ErrorKind::Internal,
        }
    }

    /// A stable code for scripts (`not_found`, `conflict`, `invalid-import`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::Conflict { code, .. } | ControlError::Unprocessable { code, .. } => code,
            ControlError::Import(ImportError::InvalidTemplate { .. }) | ControlError::Invalid { .. } => "invalid_configuration",
            ControlError::Import(_) => "invalid-import",
            _ => match self.kind() {
                ErrorKind::NotFound => "not_found",
                ErrorKind::Conflict => "conflict",
                ErrorKind::BadInput => "bad_request",
                ErrorKind::Forbidden => "forbidden",
                ErrorKind::Unsupported => "unsupported",
                _ => "internal",
            },
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ControlError::NotFound { hint, .. }
            | ControlError::Conflict { hint, .. }
            | ControlError::BadInput { hint, .. }
            | ControlError::Unprocessable { hint, .. } => hint.clone(),
            ControlError::Import(e) => e.hint(),
            ControlError::Backend(b) => b.hint().map(str::to_owned),
            ControlError::Forbidden { .. } => Some("ask an admin for a role that allows it".into()),
            _ => None,
        }
    }

    /// The configuration diagnostics, for [`ErrorKind::Invalid`].
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ControlError::Invalid { diagnostics, .. } | ControlError::Import(ImportError::InvalidTemplate { diagnostics, .. }) => {
                diagnostics
            }
            _ => &[],
        }
    }

    /// The message followed by each diagnostic as `file:line:column: message`, then the hint as
    /// `hint: …`, for places that show text only (a delivery's result).
    pub fn to_text(&self) -> String {
        let mut text = self.to_string();
        for d in self.diagnostics() {
            text.push_str(&format!("\n{}:{}:{}: {}", d.file, d.line, d.column, d.message));
        }
        if let Some(h) = self.hint() {
            text.push_str(&format!("\nhint: {h}"));
        }
        text
    }

    pub(crate) fn with_hint(self, h: impl Into<String>) -> Self {
        match self {
            ControlError::NotFound { what, name, .. } => ControlError::NotFound { what, name, hint: Some(h.into()) },
            ControlError::Conflict { code, message, .. } => ControlError::Conflict { code, message, hint: Some(h.into()) },
            ControlError::BadInput { message, .. } => ControlError::BadInput { message, hint: Some(h.into()) },
            ControlError::Unprocessable { code, message, .. } => ControlError::Unprocessable { code, message, hint: Some(h.into()) },
            other => other,
        }
    }
}
