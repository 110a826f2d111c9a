//! The end-to-end tests against the real broker (and Redis), as one test binary: the
//! workspace is linked once for all of them rather than once per file, and their tests
//! run side by side (`scripts/test.sh` runs four at a time; most of a test's time is
//! spent waiting on the broker). Each test runs its own Parley on topics of its own
//! (`common::stack`), so they do not see each other.
//!
//! `tests/flood.rs` stays a binary of its own: it measures the resident memory of its
//! process, which other tests in the same process would add to.

mod common;

mod attachments;
mod authz;
mod embedded_dev;
mod faults;
mod kafka_dev;
mod large_groups;
mod message_changes;
mod never_missing;
mod offline;
mod operable;
mod presence;
mod projector;
mod push;
mod realtime;
mod replay;
mod sealed;
mod search;
mod shards;
mod signals;
mod visibility;
