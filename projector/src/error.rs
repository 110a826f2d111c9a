//! The projector's error.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Store(String),
    #[error("log: {0}")]
    Log(#[from] parley_sequencer::Error),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The projector (or the view over HTTP) could not answer in time; a retry may help.
    #[error("projector unavailable: {0}")]
    Unavailable(String),
}

impl From<rocksdb::Error> for Error {
    fn from(e: rocksdb::Error) -> Self {
        Error::Store(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Store(format!("corrupt row: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
