//! Connections kept from a host's fleet-wide pre-flight to its turn in the run, with what
//! the pre-flight found on it, and from the end of its turn to the pauses that verify it:
//! one login per host for the whole run.
//!
//! Every kept connection holds a descriptor for as long as its host waits. Past the budget
//! the process can spare, the connections of the hosts needed last (the highest plan
//! rank) are closed, and those hosts reconnect at their turn; what their pre-flight found
//! is kept either way. A host done with its turn keeps its connection for the pauses only
//! where the budget has room: it never takes the place of a host still waiting.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::Instant;

use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use flate2::Compression;

use crate::cksum::Cksum;
use crate::mutex::lock;
use crate::registered::Registered;
use crate::vars::{ContentNotes, HostVars, Vars};

/// What a host's pre-flight established, and when.
#[derive(Debug, Clone)]
pub struct Findings {
    pub at: Instant,
    /// What the pre-flight steps registered, by name. A result holds its texts only: its
    /// line lists are made when its value is.
    registered: Held,
    /// What the playbook's `recheck` step printed (its stdout), when it ran: its sum, which
    /// is all a re-check compares, and a few bytes where the output can be tens of kB.
    pub probe: Option<Cksum>,
    /// What the templates noted about the registered values.
    notes: ContentNotes,
}

/// What the pre-flight steps registered, by name.
pub type Outputs = indexmap::IndexMap<String, Registered>;

/// The texts the waiting hosts' findings may hold as they are, beyond which they are
/// deflated: docker's JSON takes tens of kB a host, a few once deflated, but deflating it
/// only to inflate it at the host's turn was 4-5 % of the controller's CPU. This keeps a
/// hundred hosts' as they are, and those needed first of a thousand (the pre-flight keeps
/// them in the plan's order).
const PLAIN: usize = 16 << 20;

/// What the pre-flight steps registered, as they are or deflated.
#[derive(Debug, Clone)]
enum Held {
    Plain(Outputs),
    Deflated(Vec<u8>),
}

impl Findings {
    /// Findings made now of what the pre-flight steps registered, and of what the
    /// templates noted about those values: they read back exactly, so the notes hold.
    pub fn new(outputs: Outputs, probe: Option<Cksum>, notes: ContentNotes) -> Findings {
        Findings {
            at: Instant::now(),
            registered: Held::Plain(outputs),
            probe,
            notes,
        }
    }

    /// The size of the texts held as they are.
    fn plain_bytes(&self) -> usize {
        match &self.registered {
            Held::Plain(outputs) => outputs.values().map(Registered::text_len).sum(),
            Held::Deflated(_) => 0,
        }
    }

    fn deflated(self) -> Findings {
        let registered = match self.registered {
            Held::Plain(outputs) => Held::Deflated(deflate(&outputs)),
            deflated => deflated,
        };
        Findings { registered, ..self }
    }

    /// Lays what the pre-flight steps registered over `vars`, with what was noted about
    /// the values.
    pub fn onto(&self, vars: &mut HostVars) {
        vars.overlay_noted(self.vars(), &self.notes);
    }

    /// What the pre-flight steps registered, as templates read it.
    fn vars(&self) -> Vars {
        let value = |(name, output): (String, Registered)| (name, output.into_value());
        let outputs = match &self.registered {
            Held::Plain(outputs) => outputs.clone(),
            Held::Deflated(bytes) => inflate(bytes),
        };
        outputs.into_iter().map(value).collect()
    }
}

/// Serialized whole, then compressed in one go: serde_json writes in small pieces, and
/// each write into the encoder cleared a fresh output buffer (6 % of the controller's
/// CPU at 200 hosts).
fn deflate(outputs: &Outputs) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::fast());
    // Writing into memory fails only when memory does.
    let json = serde_json::to_vec(outputs).unwrap_or_default();
    match (encoder.write_all(&json), encoder.finish()) {
        (Ok(()), Ok(bytes)) => bytes,
        _ => Vec::new(),
    }
}

/// What [`deflate`] made; as nothing else writes it, it reads back whole. Inflated whole
/// before it is parsed: serde_json reads a reader a byte at a time.
fn inflate(bytes: &[u8]) -> Outputs {
    let mut json = Vec::new();
    match DeflateDecoder::new(bytes).read_to_end(&mut json) {
        Ok(_) => serde_json::from_slice(&json).unwrap_or_default(),
        Err(_) => Outputs::new(),
    }
}

/// A host waiting for its turn.
struct Waiting<C> {
    /// Where the host stands in the plan: the lower, the sooner it is needed.
    rank: usize,
    conn: Option<C>,
    findings: Findings,
}

struct Store<C> {
    hosts: HashMap<String, Waiting<C>>,
    /// Connections of hosts done with their turn, for the pauses' verifications; `None`
    /// while a verification runs on it, its place held.
    verified: HashMap<String, Option<C>>,
    /// Connections held in `hosts` and `verified`.
    open: usize,
    /// The texts `hosts`' findings hold as they are (see [`PLAIN`]).
    plain: usize,
    /// What the pre-flight could spare (the last budget [`Kept::keep`] was given), or
    /// the run without one ([`Kept::budget_unless_set`]).
    budget: Option<usize>,
}

/// The waiting hosts of one run. Shared by the pre-flight (which fills it) and the hosts'
/// runs (which take from it), through the [`Connector`](super::Connector).
pub struct Kept<C> {
    store: Mutex<Store<C>>,
}

impl<C> Default for Kept<C> {
    fn default() -> Self {
        Kept {
            store: Mutex::new(Store {
                hosts: HashMap::new(),
                verified: HashMap::new(),
                open: 0,
                plain: 0,
                budget: None,
            }),
        }
    }
}

impl<C> std::fmt::Debug for Kept<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept")
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl<C> Kept<C> {
    fn store(&self) -> std::sync::MutexGuard<'_, Store<C>> {
        lock(&self.store)
    }

    /// Keeps `host`'s findings, and its connection while at most `budget` are held. Returns
    /// the connection that does not fit, to be closed by the caller: this one, or the one
    /// of the waiting host needed last when that one is needed later than `host`.
    pub fn keep(
        &self,
        host: &str,
        rank: usize,
        conn: C,
        findings: Findings,
        budget: usize,
    ) -> Option<C> {
        // Deflated without the lock: every host's turn takes from the store meanwhile.
        let findings = if self.room_for_plain(findings.plain_bytes()) {
            findings
        } else {
            findings.deflated()
        };
        let mut store = self.store();
        store.budget = Some(budget);
        let mut spare = None;
        let mut conn = Some(conn);
        if store.open >= budget {
            let last = store
                .hosts
                .iter_mut()
                .filter(|(_, w)| w.conn.is_some() && w.rank > rank)
                .max_by_key(|(_, w)| w.rank);
            match last {
                Some((_, waiting)) => spare = waiting.conn.take(),
                None => spare = conn.take(),
            }
            if conn.is_some() {
                store.open -= 1;
            }
        }
        store.open += usize::from(conn.is_some());
        let waiting = Waiting {
            rank,
            conn,
            findings,
        };
        if let Some(old) = store.hosts.insert(host.to_string(), waiting) {
            store.open -= usize::from(old.conn.is_some());
            store.plain -= old.findings.plain_bytes();
            spare = spare.or(old.conn);
        }
        spare
    }

    /// Whether findings of `bytes` of texts fit in [`PLAIN`]; if they do, counted there.
    fn room_for_plain(&self, bytes: usize) -> bool {
        let mut store = self.store();
        let fits = store.plain + bytes <= PLAIN;
        if fits {
            store.plain += bytes;
        }
        fits
    }

    /// What `host`'s pre-flight left for its turn: its connection (if it was kept) and its
    /// findings. Taken once: a second call finds nothing.
    pub fn take(&self, host: &str) -> Option<(Option<C>, Findings)> {
        let mut store = self.store();
        let waiting = store.hosts.remove(host)?;
        store.open -= usize::from(waiting.conn.is_some());
        store.plain -= waiting.findings.plain_bytes();
        Some((waiting.conn, waiting.findings))
    }

    /// Keeps the connection of `host`, done with its turn, for the pauses that verify it:
    /// in the place it holds (see [`Kept::take_verified`]), else if the budget has room.
    /// Hands it back, to be closed by the caller, when it does not fit.
    pub fn keep_verified(&self, host: &str, conn: C) -> Option<C> {
        let mut store = self.store();
        let room = store.open < store.budget.unwrap_or(0);
        match store.verified.get_mut(host) {
            Some(place) => place.replace(conn),
            None if room => {
                store.open += 1;
                store.verified.insert(host.to_string(), Some(conn));
                None
            }
            None => Some(conn),
        }
    }

    /// Sets the budget of a run whose pre-flight kept nothing (or did not run).
    pub fn budget_unless_set(&self, budget: impl FnOnce() -> usize) {
        let mut store = self.store();
        store.budget = store.budget.or_else(|| Some(budget()));
    }

    /// The connection `host` kept for its verifications, if it did. Its place stays
    /// held, so that another host cannot take it while this one is verified, until the
    /// connection is kept again or the place given up ([`Kept::give_up_verified`]).
    pub fn take_verified(&self, host: &str) -> Option<C> {
        self.store().verified.get_mut(host)?.take()
    }

    /// Gives up the place `host` held for its verifications (its connection was closed).
    pub fn give_up_verified(&self, host: &str) {
        let mut store = self.store();
        if store.verified.remove(host).is_some() {
            store.open -= 1;
        }
    }

    /// The waiting hosts' connections, for the caller to close (a long pause); findings
    /// stay.
    pub fn release_waiting(&self) -> Vec<C> {
        let mut store = self.store();
        let conns: Vec<C> = store
            .hosts
            .values_mut()
            .filter_map(|w| w.conn.take())
            .collect();
        store.open -= conns.len();
        conns
    }

    /// The connections kept for verification, for the caller to close: no pause follows.
    pub fn release_verified(&self) -> Vec<C> {
        let mut store = self.store();
        let places = store.verified.len();
        store.open -= places;
        store.verified.drain().filter_map(|(_, c)| c).collect()
    }

    /// Every connection held, for the caller to close (the run ends); findings stay.
    pub fn release_all(&self) -> Vec<C> {
        let mut all = self.release_waiting();
        all.extend(self.release_verified());
        all
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.store().open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found() -> Findings {
        Findings::new(Outputs::new(), None, ContentNotes::default())
    }

    #[test]
    fn findings_read_back_what_the_preflight_registered_with_its_notes() {
        use crate::vars::{Lookup, Note};
        let text = "[{\"Name\": \"/sl-app\"}]\nsecond line \u{e9}";
        let found = Registered {
            stdout: text.into(),
            rc: -1,
            changed: true,
            ..Default::default()
        };
        // A result whose line lists no template reads is held and read back without them.
        let probe = Registered {
            stdout: "v4.65.0".into(),
            stderr: "a\nb".into(),
            lines: false,
            ..Default::default()
        };
        let mut preflight = HostVars::new(Vars::new());
        let mut outputs = Outputs::new();
        for (name, output) in [("found", found), ("probe", probe)] {
            preflight.insert(name.into(), output.to_value());
            outputs.insert(name.into(), output);
        }
        let note = |id| Note {
            owner: 1,
            id,
            template: false,
        };
        for (id, name) in [(5, "found"), (6, "probe")] {
            preflight
                .notes(name)
                .map(|n| n.get_or(1, name, || note(id)));
        }
        let notes = preflight.content_notes(["found", "probe"]);
        let plain = Findings::new(outputs, None, notes);
        for findings in [plain.clone(), plain.deflated()] {
            let mut turn = HostVars::new(Vars::new());
            findings.onto(&mut turn);
            for (id, name) in [(5, "found"), (6, "probe")] {
                // Exactly, keys in order, with the note that goes with it.
                let read = turn.get(name).expect("registered");
                assert!(crate::template::same(read, preflight.get(name).unwrap()));
                let seen = turn.notes(name).map(|n| n.get_or(1, name, || note(9)).id);
                assert_eq!(seen, Some(id), "{name}'s note carried");
            }
            assert!(turn.get("found").unwrap().get("stdout_lines").is_some());
            assert!(turn.get("probe").unwrap().get("stderr_lines").is_none());
        }
    }

    #[test]
    fn findings_are_kept_as_they_are_up_to_their_budget_then_deflated() {
        let big = || {
            let output = Registered {
                stdout: "x".repeat(PLAIN / 3 + 1),
                ..Default::default()
            };
            let outputs = Outputs::from([("found".to_string(), output)]);
            Findings::new(outputs, None, ContentNotes::default())
        };
        let kept = Kept::default();
        for host in ["a", "b", "c"] {
            kept.keep(host, 0, host, big(), 10);
        }
        let plain = |host| kept.take(host).map(|(_, f)| f.plain_bytes() > 0);
        assert_eq!(plain("a"), Some(true));
        // Room again for one: `c`, deflated when kept, stays so; `d` is kept as it is.
        kept.keep("d", 0, "d", big(), 10);
        assert_eq!(plain("c"), Some(false));
        assert_eq!(plain("d"), Some(true));
        assert_eq!(plain("b"), Some(true));
        assert_eq!(kept.store().plain, 0, "all taken");
    }

    #[test]
    fn within_the_budget_every_connection_is_kept_and_taken_once() {
        let kept = Kept::default();
        assert!(kept.keep("a", 0, "ca", found(), 2).is_none());
        assert!(kept.keep("b", 1, "cb", found(), 2).is_none());
        assert_eq!(kept.open(), 2);
        let (conn, _) = kept.take("a").expect("kept");
        assert_eq!(conn, Some("ca"));
        assert!(kept.take("a").is_none());
        assert_eq!(kept.open(), 1);
    }

    #[test]
    fn past_the_budget_the_host_needed_last_loses_its_connection_not_its_findings() {
        let kept = Kept::default();
        assert!(kept.keep("third", 2, "c3", found(), 2).is_none());
        assert!(kept.keep("second", 1, "c2", found(), 2).is_none());
        // Needed before both: the third's connection goes.
        assert_eq!(kept.keep("first", 0, "c1", found(), 2), Some("c3"));
        // Needed after every one held: its own goes.
        assert_eq!(kept.keep("fourth", 3, "c4", found(), 2), Some("c4"));
        assert_eq!(kept.open(), 2);
        let (conn, _) = kept.take("third").expect("findings kept");
        assert_eq!(conn, None);
        assert_eq!(kept.take("fourth").map(|(c, _)| c), Some(None));
        assert_eq!(kept.take("first").map(|(c, _)| c), Some(Some("c1")));
    }

    #[test]
    fn a_zero_budget_keeps_findings_only_and_a_pause_can_release_all() {
        let kept = Kept::default();
        assert_eq!(kept.keep("a", 0, "ca", found(), 0), Some("ca"));
        assert_eq!(kept.open(), 0);
        kept.keep("b", 1, "cb", found(), 5);
        kept.keep("c", 2, "cc", found(), 5);
        let mut released = kept.release_all();
        released.sort();
        assert_eq!(released, vec!["cb", "cc"]);
        assert_eq!(kept.open(), 0);
        assert!(kept.take("c").is_some_and(|(c, _)| c.is_none()));
    }

    #[test]
    fn a_host_done_keeps_its_connection_for_verification_only_where_the_budget_has_room() {
        let kept = Kept::default();
        // No budget yet: nothing is kept.
        assert_eq!(kept.keep_verified("z", "cz"), Some("cz"));
        kept.keep("a", 0, "ca", found(), 2);
        kept.keep("b", 1, "cb", found(), 2);
        // Both waiting hosts hold the budget: a host done cannot take a place.
        assert_eq!(kept.keep_verified("z", "cz"), Some("cz"));
        let (conn, _) = kept.take("a").expect("kept");
        assert_eq!(kept.keep_verified("a", conn.expect("a's")), None);
        assert_eq!(kept.open(), 2);
        // A long pause closes the waiting host's, not the one verified during it.
        assert_eq!(kept.release_waiting(), vec!["cb"]);
        assert_eq!(kept.open(), 1);
        kept.keep_verified("y", "cy");
        assert_eq!(kept.release_all().len(), 2);
        assert_eq!(kept.open(), 0);
    }

    #[test]
    fn a_host_being_verified_holds_its_place_until_it_keeps_or_gives_it_up() {
        let kept = Kept::default();
        kept.budget_unless_set(|| 1);
        kept.budget_unless_set(|| 5);
        assert_eq!(kept.keep_verified("a", "ca"), None);
        assert_eq!(kept.take_verified("a"), Some("ca"));
        assert_eq!(kept.take_verified("a"), None, "taken once");
        // While `a` is verified, its place is not free for another.
        assert_eq!(kept.keep_verified("b", "cb"), Some("cb"));
        assert_eq!(kept.keep_verified("a", "ca2"), None);
        assert_eq!(
            kept.keep_verified("a", "ca3"),
            Some("ca2"),
            "the older handed back"
        );
        assert_eq!(kept.open(), 1);
        kept.take_verified("a");
        kept.give_up_verified("a");
        assert_eq!(kept.open(), 0);
        assert_eq!(kept.keep_verified("b", "cb"), None);
        // A place held while a verification runs is counted, and released, too.
        kept.take_verified("b");
        assert!(kept.release_verified().is_empty());
        assert_eq!(kept.open(), 0);
    }

    #[test]
    fn keeping_a_host_twice_hands_back_the_older_connection() {
        let kept = Kept::default();
        kept.keep("a", 0, "old", found(), 5);
        assert_eq!(kept.keep("a", 0, "new", found(), 5), Some("old"));
        assert_eq!(kept.open(), 1);
    }
}
