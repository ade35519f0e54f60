//! What the process's templates have already worked out, so that a host's variables that are
//! templates (`sl_found: "{{ found.stdout | from_json }}"` and the chain that reads it) are
//! rendered once per host and per change of what they read, not once per template that
//! reads them.
//!
//! A value is known by an id. A variable's definition and every value that is not a
//! template are interned by content, told apart by the SHA-256 of their content; a
//! variable that is a template is known by its name, its definition's id and the ids of
//! the values it reads. Registering a new output on a host gives that output a new id, so
//! exactly what reads it, and nothing else, is rendered again: nothing needs invalidating,
//! and a value is never served for other inputs. Ids cost little to work out, so the
//! rendered values themselves are kept least recently used first: the large ones a chain
//! passes through (a host's whole `docker inspect`, parsed) are read only when a value
//! after them must be rendered again, and make way for those the steps read. A host's own
//! go as soon as nothing reads them again ([`super::Templates::retire`]), so that the room
//! is for the hosts in flight and those waiting, not for the hosts done.
//!
//! What is kept is bounded by an estimate of its size, which grows with the hosts in
//! flight ([`Memo::make_room_for`]): about 576 kB a host, 115 MB at `--forks 200`. Less
//! than the hosts in flight need is the worst case of least-recently-used: each host's
//! values go just before it reads them again, and every template works them out anew.

use std::sync::Arc;

use minijinja::value::Value;
use sha2::{Digest as _, Sha256};

use super::{has_template, FastMap, TemplateError};

/// How much is kept (estimated sizes), whatever the hosts in flight.
const BUDGET: Budget = Budget {
    interned: 16 << 20,
    values: 16 << 20,
};
/// What one host in flight needs kept, so that its variables are not worked out again
/// before its run reads them (measured on the shipped playbook: a SimpleLogin host's
/// discovery output alone is about 94 kB, and the values parsed from it about twice that).
/// When the hosts in flight need more than the budget, the least recently used always
/// goes just before it is read again: everything is worked out again for every template.
const PER_HOST: Budget = Budget {
    interned: 256 << 10,
    values: 320 << 10,
};

/// The estimated size of the values interned (definitions, registered outputs) and of
/// the rendered values kept. Interned values are held as their digest only: their size
/// says how long their ids, and what was derived from them, are remembered.
#[derive(Clone, Copy)]
struct Budget {
    interned: usize,
    values: usize,
}

/// How a variable that is a template gets its value: from which definition, reading what.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Derivation {
    pub name: String,
    pub definition: u64,
    /// The id of each variable the definition reads, in its order; 0 for one not defined.
    pub inputs: Vec<u64>,
}

/// A variable a definition reads ([`super::Templates::needs_in`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Need {
    pub name: String,
    /// Only minijinja lists it: the definition gives it a value before any read, so a
    /// cycle through it is no cycle.
    pub maybe: bool,
}

struct Interned {
    id: u64,
    template: bool,
    bytes: usize,
    used: u64,
}

pub(super) struct Kept {
    value: Result<Value, TemplateError>,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
pub(super) struct Memo {
    interned: FastMap<Digest, Interned>,
    interned_bytes: usize,
    /// Each derivation's id, and when it was last asked for.
    derivations: FastMap<Derivation, (u64, u64)>,
    /// What each definition that is a template reads, by the definition's id, and when it
    /// was last asked for.
    needs: FastMap<u64, (Arc<[Need]>, u64)>,
    values: FastMap<u64, Kept>,
    values_bytes: usize,
    clock: u64,
    next_id: u64,
    /// Raised for many hosts in flight by [`Memo::make_room_for`].
    budget: Option<Budget>,
    /// Where [`digest`] writes out what it hashes.
    scratch: Vec<u8>,
}

impl Memo {
    /// Keeps at least enough for `hosts` hosts in flight.
    pub fn make_room_for(&mut self, hosts: usize) {
        let budget = self.budget();
        self.budget = Some(Budget {
            interned: budget.interned.max(hosts * PER_HOST.interned),
            values: budget.values.max(hosts * PER_HOST.values),
        });
    }

    fn budget(&self) -> Budget {
        self.budget.unwrap_or(BUDGET)
    }

    /// The id of `json`'s content, and whether it holds a template.
    pub fn intern(&mut self, json: &serde_json::Value) -> (u64, bool) {
        let digest = digest(json, &mut self.scratch);
        self.clock += 1;
        let now = self.clock;
        if let Some(found) = self.interned.get_mut(&digest) {
            found.used = now;
            return (found.id, found.template);
        }
        let bytes = super::json::json_bytes(json);
        self.interned_bytes += bytes;
        if self.interned_bytes > self.budget().interned {
            self.forget_oldest();
        }
        let id = self.fresh_id();
        let template = has_template(json);
        self.interned.insert(
            digest,
            Interned {
                id,
                template,
                bytes,
                used: now,
            },
        );
        (id, template)
    }

    /// Drops the contents least recently interned (a host long finished), and what was
    /// derived from them no later. Ids are never reused: what was derived from a dropped
    /// id can only be missed, never confused with a value derived from a new one. Only the
    /// oldest go, so the hosts in flight keep theirs: dropping everything at once made
    /// every host in flight intern its outputs again, which filled the budget again.
    fn forget_oldest(&mut self) {
        let mut by_age: Vec<(u64, Digest)> = self
            .interned
            .iter()
            .map(|(digest, i)| (i.used, *digest))
            .collect();
        by_age.sort_unstable();
        let mut cutoff = 0;
        let enough = self.budget().interned / 4 * 3;
        for (used, digest) in by_age {
            if self.interned_bytes <= enough {
                break;
            }
            cutoff = used;
            if let Some(gone) = self.interned.remove(&digest) {
                self.interned_bytes -= gone.bytes;
            }
        }
        self.derivations.retain(|_, (_, used)| *used > cutoff);
        self.needs.retain(|_, (_, used)| *used > cutoff);
    }

    /// The id of what `derivation` gives.
    pub fn derivation(&mut self, derivation: Derivation) -> u64 {
        self.clock += 1;
        let now = self.clock;
        if let Some((id, used)) = self.derivations.get_mut(&derivation) {
            *used = now;
            return *id;
        }
        let id = self.fresh_id();
        self.derivations.insert(derivation, (id, now));
        id
    }

    /// The variables the definition `id` reads, sorted, once told by [`Memo::read_by`].
    pub fn needs(&mut self, id: u64) -> Option<Arc<[Need]>> {
        self.clock += 1;
        let now = self.clock;
        let (needs, used) = self.needs.get_mut(&id)?;
        *used = now;
        Some(needs.clone())
    }

    pub fn read_by(&mut self, id: u64, needs: Arc<[Need]>) {
        self.clock += 1;
        self.needs.insert(id, (needs, self.clock));
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

    /// Takes the values of `ids` out: their host will not read them again (another host
    /// that shares one works it out anew). Returned to be dropped by the caller, after the
    /// memo is free again: a parsed `docker inspect` takes a while to free.
    pub fn forget_values(&mut self, ids: impl IntoIterator<Item = u64>) -> Vec<Kept> {
        let mut gone = Vec::new();
        for id in ids {
            if let Some(kept) = self.values.remove(&id) {
                self.values_bytes -= kept.bytes;
                gone.push(kept);
            }
        }
        gone
    }

    /// How many values are kept.
    #[cfg(test)]
    pub(super) fn kept(&self) -> usize {
        self.values.len()
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
        let budget = self.budget().values;
        if self.values_bytes > budget {
            let mut by_age: Vec<(u64, u64)> =
                self.values.iter().map(|(id, k)| (k.used, *id)).collect();
            by_age.sort_unstable();
            for (_, id) in by_age {
                if self.values_bytes <= budget / 4 * 3 {
                    break;
                }
                if let Some(k) = self.values.remove(&id) {
                    self.values_bytes -= k.bytes;
                }
            }
        }
    }
}

/// A content's SHA-256: an interned value keeps this, not a copy of itself to compare with
/// (a copy of each host's `docker inspect` was a fifth of the heap). What a host registered
/// is up to the host, so two contents may share an id only where a collision is out of
/// reach.
type Digest = [u8; 32];

/// `scratch` is where the content is written out to be hashed (kept for the next one).
fn digest(json: &serde_json::Value, scratch: &mut Vec<u8>) -> Digest {
    scratch.clear();
    encode(json, scratch);
    Sha256::digest(&scratch[..]).into()
}

/// `json` as bytes that two values share only if [`same`] holds for them: each part tagged
/// with its kind, and texts and lists with their length, so that no part's bytes are the
/// start of another's. Written out whole before it is hashed: a registered `docker
/// inspect` is thousands of lines, and one hasher update per piece cost more than one
/// update over the whole.
fn encode(json: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value as J;
    let mut tagged = |tag: u8, part: &[u8]| {
        out.push(tag);
        out.extend_from_slice(part);
    };
    match json {
        J::Null => tagged(0, &[]),
        J::Bool(b) => tagged(1, &[u8::from(*b)]),
        J::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => tagged(2, &u.to_le_bytes()),
            (None, Some(i)) => tagged(3, &i.to_le_bytes()),
            (None, None) => tagged(4, &n.as_f64().unwrap_or(f64::NAN).to_bits().to_le_bytes()),
        },
        J::String(s) => encode_text(5, s, out),
        J::Array(items) => {
            tagged(6, &(items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| encode(item, out));
        }
        J::Object(map) => {
            tagged(7, &(map.len() as u64).to_le_bytes());
            for (key, value) in map {
                encode_text(8, key, out);
                encode(value, out);
            }
        }
    }
}

/// A text as [`encode`] writes it: its length first, so that it ends where it says.
fn encode_text(tag: u8, text: &str, out: &mut Vec<u8>) {
    out.push(tag);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Equal, and in the same order: a mapping's order shows in a template that loops over it
/// (serde_json's own `==` ignores it).
pub(crate) fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
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
    fn long_texts_and_lists_that_differ_in_one_place_are_told_apart() {
        let mut memo = Memo::default();
        let text = "x".repeat(100_000);
        let mut other = text.clone();
        other.replace_range(50_001..50_002, "y");
        let a = memo.intern(&json!({ "stdout": text }));
        let b = memo.intern(&json!({ "stdout": other }));
        assert_ne!(a, b);
        assert_eq!(memo.intern(&json!({ "stdout": text })), a);
        assert_eq!(memo.intern(&json!({ "stdout": other })), b);
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}")).collect();
        let mut changed = lines.clone();
        changed[501] = "changed".into();
        let a = memo.intern(&json!({ "stdout_lines": lines }));
        let b = memo.intern(&json!({ "stdout_lines": changed }));
        assert_ne!(a, b);
        assert_eq!(memo.intern(&json!({ "stdout_lines": lines })), a);
    }

    fn derived_from(memo: &mut Memo, content: &serde_json::Value) -> (u64, Derivation) {
        let definition = memo.intern(content).0;
        let derivation = Derivation {
            name: "d".into(),
            definition,
            inputs: vec![],
        };
        (definition, derivation)
    }

    #[test]
    fn past_the_budget_the_oldest_contents_and_their_derivations_get_new_ids() {
        let mut memo = Memo::default();
        let (_, old_derivation) = derived_from(&mut memo, &json!("old"));
        let old_derived = memo.derivation(old_derivation.clone());
        let (recent, recent_derivation) = derived_from(&mut memo, &json!("recent"));
        let recent_derived = memo.derivation(recent_derivation.clone());
        memo.intern(&json!("x".repeat(BUDGET.interned / 2)));
        assert_eq!(memo.intern(&json!("recent")).0, recent, "within the budget");
        assert_eq!(memo.derivation(recent_derivation.clone()), recent_derived);
        memo.intern(&json!("y".repeat(BUDGET.interned / 2)));
        assert_eq!(memo.intern(&json!("recent")).0, recent, "used since: kept");
        assert_eq!(memo.derivation(recent_derivation), recent_derived);
        let (old_again, _) = derived_from(&mut memo, &json!("old"));
        assert!(
            old_again > recent_derived,
            "dropped, and never its old id again"
        );
        assert_ne!(memo.derivation(old_derivation), old_derived);
    }

    #[test]
    fn room_for_many_hosts_keeps_what_the_default_budget_drops() {
        let mut memo = Memo::default();
        memo.make_room_for(1000);
        memo.keep(1, Ok(Value::from(1)), BUDGET.values);
        memo.keep(2, Ok(Value::from(2)), BUDGET.values);
        let first = memo.intern(&json!("first")).0;
        memo.intern(&json!("x".repeat(BUDGET.interned)));
        assert!(memo.value(1).is_some());
        assert_eq!(memo.intern(&json!("first")).0, first);
        memo.make_room_for(1);
        assert_eq!(
            memo.intern(&json!("first")).0,
            first,
            "room is never taken back"
        );
    }

    #[test]
    fn the_least_recently_used_values_make_way() {
        let mut memo = Memo::default();
        let quarter = BUDGET.values / 4;
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
