//! What an operator sees of every role: Prometheus metrics (`/metrics`, every series
//! named `parley_…`), liveness (`/healthz`) and readiness (`/readyz`), and consumer lag.
//!
//! Module map:
//! - [`metrics`]: the process-wide recorder, the names of the series, process figures.
//! - [`health`]: [`Health`], the named checks behind `/readyz`.
//! - [`lag`]: consumer lag per partition, as gauges and as a readiness check.
//! - [`http`]: the `/metrics`, `/healthz` and `/readyz` routes.
//! - [`ports`]: ports a supervisor picks for the processes it starts.

pub mod health;
pub mod http;
pub mod lag;
pub mod metrics;
pub mod ports;

pub use health::Health;
pub use http::router;
