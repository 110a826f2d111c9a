//! A Parley client, as the tests, the benchmarks and a Rust application use it.
//!
//! - [`api`]: the REST calls (tokens, conversations, history).
//! - [`session`]: a WebSocket session: sends with their acks, and received messages
//!   ordered by seq, deduplicated by message id, with gaps (a `prev_seq` the client has
//!   not seen) filled from history.
//! - [`poll`]: [`Poller`], the long-polling client, with the same store.
//! - [`reconnect`]: [`Reconnecting`], a session that gets a fresh token and reconnects
//!   when its session ends (an expired token: close 4001), then syncs.
//! - [`store`]: the per-conversation message store the session keeps.

pub mod api;
pub mod poll;
pub mod reconnect;
pub mod session;
pub mod store;

pub use api::{Api, Download, Refused, SearchOptions, SearchResult, SearchResults};
pub use poll::Poller;
pub use reconnect::{Reconnecting, TokenSource};
pub use session::{ReceiptCounts, Session, SessionError};
pub use store::Store;
