//! What a run's templates have already worked out, so that a host's variables that are
//! templates (`sl_found: "{{ found.stdout | from_json }}"` and the chain that reads it) are
//! rendered once per host and per change of what they read, not once per template that
//! reads them.
//!
//! A value is known by an id. A variable's definition and every value that is not a
//! template are interned by content, compared exactly (a hash only finds the candidates);
//! a variable that is a template is known by its name, its definition's id and the ids of
//! the values it reads. Registering a new output on a host gives that output a new id, so
//! exactly what reads it, and nothing else, is rendered again: nothing needs invalidating,
//! and a value is never served for other inputs. Ids cost little to work out, so the
//! rendered values themselves are kept least recently used first: the large ones a chain
//! passes through (a host's whole `docker inspect`, parsed) are read only when a value
//! after them must be rendered again, and make way for those the steps read.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use minijinja::value::Value;

use super::{has_template, FastMap, TemplateError};

/// The estimated size of the values interned (definitions, registered outputs) before
/// everything is dropped and worked out again: a SimpleLogin host's outputs are about
/// 40 kB, so this holds those of a few hundred hosts in flight.
const INTERNED_BUDGET: usize = 16 << 20;
/// The estimated size of the rendered values kept.
const VALUES_BUDGET: usize = 16 << 20;

/// How a variable that is a template gets its value: from which definition, reading what.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Derivation {
    pub name: String,
    pub definition: u64,
    /// The id of each variable the definition reads, in its order; 0 for one not defined.
    pub inputs: Vec<u64>,
}

struct Interned {
    json: serde_json::Value,
    id: u64,
    template: bool,
}

struct Kept {
    value: Result<Value, TemplateError>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
pub(super) struct Memo {
    interned: FastMap<u64, Vec<Interned>>,
    interned_bytes: usize,
    derivations: FastMap<Derivation, u64>,
    /// What each definition that is a template reads, by the definition's id.
    needs: FastMap<u64, Arc<[String]>>,
    values: FastMap<u64, Kept>,
    values_bytes: usize,
    clock: u64,
    next_id: u64,
}

impl Memo {
    /// The id of `json`'s content, and whether it holds a template.
    pub fn intern(&mut self, json: &serde_json::Value) -> (u64, bool) {
        let mut hasher = foldhash::fast::FixedState::default().build_hasher();
        hash_json(json, &mut hasher);
        let hash = hasher.finish();
        if let Some(found) = self
            .interned
            .get(&hash)
            .and_then(|candidates| candidates.iter().find(|c| same(&c.json, json)))
        {
            return (found.id, found.template);
        }
        let bytes = super::json::json_bytes(json);
        if self.interned_bytes + bytes > INTERNED_BUDGET {
            // Ids are never reused: what was derived from a dropped id can only be
            // missed, never confused with a value derived from a new one.
            *self = Memo {
                next_id: self.next_id,
                clock: self.clock,
                ..Memo::default()
            };
        }
        self.interned_bytes += bytes;
        let id = self.fresh_id();
        let template = has_template(json);
        self.interned.entry(hash).or_default().push(Interned {
            json: json.clone(),
            id,
            template,
        });
        (id, template)
    }

    /// The id of what `derivation` gives.
    pub fn derivation(&mut self, derivation: Derivation) -> u64 {
        if let Some(id) = self.derivations.get(&derivation) {
            return *id;
        }
        let id = self.fresh_id();
        self.derivations.insert(derivation, id);
        id
    }

    /// The variables the definition `id` reads, sorted, once told by [`Memo::read_by`].
    pub fn needs(&self, id: u64) -> Option<Arc<[String]>> {
        self.needs.get(&id).cloned()
    }

    pub fn read_by(&mut self, id: u64, needs: Arc<[String]>) {
        self.needs.insert(id, needs);
    }

    /// An id no other value has: for a value that is not kept.
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The value of `id`, if it is kept.
    pub fn value(&mut self, id: u64) -> Option<Result<Value, TemplateError>> {
        self.clock += 1;
        let kept = self.values.get_mut(&id)?;
        kept.used = self.clock;
        Some(kept.value.clone())
    }

    /// Keeps the value of `id` (`bytes`: its estimated size), dropping the least
    /// recently used past the budget.
    pub fn keep(&mut self, id: u64, value: Result<Value, TemplateError>, bytes: usize) {
        self.clock += 1;
        self.values_bytes += bytes;
        let kept = Kept {
            value,
            bytes,
            used: self.clock,
        };
        if let Some(old) = self.values.insert(id, kept) {
            self.values_bytes -= old.bytes;
        }
        if self.values_bytes > VALUES_BUDGET {
            let mut by_age: Vec<(u64, u64)> =
                self.values.iter().map(|(id, k)| (k.used, *id)).collect();
            by_age.sort_unstable();
            for (_, id) in by_age {
                if self.values_bytes <= VALUES_BUDGET / 4 * 3 {
                    break;
                }
                if let Some(k) = self.values.remove(&id) {
                    self.values_bytes -= k.bytes;
                }
            }
        }
    }
}

/// Hashes what [`same`] compares.
fn hash_json(json: &serde_json::Value, state: &mut impl Hasher) {
    use serde_json::Value as J;
    std::mem::discriminant(json).hash(state);
    match json {
        J::Null => {}
        J::Bool(b) => b.hash(state),
        J::Number(n) => n.hash(state),
        J::String(s) => s.hash(state),
        J::Array(items) => {
            items.len().hash(state);
            items.iter().for_each(|i| hash_json(i, state));
        }
        J::Object(map) => {
            map.len().hash(state);
            for (k, v) in map {
                k.hash(state);
                hash_json(v, state);
            }
        }
    }
}

/// Equal, and in the same order: a mapping's order shows in a template that loops over it
/// (serde_json's own `==` ignores it).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (a, b) {
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (J::Object(x), J::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        (J::Array(_) | J::Object(_), _) | (_, J::Array(_) | J::Object(_)) => false,
        _ => a == b,
    }
}

/// The estimated size of a rendered value or an error.
pub(super) fn approx_result_bytes(value: &Result<Value, TemplateError>) -> usize {
    match value {
        Ok(value) => super::json::approx_bytes(value),
        Err(e) => e.message.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_content_is_one_id_and_order_counts() {
        let mut memo = Memo::default();
        let a = memo.intern(&json!({"x": 1, "y": [1, "a"]}));
        assert!(memo.intern(&json!("{{ x }}")).1 && !memo.intern(&json!("x")).1);
        assert_eq!(a, memo.intern(&json!({"x": 1, "y": [1, "a"]})));
        assert_ne!(a, memo.intern(&json!({"y": [1, "a"], "x": 1})));
        assert_ne!(a, memo.intern(&json!({"x": 1.0, "y": [1, "a"]})));
        assert_ne!(a, memo.intern(&json!({"x": 1, "y": [1, "b"]})));
    }

    #[test]
    fn past_the_budget_everything_is_worked_out_again_with_new_ids() {
        let mut memo = Memo::default();
        let first = memo.intern(&json!("first")).0;
        let derivation = Derivation {
            name: "d".into(),
            definition: first,
            inputs: vec![],
        };
        let id = memo.derivation(derivation.clone());
        assert_eq!(id, memo.derivation(derivation.clone()));
        memo.keep(id, Ok(Value::from(1)), 10);
        assert!(memo.value(id).is_some());
        memo.intern(&json!("x".repeat(INTERNED_BUDGET)));
        assert!(memo.value(id).is_none());
        assert_ne!(memo.intern(&json!("first")).0, first);
        assert_ne!(memo.derivation(derivation), id);
    }

    #[test]
    fn the_least_recently_used_values_make_way() {
        let mut memo = Memo::default();
        let quarter = VALUES_BUDGET / 4;
        for id in 1..=4 {
            memo.keep(id, Ok(Value::from(id)), quarter);
        }
        assert!(memo.value(1).is_some());
        memo.keep(5, Ok(Value::from(5)), quarter);
        assert!(
            memo.value(2).is_none() && memo.value(3).is_none(),
            "the oldest went first"
        );
        assert!(memo.value(1).is_some() && memo.value(4).is_some() && memo.value(5).is_some());
    }
}
