//! The operator's error type: which step failed, and whether retrying can help.

/// A reconcile failure. Invalid specs are not errors: they become conditions and Events and
/// the object waits for a change. Errors are what a retry with backoff may fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing through the Kubernetes API failed (apply, status update).
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[source] kube::Error),
    /// The apiserver refused a child object the operator applies (a Tenant's Namespace,
    /// ResourceQuota, …); the owner's status names the child and the refusal.
    #[error("applying {child}: {source}")]
    Apply {
        /// Kind and name of the child, e.g. `ResourceQuota suyun-quota in Namespace js-edu`.
        child: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
    /// The object has no name or is otherwise not addressable.
    #[error("object is missing {0}")]
    MissingField(&'static str),
}

impl Error {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) | Error::Apply { .. } => "kube",
            Error::MissingField(_) => "missing_field",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

/// Result of a reconcile step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
