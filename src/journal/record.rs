//! `run.json`: a run's inputs as resolved, enough to resume it with the same plan and to
//! tell whether the playbook or the inventory changed since.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::GateVerdict;
use crate::plan::Batch;
use crate::play::Play;
use crate::secret::{looks_secret, REDACTED};
use crate::vars::Vars;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub operator: String,
    pub controller: String,
    pub pid: u32,
    pub fleetup_version: String,
    /// Absolute, so that a resume works from any directory.
    pub playbook: PathBuf,
    pub playbook_name: String,
    /// The playbook's `hosts:`, and `--limit`.
    pub pattern: String,
    pub limit: Option<String>,
    pub inventories: Vec<PathBuf>,
    /// `-e` as resolved, secrets replaced by [`REDACTED`].
    pub extra_vars: Vars,
    /// The names of the redacted extra variables.
    pub redacted: Vec<String>,
    /// The versions the hosts are upgraded to (the playbook's `audit.to`), when known.
    pub target: Vec<String>,
    pub rollout: RolloutRecord,
    pub plan: Vec<Batch>,
    pub seed: Option<u64>,
    pub playbook_sha256: String,
    /// Each selected host's variables as resolved, hashed: a resume compares them.
    pub hosts_sha256: BTreeMap<String, String>,
    /// `--window` as given: a resume keeps to the same windows.
    #[serde(default)]
    pub windows: Vec<String>,
    /// The promotion gate's verdict, when the run had one.
    #[serde(default)]
    pub gate: Option<GateVerdict>,
}

/// The rollout settings in force, in their command-line forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub serial: String,
    pub canary: String,
    pub max_fail_percentage: f64,
    pub order: String,
    pub forks: usize,
}

impl RunRecord {
    pub fn new(
        run_id: &str,
        play: &Play,
        inventories: &[PathBuf],
        limit: Option<&str>,
        target: Vec<String>,
    ) -> Self {
        let (extra_vars, redacted) = redact(&play.extra_vars, &play.playbook.secrets);
        RunRecord {
            run_id: run_id.to_string(),
            started: crate::clock::rfc3339(jiff::Timestamp::now()),
            operator: crate::identity::operator(),
            controller: crate::identity::controller(),
            pid: std::process::id(),
            fleetup_version: env!("CARGO_PKG_VERSION").to_string(),
            playbook: absolute(play.playbook.path()),
            playbook_name: play.playbook.name.clone(),
            pattern: play.playbook.hosts.as_str().to_string(),
            limit: limit.map(str::to_string),
            inventories: inventories.iter().map(|p| absolute(p)).collect(),
            extra_vars,
            redacted,
            target,
            rollout: RolloutRecord {
                serial: play.rollout.serial.to_string(),
                canary: play.rollout.canary.to_string(),
                max_fail_percentage: play.rollout.max_fail_percentage,
                order: play.rollout.order.to_string(),
                forks: play.rollout.forks,
            },
            plan: play.plan.batches.clone(),
            seed: play.plan.seed,
            playbook_sha256: sha256(play.playbook.text.as_bytes()),
            hosts_sha256: hosts_fingerprint(play),
            windows: Vec::new(),
            gate: None,
        }
    }

    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::journal::write_atomically(&dir.join("run.json"), text.as_bytes())
    }

    pub fn read(dir: &Path) -> Result<RunRecord, String> {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// What differs between the run as recorded and `play` as prepared now, in words; empty
    /// when nothing that matters changed.
    pub fn changes(&self, play: &Play) -> Vec<String> {
        let mut changes = Vec::new();
        if self.playbook_sha256 != sha256(play.playbook.text.as_bytes()) {
            changes.push(format!(
                "the playbook {} changed",
                play.playbook.path().display()
            ));
        }
        let now = hosts_fingerprint(play);
        let list = |names: Vec<&String>| {
            names
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let added: Vec<&String> = now
            .keys()
            .filter(|h| !self.hosts_sha256.contains_key(*h))
            .collect();
        let removed: Vec<&String> = self
            .hosts_sha256
            .keys()
            .filter(|h| !now.contains_key(*h))
            .collect();
        let changed: Vec<&String> = now
            .iter()
            .filter(|(h, sum)| self.hosts_sha256.get(*h).is_some_and(|old| old != *sum))
            .map(|(h, _)| h)
            .collect();
        if !added.is_empty() {
            changes.push(format!(
                "the inventory now selects more hosts: {}",
                list(added)
            ));
        }
        if !removed.is_empty() {
            changes.push(format!(
                "the inventory no longer selects: {}",
                list(removed)
            ));
        }
        if !changed.is_empty() {
            changes.push(format!(
                "the variables of these hosts changed (inventory or -e): {}",
                list(changed)
            ));
        }
        changes
    }
}

/// Extra variables that are secret (listed in `secrets:` or named like one) are not
/// written to disk; a resume asks for them again.
fn redact(extra: &Vars, secrets: &[String]) -> (Vars, Vec<String>) {
    let mut redacted = Vec::new();
    let vars = extra
        .iter()
        .map(|(k, v)| {
            if looks_secret(k) || secrets.contains(k) {
                redacted.push(k.clone());
                (k.clone(), serde_json::Value::String(REDACTED.into()))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    (vars, redacted)
}

fn hosts_fingerprint(play: &Play) -> BTreeMap<String, String> {
    play.hosts
        .iter()
        .map(|h| {
            let text = serde_json::to_string(&h.vars).unwrap_or_default();
            (h.name.clone(), sha256(text.as_bytes()))
        })
        .collect()
}

fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_redacted() {
        let extra: Vars = serde_json::from_str(
            r#"{"sl_version": "v4.66.1", "db_password": "hunter2", "API_TOKEN": "t", "licence": "l"}"#,
        )
        .unwrap();
        let (vars, redacted) = redact(&extra, &["licence".into()]);
        assert_eq!(vars["sl_version"], "v4.66.1");
        assert_eq!(vars["db_password"], REDACTED);
        assert_eq!(vars["API_TOKEN"], REDACTED);
        assert_eq!(vars["licence"], REDACTED);
        assert_eq!(redacted, ["db_password", "API_TOKEN", "licence"]);
    }
}
