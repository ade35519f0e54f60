//! A parsed JSON document as a host's values keep it: compact, its keys shared.
//!
//! A SimpleLogin host's `discover` output (30 kB of `docker inspect`) parsed as serde_json's
//! own `Value` took 112 kB: 72 bytes a value and a hash table and an owned key in every
//! mapping. Every host in flight and every waiting host whose findings the memo keeps holds
//! one, so at 200 hosts at once that was most of `fleetup status`'s memory. A [`Node`] is 24
//! bytes, a mapping is its entries in the document's order, and a key is shared with every
//! document that has it (docker's keys are the same on every host): 33 kB for the same
//! output.
//!
//! It reads as serde_json's `Value` does (`get`, `pointer`, `as_str`...), compares as it
//! does (a mapping's order does not matter) and serializes to the very same JSON.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Number, Value as J};

use super::FastMap;

/// A mapping's key, shared by every document of the thread that has it.
pub(super) type Key = Arc<str>;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(Box<str>),
    Array(Box<[Node]>),
    Object(Box<Object>),
}

/// A mapping: its entries in the document's order, a repeated key in its first place with
/// its last value (as serde_json's own).
#[derive(Debug, Clone)]
pub(super) struct Object {
    entries: Box<[(Key, Node)]>,
    /// Of a mapping of more than [`SCAN`] entries, their places in the order of their keys.
    by_key: Box<[u32]>,
}

/// Up to this many entries a mapping is searched in order: docker's are mostly smaller.
const SCAN: usize = 8;
/// Keys longer than this are not shared: they are data (a label's name), not docker's own.
const SHARED_KEY_LEN: usize = 64;
/// At most this many keys are shared at once, whatever the documents a thread reads.
const SHARED_KEYS: usize = 4096;

thread_local! {
    static KEYS: RefCell<HashSet<Key, foldhash::fast::RandomState>> = RefCell::default();
}

fn key(text: &str) -> Key {
    if text.len() > SHARED_KEY_LEN {
        return text.into();
    }
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(shared) = keys.get(text) {
            return shared.clone();
        }
        // Full (a document whose keys are its data): start again, so that the keys of the
        // documents read from now on are shared, not only those of the first ones read.
        if keys.len() >= SHARED_KEYS {
            keys.clear();
        }
        let new: Key = text.into();
        keys.insert(new.clone());
        new
    })
}

impl Object {
    fn new(entries: Vec<(Key, Node)>) -> Object {
        let large = entries.len() > SCAN;
        let mut unique: Vec<(Key, Node)> = Vec::with_capacity(entries.len());
        let mut first: FastMap<Key, usize> = FastMap::default();
        for (k, v) in entries {
            let at = match large {
                true => first.get(&k).copied(),
                false => unique.iter().position(|(u, _)| *u == k),
            };
            match at.and_then(|i| unique.get_mut(i)) {
                Some(entry) => entry.1 = v,
                None => {
                    if large {
                        first.insert(k.clone(), unique.len());
                    }
                    unique.push((k, v));
                }
            }
        }
        // A mapping too large for the index (4 billion keys) is searched in order.
        let mut by_key: Vec<u32> = Vec::new();
        if let Ok(n) = u32::try_from(unique.len()) {
            if unique.len() > SCAN {
                by_key = (0..n).collect();
                by_key.sort_by(|&a, &b| unique[a as usize].0.cmp(&unique[b as usize].0));
            }
        }
        Object {
            entries: unique.into_boxed_slice(),
            by_key: by_key.into_boxed_slice(),
        }
    }

    /// The entry of `key`, with the key as the document holds it.
    pub fn entry(&self, key: &str) -> Option<(&Key, &Node)> {
        let at = match self.by_key.is_empty() {
            true => self.entries.iter().position(|(k, _)| &**k == key),
            false => self
                .by_key
                .binary_search_by(|&i| (*self.entries[i as usize].0).cmp(key))
                .ok()
                .map(|p| self.by_key[p] as usize),
        };
        at.and_then(|i| self.entries.get(i)).map(|(k, v)| (k, v))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The entries in the document's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// The keys in their order, as a template enumerates a mapping.
    pub fn sorted_keys(&self) -> Vec<&str> {
        if !self.by_key.is_empty() {
            return self
                .by_key
                .iter()
                .map(|&i| &*self.entries[i as usize].0)
                .collect();
        }
        let mut keys: Vec<&str> = self.entries.iter().map(|(k, _)| &**k).collect();
        keys.sort_unstable();
        keys
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// As serde_json's mappings compare: the same keys with the same values, in any order.
impl PartialEq for Object {
    fn eq(&self, other: &Object) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

impl Node {
    /// `text` parsed, with serde_json's own errors.
    pub fn parse(text: &str) -> serde_json::Result<Node> {
        let mut parser = serde_json::Deserializer::from_str(text);
        let node = Parse.deserialize(&mut parser)?;
        parser.end()?;
        Ok(node)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_object()?.get(key)
    }

    /// The node at a JSON pointer (`/HostConfig/PortBindings`), as serde_json's `pointer`.
    pub fn pointer(&self, pointer: &str) -> Option<&Node> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut tokens = pointer.strip_prefix('/')?.split('/');
        tokens.try_fold(self, |node, token| {
            let token = token.replace("~1", "/").replace("~0", "~");
            match node {
                Node::Object(map) => map.get(&token),
                Node::Array(items) => items.get(array_index(&token)?),
                _ => None,
            }
        })
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Node::Object(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Node::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Node::Number(n) => n.as_i64(),
            _ => None,
        }
    }
}

/// As serde_json reads an array index in a pointer: no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

impl From<&J> for Node {
    fn from(json: &J) -> Node {
        match json {
            J::Null => Node::Null,
            J::Bool(b) => Node::Bool(*b),
            J::Number(n) => Node::Number(n.clone()),
            J::String(text) => Node::String(text.as_str().into()),
            J::Array(items) => Node::Array(items.iter().map(Node::from).collect()),
            J::Object(map) => Node::Object(Box::new(Object::new(
                map.iter().map(|(k, v)| (key(k), Node::from(v))).collect(),
            ))),
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Number(n) => n.serialize(s),
            Node::String(text) => s.serialize_str(text),
            Node::Array(items) => s.collect_seq(items.iter()),
            Node::Object(map) => s.collect_map(map.iter()),
        }
    }
}

/// Builds a [`Node`] straight from the parser: no owned key for a shared one, and every
/// list and mapping at its size.
struct Parse;

impl<'de> DeserializeSeed<'de> for Parse {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<Node, D::Error> {
        parser.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Parse {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node, E> {
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_str<E>(self, text: &str) -> Result<Node, E> {
        Ok(Node::String(text.into()))
    }

    fn visit_string<E>(self, text: String) -> Result<Node, E> {
        Ok(Node::String(text.into_boxed_str()))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Parse)? {
            items.push(item);
        }
        Ok(Node::Array(items.into_boxed_slice()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key_seed(KeySeed)? {
            entries.push((k, map.next_value_seed(Parse)?));
        }
        Ok(Node::Object(Box::new(Object::new(entries))))
    }
}

/// A mapping's key, shared without being copied first.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<Key, D::Error> {
        parser.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, text: &str) -> Result<Key, E> {
        Ok(key(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_document_serializes_compares_and_reads_as_serde_jsons_own() {
        let texts = [
            r#"{"z": [3, {"b": 1, "a": [true, null, "x"]}], "a": {"y": {}, "x": []}}"#,
            r#"{"k": 1, "j": 2, "k": 3}"#,
            r#"[1.5, -0.0, 1e300, -7, 18446744073709551615, "\u00e9\n", {}]"#,
            r#"{"a\"b": "\u0000", "": 1, "9": 2, "8": 3, "7": 4, "6": 5, "5": 6, "4": 7, "3": 8, "3": 9}"#,
            r#" "text" "#,
            "null",
        ];
        for text in texts {
            let own: J = serde_json::from_str(text).unwrap();
            let node = Node::parse(text).unwrap();
            assert_eq!(
                serde_json::to_string(&node).unwrap(),
                own.to_string(),
                "{text}"
            );
            assert_eq!(node, Node::from(&own), "{text}");
        }
        for bad in ["{", "[1,]", "{} x", "", "1e400", "{1: 2}"] {
            assert_eq!(
                Node::parse(bad).unwrap_err().to_string(),
                serde_json::from_str::<J>(bad).unwrap_err().to_string(),
                "{bad}"
            );
        }
    }

    /// A mapping of `entries` as JSON text.
    fn mapping<'a>(entries: impl Iterator<Item = (usize, &'a String)>) -> String {
        let entries: Vec<String> = entries.map(|(i, k)| format!("\"{k}\": {i}")).collect();
        format!("{{{}}}", entries.join(", "))
    }

    #[test]
    fn a_mapping_finds_each_key_small_or_large_and_compares_in_any_order() {
        let keys: Vec<String> = (0..40).rev().map(|i| format!("k{i:02}")).collect();
        for n in [0, 1, SCAN, SCAN + 1, 40] {
            let node = Node::parse(&mapping(keys[..n].iter().enumerate())).unwrap();
            let map = node.as_object().unwrap();
            assert_eq!(map.len(), n);
            for (i, k) in keys[..n].iter().enumerate() {
                assert_eq!(node.get(k), Some(&Node::Number(i.into())), "{k} of {n}");
            }
            assert_eq!(node.get("k99"), None);
            let mut sorted: Vec<&str> = keys[..n].iter().map(String::as_str).collect();
            sorted.sort();
            assert_eq!(map.sorted_keys(), sorted);
            let reversed = Node::parse(&mapping(keys[..n].iter().enumerate().rev())).unwrap();
            assert_eq!(node, reversed, "{n} keys");
            // Equal, yet each printed in its own document's order.
            let printed = |n: &Node| serde_json::to_string(n).unwrap();
            assert_eq!(printed(&node) == printed(&reversed), n <= 1, "{n} keys");
        }
        let one = Node::parse(r#"{"a": 1}"#).unwrap();
        assert_ne!(one, Node::parse(r#"{"a": 1, "b": 2}"#).unwrap());
        assert_ne!(one, Node::parse(r#"{"a": 2}"#).unwrap());
    }

    #[test]
    fn a_pointer_reads_as_serde_jsons() {
        let own = json!({"a/b": {"c~d": [10, 20]}, "": 1, "x": [[0]]});
        let node = Node::from(&own);
        for p in [
            "",
            "/",
            "/a~1b",
            "/a~1b/c~0d/1",
            "/a~1b/c~0d/01",
            "/a~1b/c~0d/+1",
            "/x/0/0",
            "/x/1",
            "nope",
            "/missing",
        ] {
            assert_eq!(
                node.pointer(p).map(|n| serde_json::to_value(n).unwrap()),
                own.pointer(p).cloned(),
                "{p}"
            );
        }
    }

    #[test]
    fn documents_share_their_keys() {
        let a = Node::parse(r#"{"Config": {"Env": []}}"#).unwrap();
        let b = Node::parse(r#"{"Config": {"Env": null}}"#).unwrap();
        let (ka, _) = a.as_object().unwrap().entry("Config").unwrap();
        let (kb, _) = b.as_object().unwrap().entry("Config").unwrap();
        assert!(Arc::ptr_eq(ka, kb));
        let long = "k".repeat(SHARED_KEY_LEN + 1);
        let c = Node::parse(&format!(r#"{{"{long}": 1}}"#)).unwrap();
        let d = Node::parse(&format!(r#"{{"{long}": 2}}"#)).unwrap();
        let (kc, _) = c.as_object().unwrap().entry(&long).unwrap();
        let (kd, _) = d.as_object().unwrap().entry(&long).unwrap();
        assert!(!Arc::ptr_eq(kc, kd));
    }

    #[test]
    fn keys_read_after_the_shared_ones_filled_up_are_shared_too() {
        // A thread of its own: the shared keys are the thread's.
        std::thread::spawn(|| {
            let junk: Vec<String> = (0..SHARED_KEYS + 10)
                .map(|i| format!("\"{i:08}-junk\": 0"))
                .collect();
            Node::parse(&format!("{{{}}}", junk.join(", "))).unwrap();
            let a = Node::parse(r#"{"Mounts": 1}"#).unwrap();
            let b = Node::parse(r#"{"Mounts": 2}"#).unwrap();
            let (ka, _) = a.as_object().unwrap().entry("Mounts").unwrap();
            let (kb, _) = b.as_object().unwrap().entry("Mounts").unwrap();
            assert!(Arc::ptr_eq(ka, kb));
            KEYS.with(|keys| assert!(keys.borrow().len() <= SHARED_KEYS));
        })
        .join()
        .unwrap();
    }
}
