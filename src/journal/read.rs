//! Reading a run's journal back: its events, where each host got to, what a resume has
//! left to do, the one-line summary `fleetup history` shows ([`summary`]) and what the
//! promotion gate and the estimates take from past runs ([`PastRun`]). Each is read from the
//! run's [`RunState`], the one fold of its events; only reading the file is I/O here.

use std::path::Path;

use indexmap::IndexMap;

use crate::events::Stamped;
use crate::plan::Batch;
use crate::state::RunState;

pub use super::past_run::{host_estimate, PastRun};
pub use super::summary::{summary, Summary};
pub use crate::state::{Ended, Finish, HostState, Resumption};

/// The events of `events.jsonl`, and how many lines could not be read. A last line without
/// its newline is the write a `kill -9` cut short: it is left out, not counted.
pub fn read_events(path: &Path) -> std::io::Result<(Vec<Stamped>, usize)> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(parse_events(&text))
}

pub fn parse_events(bytes: &[u8]) -> (Vec<Stamped>, usize) {
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => &bytes[..=i],
        None => &[],
    };
    let mut events = Vec::new();
    let mut unreadable = 0;
    for line in complete.split(|&b| b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Stamped>(line) {
            Ok(e) => events.push(e),
            Err(_) => unreadable += 1,
        }
    }
    (events, unreadable)
}

/// Every host that was started, in the order it was first started, with its last state.
pub fn host_states(events: &[Stamped]) -> IndexMap<String, HostState> {
    RunState::of(events).host_states()
}

/// What a resume does when the hosts stand as `states` says.
pub fn resumption(plan: &[Batch], states: &IndexMap<String, HostState>) -> Resumption {
    crate::state::resumption(plan, |host| states.get(host).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Interrupted;
    use crate::state::sample::{batches, killed_in_batch_2};

    #[test]
    fn resume_leaves_finished_hosts_and_retries_the_rest_in_their_batches() {
        let states = host_states(&killed_in_batch_2());
        let r = resumption(&batches(), &states);
        assert_eq!(r.finished, ["a", "b"]);
        assert_eq!(r.retry, ["c", "d"]);
        assert_eq!(
            r.interrupted,
            [Interrupted {
                host: "c".into(),
                step: "stop".into()
            }]
        );
        let left: Vec<(Vec<String>, bool)> = r
            .batches
            .iter()
            .map(|b| (b.hosts.clone(), b.canary))
            .collect();
        assert_eq!(
            left,
            [
                (vec![], true),
                (vec!["c".to_string(), "d".to_string()], false),
                (vec!["e".to_string()], false)
            ]
        );
    }

    #[test]
    fn a_killed_run_reads_back_without_its_partial_line() {
        let mut text = String::new();
        for e in killed_in_batch_2() {
            text.push_str(&serde_json::to_string(&e).unwrap());
            text.push('\n');
        }
        let whole = parse_events(text.as_bytes());
        assert_eq!(whole.0.len(), 11);
        assert_eq!(whole.1, 0);
        text.push_str("{\"at_ms\":1500,\"event\":\"host_fin");
        let (events, unreadable) = parse_events(text.as_bytes());
        assert_eq!((events.len(), unreadable), (11, 0));
        assert_eq!(events, killed_in_batch_2());
        let broken = "not json\n{\"at_ms\":1,\"event\":\"aborting\"}\n";
        assert_eq!(parse_events(broken.as_bytes()).1, 1);
    }
}
