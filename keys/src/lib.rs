//! The keys that sealed content is sealed under ([`parley_schemas::sealed`]), as the
//! roles hold them.
//!
//! - [`TransitRing`]: every gateway's transit keys, read from the `transit-keys` topic
//!   and followed. Live delivery and push open a sealed body with them: the record
//!   carries its data key wrapped under its sender gateway's transit key of the hour.
//! - [`Sealer`]: a gateway's side. It makes a data key for each message it appends (a
//!   `DataKey` record for the `keys` topic) and keeps its own transit key of the hour,
//!   made ahead and erased once it expires.
//!
//! Data keys themselves are read by the projector, which keeps the ones of its
//! partitions beside its views (its `keys` column family), and by `parley replay
//! --decrypt`.

mod data;
mod sealer;
mod transit;

pub use data::{DataKeys, Opened};
pub use sealer::{SealedAppend, Sealer};
pub use transit::TransitRing;

/// How long a transit key outlives its hour: past the `deliveries` topic's retention
/// and the time push jobs wait, after which live paths no longer need it.
pub const TRANSIT_GRACE_MS: i64 = 6 * HOUR_MS;
pub const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("log: {0}")]
    Log(#[from] parley_sequencer::Error),
    #[error("codec: {0}")]
    Codec(#[from] parley_schemas::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
