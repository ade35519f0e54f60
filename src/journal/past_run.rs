//! Past runs as the promotion gate and the estimates read them: which hosts each run took
//! to which version, when, and how long a host took.

use std::time::Duration;

use crate::events::Stamped;
use crate::state::{Finish, RunState};

/// A run of the journal as the promotion gate and the estimates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub id: String,
    pub playbook_name: String,
    /// The versions it took hosts to (`audit.to`).
    pub targets: Vec<String>,
    /// Its hosts that ended ok (not skipped), in the order they ended.
    pub finishes: Vec<Finish>,
}

impl PastRun {
    pub fn new(id: &str, playbook_name: &str, targets: Vec<String>, events: &[Stamped]) -> Self {
        PastRun::of(id, playbook_name, targets, &RunState::of(events))
    }

    /// The run `id` of `playbook_name`, which took its hosts to `targets`, as `state` has it.
    pub fn of(id: &str, playbook_name: &str, targets: Vec<String>, state: &RunState) -> Self {
        PastRun {
            id: id.to_string(),
            playbook_name: playbook_name.to_string(),
            targets,
            finishes: state.finishes(),
        }
    }
}

/// How long a host of `playbook_name` takes, to estimate batches before this run's own
/// hosts tell: the slowest host that changed in the latest run that has one (`this_run`'s
/// earlier attempts first, when resuming). Runs are oldest first.
pub fn host_estimate(
    runs: &[PastRun],
    playbook_name: &str,
    this_run: Option<&str>,
) -> Option<Duration> {
    let slowest = |r: &PastRun| {
        r.finishes
            .iter()
            .filter(|f| f.changed)
            .map(|f| f.duration)
            .max()
    };
    let own = runs.iter().filter(|r| Some(r.id.as_str()) == this_run);
    let others = runs
        .iter()
        .rev()
        .filter(|r| r.playbook_name == playbook_name && Some(r.id.as_str()) != this_run);
    own.chain(others).find_map(slowest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, Outcome};
    use crate::state::sample::host_finished;

    #[test]
    fn estimates_come_from_this_run_first_then_the_latest_run_of_the_playbook() {
        let run = |id: &str, name: &str, secs: &[u64]| {
            let events: Vec<Stamped> = secs
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut e = host_finished(i as u64, &format!("h{i}"), Outcome::Ok);
                    if let Event::HostFinished { duration, .. } = &mut e.event {
                        *duration = Duration::from_secs(*s);
                    }
                    e
                })
                .collect();
            PastRun::new(id, name, vec!["v2".into()], &events)
        };
        let runs = [
            run("r1", "Upgrade", &[10, 30]),
            run("r2", "Upgrade", &[20]),
            run("r3", "Other", &[99]),
            run("r4", "Upgrade", &[]),
            run("r5", "Upgrade", &[7]),
        ];
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs());
        // The latest run of the playbook that has a host: r2 (r4 has none).
        assert_eq!(secs(host_estimate(&runs[..4], "Upgrade", None)), Some(20));
        // A resume of r5 trusts its own earlier attempt.
        assert_eq!(secs(host_estimate(&runs, "Upgrade", Some("r5"))), Some(7));
        assert_eq!(host_estimate(&runs, "Nothing", None), None);
    }
}
