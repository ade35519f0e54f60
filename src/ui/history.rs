//! `fleetup history`: one row per recorded run, for people (a table) or programs (JSON
//! lines, a contract: add fields, never rename them).

use serde_json::json;

use crate::journal::read::{Ended, Summary};
use crate::journal::RunRecord;
use crate::ui::text::{align, clean, duration, halt_reason};

/// A run as history lists it.
pub struct Entry<'a> {
    pub record: &'a RunRecord,
    pub summary: &'a Summary,
}

impl Entry<'_> {
    /// The version(s) the run upgrades to, and on which hosts: staging and production
    /// runs of one version must read apart.
    fn target(&self) -> String {
        let hosts = self.record.limit.as_deref().unwrap_or(&self.record.pattern);
        if self.record.target.is_empty() {
            hosts.to_string()
        } else {
            format!("{} on {hosts}", self.record.target.join(","))
        }
    }

    fn selection(&self) -> String {
        match &self.record.limit {
            Some(limit) => format!("{} --limit {limit}", self.record.pattern),
            None => self.record.pattern.clone(),
        }
    }

    /// How the run ended, in words, with its attempts when it was resumed.
    pub fn ended(&self) -> String {
        let s = self.summary;
        let mut text = match &s.ended {
            Ended::Completed { exit_code } => format!("completed (exit {exit_code})"),
            Ended::Halted(reason) => format!("halted: {}", halt_reason(reason)),
            Ended::NotStarted
                if self.record.gate.as_ref().map(|g| g.verdict)
                    == Some(crate::events::Verdict::Refused) =>
            {
                "refused by the promotion gate".to_string()
            }
            other => other.word().to_string(),
        };
        if s.attempts > 1 {
            text.push_str(&format!(", {} attempts", s.attempts));
        }
        if !s.down.is_empty() {
            let names: Vec<_> = s.down.iter().map(|h| clean(h)).collect();
            text.push_str(&format!("; DOWN: {}", names.join(", ")));
        }
        text
    }

    fn playbook(&self) -> String {
        self.record
            .playbook
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        let s = self.summary;
        json!({
            "run_id": self.record.run_id,
            "started": self.record.started,
            "playbook": self.record.playbook,
            "name": self.record.playbook_name,
            "target": self.record.target,
            "selection": self.selection(),
            "operator": self.record.operator,
            "controller": self.record.controller,
            "hosts": s.hosts,
            "ok": s.ok,
            "failed": s.failed,
            "duration_ms": s.duration.as_millis() as u64,
            "attempts": s.attempts,
            "ended": s.ended.word(),
            "down": s.down,
            "exit_code": s.exit_code,
        })
    }
}

/// The first line of `fleetup show`: which run, whose, and how it ended.
pub fn heading(e: &Entry<'_>) -> String {
    let r = e.record;
    format!(
        "run {} of {} ({}) by {} on {}, started {}: {}, {} of work",
        clean(&r.run_id),
        clean(&r.playbook.display().to_string()),
        clean(&r.playbook_name),
        clean(&r.operator),
        clean(&r.controller),
        clean(&r.started),
        e.ended(),
        duration(e.summary.duration),
    )
}

pub fn table(entries: &[Entry<'_>]) -> String {
    let mut rows = vec![[
        "RUN", "STARTED", "PLAYBOOK", "TARGET", "OK", "FAILED", "DURATION", "ENDED",
    ]
    .map(String::from)
    .to_vec()];
    for e in entries {
        let s = e.summary;
        rows.push(vec![
            clean(&e.record.run_id).into_owned(),
            clean(&e.record.started).into_owned(),
            clean(&e.playbook()).into_owned(),
            clean(&e.target()).into_owned(),
            format!("{}/{}", s.ok, s.hosts),
            s.failed.to_string(),
            duration(s.duration),
            clean(&e.ended()).into_owned(),
        ]);
    }
    align(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::HaltReason;
    use std::time::Duration;

    fn record(id: &str) -> RunRecord {
        serde_json::from_value(json!({
            "run_id": id, "started": "2026-12-02T06:40:00Z", "operator": "alice",
            "controller": "ctl", "pid": 1, "fleetup_version": "0.1.0",
            "playbook": "/x/playbooks/simplelogin-upgrade.yml", "playbook_name": "Upgrade",
            "pattern": "simplelogin", "limit": "production", "inventories": [],
            "extra_vars": {}, "redacted": [], "target": ["v4.66.1"],
            "rollout": {"serial": "1", "canary": "none", "max_fail_percentage": 0.0,
                        "order": "inventory", "forks": 10},
            "plan": [], "seed": null, "playbook_sha256": "", "hosts_sha256": {}
        }))
        .unwrap()
    }

    #[test]
    fn rows_and_json() {
        let (r1, r2) = (record("r1"), record("r2"));
        let done = Summary {
            attempts: 2,
            hosts: 8,
            ok: 8,
            failed: 0,
            duration: Duration::from_millis(12_345),
            ended: Ended::Completed { exit_code: 0 },
            exit_code: Some(0),
            down: vec![],
        };
        let halted = Summary {
            attempts: 1,
            hosts: 8,
            ok: 3,
            failed: 1,
            duration: Duration::from_millis(4_000),
            ended: Ended::Halted(HaltReason::CanaryFailed { failed: 1 }),
            exit_code: Some(2),
            down: vec!["prod-02".into()],
        };
        let entries = [
            Entry {
                record: &r1,
                summary: &done,
            },
            Entry {
                record: &r2,
                summary: &halted,
            },
        ];
        let text = table(&entries);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("RUN  STARTED               PLAYBOOK                 TARGET                 OK   FAILED  DURATION  ENDED"), "{text}");
        assert!(lines[1].contains("  v4.66.1 on production  "), "{text}");
        assert!(
            lines[1].ends_with("8/8  0       12.3s     completed (exit 0), 2 attempts"),
            "{text}"
        );
        assert!(lines[2].contains("halted: "), "{text}");
        assert!(lines[2].ends_with("; DOWN: prod-02"), "{text}");
        let j = entries[1].json();
        assert_eq!(j["down"], serde_json::json!(["prod-02"]));
        assert_eq!(j["ended"], "halted");
        assert_eq!(j["exit_code"], 2);
        assert_eq!(j["selection"], "simplelogin --limit production");
        assert_eq!(j["duration_ms"], 4000);
    }
}
