//! [`Health`]: the named checks a role reports and `/readyz` answers from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

/// The readiness checks of a role (or of every role in the process, for `parley dev`).
/// A role registers its checks as not ready when it starts and reports them as they
/// change; it is ready when it has checks and all of them pass.
#[derive(Clone, Default)]
pub struct Health {
    checks: Arc<Mutex<BTreeMap<String, Check>>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Health({})", self.report())
    }
}

#[derive(Clone, Debug)]
struct Check {
    ok: bool,
    detail: String,
}

impl Health {
    /// Records check `name` as passing or not, with a word on why.
    pub fn set(&self, name: &str, ok: bool, detail: impl Into<String>) {
        let mut checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        checks.insert(
            name.to_string(),
            Check {
                ok,
                detail: detail.into(),
            },
        );
    }

    /// Whether every check passes (and there is at least one).
    pub fn ready(&self) -> bool {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        !checks.is_empty() && checks.values().all(|c| c.ok)
    }

    /// `{"ready": …, "checks": {name: {"ok", "detail"}}}`.
    pub fn report(&self) -> Value {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let ready = !checks.is_empty() && checks.values().all(|c| c.ok);
        let each: serde_json::Map<String, Value> = checks
            .iter()
            .map(|(n, c)| (n.clone(), json!({"ok": c.ok, "detail": c.detail})))
            .collect();
        json!({"ready": ready, "checks": each})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_checks_that_all_pass() {
        let h = Health::default();
        assert!(!h.ready(), "no checks yet: still starting");
        h.set("log", true, "connected");
        h.set("caught_up", false, "lag 5000");
        assert!(!h.ready());
        assert_eq!(h.report()["checks"]["caught_up"]["ok"], false);
        h.set("caught_up", true, "lag 0");
        assert!(h.ready());
        assert_eq!(h.report()["ready"], true);
    }
}
