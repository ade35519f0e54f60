//! The report's edge with the disk: the run's files read from the journal, the page
//! written whole (a browser reloading it never sees half a page).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::Sources;
use crate::engine::PreflightResult;
use crate::events::Outcome;
use crate::journal::{read, RunDir, RunRecord};

/// The pre-flight of a run as `preflight.json` in its directory keeps it: one object per
/// host with its outcome and the playbook's `report:` columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Before {
    pub host: String,
    pub outcome: Outcome,
    pub report: IndexMap<String, String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Journal(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the report {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The pre-flight as `preflight.json` keeps it: one row per host, its outcome and its
/// `report:` columns. A resume's pre-flight reads only the hosts left: the `earlier`
/// file's other hosts keep their rows.
pub fn preflight_json(results: &[PreflightResult], earlier: Option<&[u8]>) -> String {
    let earlier: Vec<Before> = earlier
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default();
    let kept = earlier
        .into_iter()
        .filter(|b| !results.iter().any(|r| r.host == b.host));
    let rows: Vec<Before> = kept.chain(results.iter().map(Before::of)).collect();
    serde_json::to_string_pretty(&rows).unwrap_or_default()
}

impl Before {
    fn of(r: &PreflightResult) -> Before {
        Before {
            host: r.host.clone(),
            outcome: r.outcome,
            report: r
                .report
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_string()))
                .collect(),
            message: r.message.clone(),
        }
    }
}

/// A run's files, as its directory holds them now.
pub fn load(run: &RunDir) -> Result<Sources, ReportError> {
    let record = RunRecord::read(&run.path).map_err(ReportError::Journal)?;
    let path = run.events_path();
    let (events, _) = read::read_events(&path).map_err(|source| ReportError::Read {
        path: path.clone(),
        source,
    })?;
    let mut sources = Sources {
        record,
        events,
        preflight: None,
        before: Vec::new(),
        after: Vec::new(),
        logs: BTreeMap::new(),
        running: run.is_running(),
    };
    read_files(run, &mut sources);
    Ok(sources)
}

/// The pre-flight's table and rows and the hosts' logs, as they are now: a file not
/// written yet (or unreadable) is left out of the page.
pub(super) fn read_files(run: &RunDir, sources: &mut Sources) {
    sources.preflight = std::fs::read_to_string(run.path.join("preflight.txt")).ok();
    let rows = |name: &str| -> Vec<Before> {
        std::fs::read(run.path.join(name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    };
    sources.before = rows("preflight.json");
    sources.after = rows("after.json");
    for batch in &sources.record.plan {
        for host in &batch.hosts {
            if let Ok(bytes) = std::fs::read(run.host_log_path(host)) {
                let log = String::from_utf8_lossy(&bytes).into_owned();
                sources.logs.insert(host.clone(), log);
            }
        }
    }
}

/// Writes `html` to `path` whole, or leaves the old page.
pub fn write(path: &Path, html: &str) -> Result<(), ReportError> {
    crate::journal::write_atomically(path, html.as_bytes()).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(host: &str, version: &str) -> PreflightResult {
        PreflightResult {
            host: host.into(),
            outcome: Outcome::Ok,
            report: vec![("version".into(), format!(" {version}\n"))],
            message: None,
            version: Some(version.into()),
        }
    }

    #[test]
    fn a_resume_s_pre_flight_keeps_the_earlier_hosts_rows() {
        let first = preflight_json(&[result("a", "v1"), result("b", "v1")], None);
        let again = preflight_json(&[result("b", "v2")], Some(first.as_bytes()));
        let rows: Vec<Before> = serde_json::from_str(&again).expect("rows");
        let seen: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.host.as_str(), r.report["version"].as_str()))
            .collect();
        assert_eq!(seen, vec![("a", "v1"), ("b", "v2")]);
    }
}
