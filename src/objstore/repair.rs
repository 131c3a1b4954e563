//! `verify --repair`: rebuilds the logs `verify` found damaged (missing or
//! damaged entries, a hint naming a lost commit, a damaged hint), in place
//! and with create-if-absent, so every commit that survives is kept and
//! the log's seq never goes back (see [`super::protocol::Protocol::repair`]).
//! Nothing else is repaired: a lost blob or manifest has no second copy.

use serde::Serialize;

use super::ObjStore;
use super::protocol::Replaced;
use super::verify::VerifyReport;
use crate::error::Result;

/// What the repair of one namespace's log did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRepair {
    pub namespace: String,
    /// Entries replaced, oldest first.
    pub replaced: Vec<Replaced>,
    pub hint_rewritten: bool,
    /// The log's last commit after the repair.
    pub seq: u64,
}

impl LogRepair {
    /// Commits whose change is lost: no later checkpoint held it and no
    /// copy was cached.
    pub fn lost(&self) -> impl Iterator<Item = &Replaced> {
        self.replaced.iter().filter(|r| !r.recovered)
    }
}

/// The namespaces whose log or hint `report` names as damaged.
pub fn damaged_logs(report: &VerifyReport) -> Vec<String> {
    let mut out: Vec<String> = report
        .problems
        .iter()
        .filter_map(|p| {
            let rest = p.key.strip_prefix("ns/")?;
            let (ns, tail) = rest.split_once('/')?;
            (tail == "head.json" || tail.starts_with("log/")).then(|| ns.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

impl ObjStore {
    /// Rebuilds the namespace's log (a no-op on an intact one, at the cost
    /// of reading it whole).
    pub async fn repair_log(&self, ns: &str) -> Result<LogRepair> {
        crate::ids::validate_namespace_id(ns)?;
        let codec = self.inner.log.codec();
        let repaired = self
            .inner
            .log
            .repair(ns, |_, replaced| codec.filler(replaced))
            .await?;
        // What this handle derived from the old log is stale.
        self.inner.published.lock().unwrap().remove(ns);
        Ok(LogRepair {
            namespace: ns.to_string(),
            replaced: repaired.replaced,
            hint_rewritten: repaired.hint_rewritten,
            seq: repaired.state.seq,
        })
    }

    /// Repairs every log `verify` (of `namespace`, or of the whole store)
    /// finds damaged. Returns what was repaired; `verify` again tells
    /// what is left.
    pub async fn repair(&self, namespace: Option<&str>) -> Result<Vec<LogRepair>> {
        let report = self.verify(namespace).await?;
        let mut out = Vec::new();
        for ns in damaged_logs(&report) {
            out.push(self.repair_log(&ns).await?);
        }
        Ok(out)
    }
}
