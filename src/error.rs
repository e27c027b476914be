//! The library's one error type. Every variant names the input it is about, what was expected and
//! what was found, so a user can fix their file or argument without reading the source.

use std::path::PathBuf;

/// Errors of the b1sar library. The CLI maps [`Error::is_bad_input`] to exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A user-supplied value or array is malformed (shape, NaN, sign, range, missing entry).
    #[error("invalid input `{input}`: expected {expected}, found {found}")]
    Invalid {
        input: String,
        expected: String,
        found: String,
    },
    /// A required array or field is missing from a file.
    #[error("{path}: missing `{name}` ({what})")]
    Missing {
        path: PathBuf,
        name: String,
        what: String,
    },
    /// A file could not be parsed (corrupt, truncated, wrong format).
    #[error("{path}: cannot read {what}: {reason}")]
    Format {
        path: PathBuf,
        what: String,
        reason: String,
    },
    /// Operating-system I/O error on a path. The OS error is part of the message, not a separate
    /// source, so a chain printer (`{:#}`) does not repeat it.
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A command-line mistake: a flag missing, or flags given in a combination that cannot work.
    /// `flag` names the flag (or flags) to add or change.
    #[error("usage: {flag}: {message}")]
    Usage { flag: String, message: String },
    /// A computation that cannot produce a trustworthy number (e.g. no tissue to average over).
    #[error("{0}")]
    Computation(String),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(
        input: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            input: input.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    /// Shorthand for [`Error::Usage`].
    pub fn usage(flag: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Usage {
            flag: flag.into(),
            message: message.into(),
        }
    }

    /// Shorthand for [`Error::Format`].
    pub fn format(
        path: impl Into<PathBuf>,
        what: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> Self {
        Error::Format {
            path: path.into(),
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause: source,
        }
    }

    /// Prefix the input name of an [`Error::Invalid`] with the file it came from.
    pub fn in_file(self, path: &std::path::Path) -> Self {
        self.within(format!("{}:", path.display()))
    }

    /// Prefix the input name of an [`Error::Invalid`] with what it belongs to (e.g. "coil element 3").
    pub fn within(self, owner: impl std::fmt::Display) -> Self {
        match self {
            Error::Invalid {
                input,
                expected,
                found,
            } => Error::Invalid {
                input: format!("{owner} {input}"),
                expected,
                found,
            },
            other => other,
        }
    }

    /// True when the error is the user's input (exit status 2), false for runtime failures (1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            // A path the user named that does not exist is their input; other I/O failures are not.
            Error::Io { cause, .. } => cause.kind() == std::io::ErrorKind::NotFound,
            Error::Computation(_) => false,
            _ => true,
        }
    }
}

/// Result alias of the library.
pub type Result<T> = std::result::Result<T, Error>;
