//! A message's way in and out: sends appended, routed records delivered.
//!
//! - [`send`]: the send flow shared by every transport.
//! - [`changes`]: edits, deletions and reactions: checked by the log's rules, appended.
//! - [`membership`]: the (cached, read-your-log) membership pre-check before an append.
//! - [`echoes`]: a sender's message routed back here confirms its send (no views).
//! - [`deliveries`]: the consumer of this gateway's partition of `deliveries`.
//! - [`broadcasts`]: large groups' records fanned out to the members here, in a task of
//!   its own, in chunks, a run of one group's messages at once.
//! - [`groups`]: the index of the groups of users connected here (large groups'
//!   messages are broadcast to every gateway, which finds its own members).
//! - [`counts`]: receipts of large groups, sent as counts at a bounded rate.
//! - [`sync`]: catching a session up from its cursors, behind the read-your-log barrier.
//! - [`typing`]: typing indicators (ephemeral).

pub mod broadcasts;
pub mod changes;
pub mod counts;
pub mod deliveries;
pub mod echoes;
pub mod groups;
pub mod membership;
pub mod send;
pub mod sync;
pub mod typing;
