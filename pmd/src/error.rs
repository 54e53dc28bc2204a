//! The one error type of the crate.

use thiserror::Error;

/// Everything that can go wrong in `pmd`. Messages name the field, option or
/// value at fault, so they can be shown to a user as they are.
#[derive(Debug, Error)]
pub enum PmdError {
    /// A pool has no free buffers left.
    #[error("mempool '{pool}' exhausted: could not allocate {wanted} buffer(s)")]
    Exhausted {
        /// Pool name.
        pool: String,
        /// Buffers asked for.
        wanted: usize,
    },
    /// A buffer is too small for the data.
    #[error("buffer too small: need {need} bytes, have {have}")]
    MbufTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// Memory for a pool or ring could not be allocated.
    #[error("out of memory allocating {what}")]
    NoMemory {
        /// What was being allocated.
        what: String,
    },
    /// A configuration value is invalid.
    #[error("invalid {field}: {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A port spec names a scheme no driver serves.
    #[error("unknown port type '{scheme}' in spec '{spec}'; valid types: {valid}")]
    UnknownScheme {
        /// The whole spec.
        spec: String,
        /// The scheme at fault.
        scheme: String,
        /// Comma-separated list of valid schemes.
        valid: String,
    },
    /// A port spec has an option its driver does not know.
    #[error("unknown option '{option}' for '{scheme}' in spec '{spec}'; valid options: {valid}")]
    UnknownOption {
        /// The whole spec.
        spec: String,
        /// The driver's scheme.
        scheme: String,
        /// The option at fault.
        option: String,
        /// Comma-separated list of valid options.
        valid: String,
    },
    /// A port spec option has a value that does not parse or is out of range.
    #[error("bad value '{value}' for option '{option}' in spec '{spec}': {expected}")]
    BadValue {
        /// The whole spec.
        spec: String,
        /// The option at fault.
        option: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// A port spec is malformed or lacks a required part.
    #[error("bad port spec '{spec}': {reason}")]
    BadSpec {
        /// The whole spec.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// An operation is not valid in the port's current state.
    #[error("port '{port}': {reason}")]
    State {
        /// Port name.
        port: String,
        /// What is wrong.
        reason: String,
    },
    /// The driver does not support a requested feature.
    #[error("port '{port}' does not support {what}")]
    Unsupported {
        /// Port name.
        port: String,
        /// The feature.
        what: String,
    },
    /// A requested core cannot be used.
    #[error("core {core} is not available to this process (available: {available})")]
    CoreUnavailable {
        /// The core asked for.
        core: usize,
        /// The cores that are available.
        available: String,
    },
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl PmdError {
    /// Whether this error comes from bad user input (a spec, flag or config value)
    /// rather than from the system: command-line tools exit with status 2 for these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            PmdError::Config { .. }
                | PmdError::UnknownScheme { .. }
                | PmdError::UnknownOption { .. }
                | PmdError::BadValue { .. }
                | PmdError::BadSpec { .. }
                | PmdError::CoreUnavailable { .. }
                | PmdError::Unsupported { .. }
        )
    }
}
