//! Hosts alike to the validator. Its verdict on a template for a host is a function of
//! what the host's variables answered (which names it asked for, and what each held, or
//! that it was not there), so a host whose variables give the same answers gets the same
//! verdict without the template rendered again. A fleet's hosts mostly differ only in what
//! few templates read (`ansible_host`, a port, a directory), and validating 1000 of them
//! was a render of every template for each.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};

use serde_json::Value;

use crate::template::same;
use crate::vars::Lookup;

/// Verdicts kept at once. Hosts alike come together (an inventory lists a group's hosts
/// one after another); a host unlike all of them costs a comparison with each.
const KEPT: usize = 8;

/// A host's variables that note every name asked for.
pub(super) struct Asked<'v> {
    vars: &'v dyn Lookup,
    asked: RefCell<HashSet<String>>,
    listed: Cell<bool>,
}

impl<'v> Asked<'v> {
    fn new(vars: &'v dyn Lookup) -> Self {
        Asked {
            vars,
            asked: RefCell::default(),
            listed: Cell::new(false),
        }
    }
}

impl Lookup for Asked<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        let mut asked = self.asked.borrow_mut();
        if !asked.contains(name) {
            asked.insert(name.to_string());
        }
        self.vars.get(name)
    }

    fn names(&self) -> Vec<&str> {
        self.listed.set(true);
        self.vars.names()
    }

    fn registered(&self, name: &str) -> bool {
        self.vars.registered(name)
    }
}

/// What one host's variables answered.
struct Answers {
    values: Vec<(String, Option<Value>)>,
    /// Every name, when they were listed (a misspelt name's suggestion comes from them).
    names: Option<Vec<String>>,
}

impl Answers {
    fn of(asked: Asked<'_>) -> Self {
        let vars = asked.vars;
        Answers {
            values: asked
                .asked
                .into_inner()
                .into_iter()
                .map(|name| {
                    let value = vars.get(&name).cloned();
                    (name, value)
                })
                .collect(),
            names: asked
                .listed
                .get()
                .then(|| vars.names().into_iter().map(str::to_string).collect()),
        }
    }

    /// Whether `vars` give the same answers. The answer that told them apart is compared
    /// first the next time: hosts mostly differ in the same name or two.
    fn hold_for(&mut self, vars: &dyn Lookup) -> bool {
        // In order: a template that loops over a mapping sees its order.
        let differs = self
            .values
            .iter()
            .position(|(name, value)| !match (vars.get(name), value) {
                (Some(now), Some(then)) => same(now, then),
                (now, then) => now.is_none() && then.is_none(),
            });
        if let Some(i) = differs {
            self.values.swap(0, i);
            return false;
        }
        self.names
            .as_ref()
            .is_none_or(|names| names.iter().map(String::as_str).eq(vars.names()))
    }
}

/// Verdicts by the answers they were found from.
pub(super) struct Verdicts<T> {
    kept: VecDeque<(Answers, T)>,
}

impl<T: Clone> Verdicts<T> {
    pub fn new() -> Self {
        Verdicts {
            kept: VecDeque::with_capacity(KEPT),
        }
    }

    /// The verdict on `vars`: one kept, if these variables answer as those it was found
    /// from did, else the one `find` reaches asking them.
    pub fn of(&mut self, vars: &dyn Lookup, find: impl FnOnce(&Asked<'_>) -> T) -> T {
        for (answers, verdict) in &mut self.kept {
            if answers.hold_for(vars) {
                return verdict.clone();
            }
        }
        let asked = Asked::new(vars);
        let verdict = find(&asked);
        if self.kept.len() == KEPT {
            self.kept.pop_back();
        }
        self.kept.push_front((Answers::of(asked), verdict.clone()));
        verdict
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::vars::Vars;

    fn vars(v: Value) -> Vars {
        v.as_object().cloned().unwrap()
    }

    /// A verdict that reads `app_path` and, when it is `/opt`, `backup_dir` too.
    fn verdict(vars: &dyn Lookup, runs: &Cell<u32>) -> String {
        runs.set(runs.get() + 1);
        match vars.get("app_path").and_then(Value::as_str) {
            Some("/opt") => format!("/opt with {:?}", vars.get("backup_dir")),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn hosts_that_differ_only_in_what_was_not_read_share_a_verdict() {
        let a = vars(json!({"app_path": "/opt", "ansible_host": "10.0.0.1"}));
        let b = vars(json!({"app_path": "/opt", "ansible_host": "10.0.0.2"}));
        let runs = Cell::new(0);
        let mut verdicts = Verdicts::new();
        let first = verdicts.of(&a, |v| verdict(v, &runs));
        let second = verdicts.of(&b, |v| verdict(v, &runs));
        assert_eq!(first, second);
        assert_eq!(runs.get(), 1);
    }

    #[test]
    fn a_host_that_answers_differently_is_judged_again() {
        // `backup_dir` was asked for and absent on the first host: its presence differs.
        let a = vars(json!({"app_path": "/opt"}));
        let b = vars(json!({"app_path": "/opt", "backup_dir": "/b"}));
        let c = vars(json!({"app_path": "/srv", "backup_dir": "/b"}));
        let runs = Cell::new(0);
        let mut verdicts = Verdicts::new();
        assert_eq!(verdicts.of(&a, |v| verdict(v, &runs)), "/opt with None");
        assert_eq!(
            verdicts.of(&b, |v| verdict(v, &runs)),
            "/opt with Some(String(\"/b\"))"
        );
        assert_eq!(verdicts.of(&c, |v| verdict(v, &runs)), "Some(\"/srv\")");
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn mappings_in_another_order_are_other_answers() {
        // A template that loops over a mapping sees its order; serde_json's `==` does not.
        let a = vars(json!({"app_path": {"x": 1, "y": 2}}));
        let b = vars(json!({"app_path": {"y": 2, "x": 1}}));
        let runs = Cell::new(0);
        let mut verdicts = Verdicts::new();
        verdicts.of(&a, |v| verdict(v, &runs));
        verdicts.of(&b, |v| verdict(v, &runs));
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn a_verdict_that_listed_the_names_holds_only_for_the_same_names() {
        let a = vars(json!({"app_path": "/srv", "one": 1}));
        let b = vars(json!({"app_path": "/srv", "two": 2}));
        let runs = Cell::new(0);
        let mut verdicts = Verdicts::new();
        let listing = |v: &Asked<'_>| {
            runs.set(runs.get() + 1);
            format!("{:?} {:?}", v.get("app_path"), v.names())
        };
        let first = verdicts.of(&a, listing);
        let second = verdicts.of(&b, listing);
        assert_ne!(first, second);
        assert_eq!(runs.get(), 2);
    }
}
