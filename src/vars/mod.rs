//! Variables: the values templates see, and the `-e` extra vars of the command line.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

use crate::diagnostic::Diagnostic;
use crate::mutex::lock;
use crate::yaml::Document;

mod layered;
pub use layered::Layered;

/// Variables by name, in the order they were first set.
pub type Vars = serde_json::Map<String, Value>;

/// Where a template finds its variables: one set of them, or a few laid over each other
/// ([`Over`]) so that a step's own variables and its result need no copy of the host's.
pub trait Lookup {
    fn get(&self, name: &str) -> Option<&Value>;
    /// Every name defined, each once (for suggestions when one is misspelt).
    fn names(&self) -> Vec<&str>;
    fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    /// Where what a renderer noted about `name`'s value is kept, if these variables keep
    /// notes ([`HostVars`] does).
    fn notes(&self, _name: &str) -> Option<&Notes> {
        None
    }
    /// What renderer `owner` noted about `name` as a template ([`Derived`]), if these
    /// variables keep notes and nothing laid over them sets a variable it read.
    fn derived(&self, _owner: u64, _name: &str) -> Option<Derived> {
        None
    }
    /// Keeps `derived` about `name`, where these variables keep notes and it holds.
    fn keep_derived(&self, _name: &str, _derived: Derived) {}
    /// Whether `name` holds what a step registered: a host's output, data that is never
    /// rendered, whatever braces it holds (Ansible's `unsafe`). Rendered, a host could have
    /// the controller run `{{ lookup('file', ...) }}` and read the answer back.
    fn registered(&self, _name: &str) -> bool {
        false
    }
}

/// What a renderer worked out about each variable's value, kept beside the variables and
/// dropped whenever one changes: the templates note the id they gave a value, so that a
/// host's 94 kB registered `docker inspect` is not hashed whole again by every template
/// that reads it. Opaque here: `owner` says whose notes they are.
#[derive(Default)]
pub struct Notes(Mutex<Kept>);

#[derive(Clone, Default)]
struct Kept {
    own: NoteMap<Note>,
    /// About the variables that are templates: a change drops those that read what
    /// changed.
    derived: NoteMap<Derived>,
}

/// By variable name; names are hashed on every template's read.
type NoteMap<T> = HashMap<String, T, foldhash::fast::RandomState>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Note {
    pub owner: u64,
    pub id: u64,
    pub template: bool,
}

/// What a renderer worked out about a variable that is a template: the id of its value
/// (which stands for the ids of all it reads, and theirs), and the names it reads, there
/// or not, directly or through others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Derived {
    pub owner: u64,
    pub id: u64,
    pub reads: NameSet,
}

impl Derived {
    /// Whether this, noted about `name`, still holds where `changed` is set anew.
    fn holds_despite(&self, name: &str, changed: &str) -> bool {
        name != changed && !self.reads.may_hold(changed)
    }
}

impl Notes {
    /// The note `owner` made on `name`, else the one `work_out` makes (and is kept).
    pub fn get_or(&self, owner: u64, name: &str, work_out: impl FnOnce() -> Note) -> Note {
        if let Some(note) = self.lock().own.get(name).filter(|n| n.owner == owner) {
            return *note;
        }
        let note = work_out();
        self.lock().own.insert(name.to_string(), note);
        note
    }

    fn derived(&self, owner: u64, name: &str) -> Option<Derived> {
        self.lock()
            .derived
            .get(name)
            .filter(|d| d.owner == owner)
            .copied()
    }

    fn keep_derived(&self, name: &str, derived: Derived) {
        self.lock().derived.insert(name.to_string(), derived);
    }

    fn forget(&mut self, name: &str) {
        let kept = self.0.get_mut().unwrap_or_else(PoisonError::into_inner);
        kept.own.remove(name);
        kept.derived
            .retain(|derived, d| d.holds_despite(derived, name));
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        lock(&self.0)
    }
}

impl Clone for Notes {
    /// The notes are about the values, which a clone has too.
    fn clone(&self) -> Self {
        Notes(Mutex::new(self.lock().clone()))
    }
}

/// A host's variables, kept with the renderer's [`Notes`] on them: every change goes
/// through here, so that a note never outlives the value it is about.
#[derive(Clone, Default)]
pub struct HostVars {
    vars: Layered,
    notes: Notes,
    /// The names set since the variables were made: what the host registered, or had
    /// laid from its pre-flight's findings.
    registered: Vec<String>,
}

impl HostVars {
    pub fn new(vars: impl Into<Layered>) -> Self {
        HostVars {
            vars: vars.into(),
            notes: Notes::default(),
            registered: Vec::new(),
        }
    }

    /// Sets what a step registered under `name`: data from the host, never rendered as a
    /// template ([`Lookup::registered`]).
    pub fn insert(&mut self, name: String, value: Value) {
        self.notes.forget(&name);
        if !self.registered.contains(&name) {
            self.registered.push(name.clone());
        }
        self.vars.insert(name, value);
    }

    /// The ids renderer `owner` noted for the values that read what the host registered,
    /// directly or through others: values no other host shares unless it registered the
    /// same (one worked out from the playbook's defaults alone serves every host).
    pub fn registered_derived_ids(&self, owner: u64) -> Vec<u64> {
        let reads_registered = |d: &&Derived| {
            d.owner == owner && self.registered.iter().any(|name| d.reads.may_hold(name))
        };
        let kept = self.notes.lock();
        kept.derived
            .values()
            .filter(reads_registered)
            .map(|d| d.id)
            .collect()
    }

    /// What was noted about the values of `names`, each on its own: the id of its content.
    pub fn content_notes<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ContentNotes {
        let kept = self.notes.lock();
        let noted = |name: &str| Some((name.to_string(), *kept.own.get(name)?));
        ContentNotes(names.into_iter().filter_map(noted).collect())
    }

    /// [`overlay`] of values that are, exactly, those `notes` were made on
    /// ([`HostVars::content_notes`]): their notes hold again, so their content is not
    /// hashed again. The values are moved in: a waiting host's findings are made whole for
    /// this alone.
    pub fn overlay_noted(&mut self, over: Vars, notes: &ContentNotes) {
        let laid: Vec<&(String, Note)> = notes
            .0
            .iter()
            .filter(|(name, _)| over.contains_key(name))
            .collect();
        for (name, value) in over {
            self.insert(name, value);
        }
        let kept = self
            .notes
            .0
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for (name, note) in laid {
            kept.own.insert(name.clone(), *note);
        }
    }
}

/// What a renderer noted about some of a host's values, to go with them: a waiting host's
/// registered outputs, laid again at its turn, keep the ids their content got in its
/// pre-flight (which cost a digest of the whole 94 kB `docker inspect`).
#[derive(Clone, Debug, Default)]
pub struct ContentNotes(Vec<(String, Note)>);

impl Lookup for HostVars {
    fn get(&self, name: &str) -> Option<&Value> {
        self.vars.get(name)
    }

    fn names(&self) -> Vec<&str> {
        Lookup::names(&self.vars)
    }

    fn notes(&self, name: &str) -> Option<&Notes> {
        self.vars.contains_key(name).then_some(&self.notes)
    }

    fn derived(&self, owner: u64, name: &str) -> Option<Derived> {
        self.notes.derived(owner, name)
    }

    fn keep_derived(&self, name: &str, derived: Derived) {
        if self.vars.contains_key(name) {
            self.notes.keep_derived(name, derived);
        }
    }

    fn registered(&self, name: &str) -> bool {
        self.registered.iter().any(|r| r == name)
    }
}

impl Lookup for Vars {
    fn get(&self, name: &str) -> Option<&Value> {
        serde_json::Map::get(self, name)
    }

    fn names(&self) -> Vec<&str> {
        self.keys().map(String::as_str).collect()
    }
}

/// `top` laid over `base`: what [`overlay`] on a copy of `base` would give.
pub struct Over<'a> {
    pub base: &'a dyn Lookup,
    pub top: std::borrow::Cow<'a, Vars>,
    /// Whether `top` holds what steps registered (see [`Lookup::registered`]) rather than
    /// variables, which may be templates.
    pub registered: bool,
}

impl Lookup for Over<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        serde_json::Map::get(&self.top, name).or_else(|| self.base.get(name))
    }

    fn notes(&self, name: &str) -> Option<&Notes> {
        if self.top.contains_key(name) {
            None
        } else {
            self.base.notes(name)
        }
    }

    fn derived(&self, owner: u64, name: &str) -> Option<Derived> {
        let derived = self.base.derived(owner, name)?;
        self.holds(name, derived).then_some(derived)
    }

    fn keep_derived(&self, name: &str, derived: Derived) {
        if self.holds(name, derived) {
            self.base.keep_derived(name, derived);
        }
    }

    fn registered(&self, name: &str) -> bool {
        if self.top.contains_key(name) {
            self.registered
        } else {
            self.base.registered(name)
        }
    }

    fn names(&self) -> Vec<&str> {
        let mut names = self.base.names();
        names.extend(self.top.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        names
    }
}

impl Over<'_> {
    /// Whether what was worked out about `name` below holds here too: it does not if this
    /// layer sets `name` or (perhaps) a variable it reads.
    fn holds(&self, name: &str, derived: Derived) -> bool {
        self.top.keys().all(|k| derived.holds_despite(name, k))
    }
}

/// A set of variable names, as two bits of each name's hash: it may say that it holds a
/// name it does not (which costs a render), never the reverse. 256 bits keep that rare
/// for the ~30 names a derived fact reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameSet([u64; 4]);

impl NameSet {
    pub fn of(name: &str) -> NameSet {
        let hash = foldhash::fast::FixedState::with_seed(0).hash_one(name);
        let mut set = NameSet::default();
        for bit in [hash & 0xff, (hash >> 8) & 0xff] {
            set.0[(bit >> 6) as usize] |= 1 << (bit & 63);
        }
        set
    }

    pub fn with(mut self, other: NameSet) -> NameSet {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a |= b;
        }
        self
    }

    pub fn may_hold(self, name: &str) -> bool {
        let one = NameSet::of(name);
        self.0.iter().zip(one.0).all(|(a, b)| a & b == b)
    }
}

/// Sets every variable of `over` in `base`, replacing whole values (Ansible's default
/// `hash_behaviour = replace`: a dict set at a higher level replaces the lower one).
pub fn overlay(base: &mut Vars, over: &Vars) {
    for (k, v) in over {
        base.insert(k.clone(), v.clone());
    }
}

/// Reads one `-e` argument as Ansible does: `@file` (YAML or JSON), an inline JSON or YAML
/// mapping (`{"a": 1}`), or `key=value` pairs separated by spaces (values are strings).
pub fn parse_extra_vars(arg: &str) -> Result<Vars, Diagnostic> {
    let cli = Path::new("<command line -e>");
    if let Some(file) = arg.strip_prefix('@') {
        let path = Path::new(file);
        return mapping(&Document::read(path, "extra vars file")?);
    }
    let trimmed = arg.trim_start();
    if trimmed.starts_with('{') {
        return mapping(&Document::parse(cli, trimmed)?);
    }
    let words = shell_words::split(arg)
        .map_err(|e| Diagnostic::new(cli, arg, format!("cannot split into words: {e}")))?;
    let mut vars = Vars::new();
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            return Err(Diagnostic::new(cli, word.as_str(), "expected KEY=VALUE")
                .hint("or @FILE.yml, or a JSON mapping such as '{\"key\": 1}'"));
        };
        check_name(key).map_err(|m| Diagnostic::new(cli, key, m))?;
        vars.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(vars)
}

fn mapping(doc: &Document) -> Result<Vars, Diagnostic> {
    if doc.value.is_null() {
        return Ok(Vars::new());
    }
    let vars: Vars = doc.get("")?;
    for key in vars.keys() {
        check_name(key).map_err(|m| doc.error(key, m))?;
    }
    Ok(vars)
}

/// A variable name must be usable in a template: an identifier, as in Ansible.
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid variable name (letters, digits and _, not starting with a digit)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_value_pairs_are_strings() {
        let v = parse_extra_vars("sl_version=v4.66.1 forks=5 'msg=a b'").unwrap();
        assert_eq!(v["sl_version"], json!("v4.66.1"));
        assert_eq!(v["forks"], json!("5"));
        assert_eq!(v["msg"], json!("a b"));
    }

    #[test]
    fn inline_mapping_keeps_types() {
        let v = parse_extra_vars(r#"{"n": 3, "ok": true}"#).unwrap();
        assert_eq!(v["n"], json!(3));
        assert_eq!(v["ok"], json!(true));
    }

    #[test]
    fn bad_forms_are_refused() {
        assert!(parse_extra_vars("novalue")
            .unwrap_err()
            .message
            .contains("KEY=VALUE"));
        assert!(parse_extra_vars("1x=2")
            .unwrap_err()
            .message
            .contains("not a valid"));
        let e = parse_extra_vars("@/nonexistent/vars.yml").unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
    }

    #[test]
    fn overlay_replaces_whole_values() {
        let mut base = parse_extra_vars(r#"{"d": {"a": 1, "b": 2}, "x": 1}"#).unwrap();
        overlay(&mut base, &parse_extra_vars(r#"{"d": {"a": 9}}"#).unwrap());
        assert_eq!(base["d"], json!({"a": 9}));
        assert_eq!(base["x"], json!(1));
    }

    #[test]
    fn a_name_set_holds_every_name_put_in_it() {
        let names: Vec<String> = (0..40).map(|i| format!("sl_fact_{i}")).collect();
        let set = names
            .iter()
            .fold(NameSet::default(), |set, n| set.with(NameSet::of(n)));
        assert!(names.iter().all(|n| set.may_hold(n)));
        // Two bits a name in 256: another name is seldom taken for one of 40.
        let others = (0..1000)
            .filter(|i| set.may_hold(&format!("other_{i}")))
            .count();
        assert!(others < 150, "{others} of 1000");
    }

    #[test]
    fn a_layer_hides_what_was_worked_out_from_a_variable_it_sets() {
        let host = HostVars::new(parse_extra_vars(r#"{"a": "{{ b }}", "b": 1, "c": 2}"#).unwrap());
        let derived = Derived {
            owner: 1,
            id: 7,
            reads: NameSet::of("b"),
        };
        host.keep_derived("a", derived);
        assert_eq!(host.derived(1, "a"), Some(derived));
        assert_eq!(host.derived(2, "a"), None, "another renderer's");
        let layer = |top: &str| Over {
            base: &host,
            top: std::borrow::Cow::Owned(parse_extra_vars(top).unwrap()),
            registered: false,
        };
        assert_eq!(layer(r#"{"c": 3}"#).derived(1, "a"), Some(derived));
        assert_eq!(layer(r#"{"b": 3}"#).derived(1, "a"), None);
        assert_eq!(layer(r#"{"a": 3}"#).derived(1, "a"), None);
        let mut host = host;
        host.insert("c".into(), json!(4));
        assert_eq!(host.derived(1, "a"), Some(derived), "`a` does not read `c`");
        host.insert("b".into(), json!(4));
        assert_eq!(host.derived(1, "a"), None, "`a` reads `b`");
        host.keep_derived("a", derived);
        host.insert("a".into(), json!(4));
        assert_eq!(host.derived(1, "a"), None, "`a` itself");
    }

    #[test]
    fn values_laid_again_with_their_notes_keep_their_ids_and_nothing_else() {
        let noted = |id| {
            move || Note {
                owner: 1,
                id,
                template: false,
            }
        };
        let mut preflight = HostVars::new(parse_extra_vars(r#"{"a": 0}"#).unwrap());
        preflight.insert("found".into(), json!({"stdout": "x"}));
        preflight.insert("probe".into(), json!({"stdout": "y"}));
        let seen =
            |vars: &HostVars, name: &str| vars.notes(name).map(|n| n.get_or(1, name, noted(9)));
        let found_note = preflight
            .notes("found")
            .map(|n| n.get_or(1, "found", noted(5)));
        assert_eq!(found_note, Some(noted(5)()));
        assert_eq!(seen(&preflight, "a"), Some(noted(9)()));
        let carried = preflight.content_notes(["found", "probe", "unregistered"]);
        assert_eq!(carried.0.len(), 1, "only what was noted: {carried:?}");

        let mut turn = HostVars::new(parse_extra_vars(r#"{"a": 0}"#).unwrap());
        let mut found = Vars::new();
        found.insert("found".into(), json!({"stdout": "x"}));
        turn.overlay_noted(found, &carried);
        assert_eq!(seen(&turn, "found"), Some(noted(5)()), "carried");
        assert_eq!(seen(&turn, "a"), Some(noted(9)()), "worked out anew");
        // A note goes only with its own value.
        let mut other = HostVars::new(Vars::new());
        other.overlay_noted(Vars::new(), &carried);
        assert!(other.notes("found").is_none() && other.content_notes(["found"]).0.is_empty());
    }

    #[test]
    fn a_layer_reads_as_the_overlay_of_a_copy_does() {
        let base = parse_extra_vars(r#"{"d": {"a": 1}, "x": 1}"#).unwrap();
        let top = parse_extra_vars(r#"{"d": {"b": 2}, "y": 2}"#).unwrap();
        let mut copy = base.clone();
        overlay(&mut copy, &top);
        let over = Over {
            base: &base,
            top: std::borrow::Cow::Borrowed(&top),
            registered: false,
        };
        for name in ["d", "x", "y", "z"] {
            assert_eq!(Lookup::get(&over, name), Lookup::get(&copy, name), "{name}");
        }
        assert_eq!(over.names(), vec!["d", "x", "y"]);
    }
}
