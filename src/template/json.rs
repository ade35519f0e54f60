//! Parsed JSON as templates see it, without converting it to template values.
//!
//! A SimpleLogin host's `docker inspect` output is tens of kilobytes. Converting it to
//! minijinja's own values (and back to JSON for the `docker_*` filters) on every render
//! that reads it was most of the controller's CPU on a fleet. A [`Json`] is a view into
//! one shared parse: reading `sl_found.containers[0].Config` walks it, a filter that wants
//! JSON gets the very node, and nothing is copied but the scalars a template reads.
//!
//! Mappings enumerate their keys sorted, as minijinja's own maps do, so that a template
//! that loops over one or prints one sees what it saw before this view existed.

use std::borrow::Cow;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Serde, Value, ValueKind};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as J;

/// One node of a shared JSON document: the document and the way down to the node.
#[derive(Debug)]
pub(super) struct Json {
    root: Arc<J>,
    path: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// `json` as a template value: a scalar as itself, an array or a mapping as a view.
pub(super) fn value(json: J) -> Value {
    Json::at(Arc::new(json), Vec::new())
}

/// `text` parsed as a template value. It is kept as long as its host's values are (a
/// waiting host's parsed `docker inspect` stays in the memo until its turn), so every
/// mapping and list is made at its size: serde_json's own parse grows them by doubling,
/// which left a quarter of the document spare, and rebuilding them afterwards hashed every
/// key again (2.7 % of `fleetup status`'s CPU at 1000 hosts).
pub(super) fn document(text: &str) -> serde_json::Result<Value> {
    let mut parser = serde_json::Deserializer::from_str(text);
    let json = AtItsSize.deserialize(&mut parser)?;
    parser.end()?;
    Ok(value(json))
}

/// Builds what serde_json's own `Value` would, each mapping and list at its size.
struct AtItsSize;

impl<'de> DeserializeSeed<'de> for AtItsSize {
    type Value = J;

    fn deserialize<D: Deserializer<'de>>(self, parser: D) -> Result<J, D::Error> {
        parser.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for AtItsSize {
    type Value = J;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<J, E> {
        Ok(J::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<J, E> {
        Ok(J::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<J, E> {
        Ok(J::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<J, E> {
        Ok(serde_json::Number::from_f64(n).map_or(J::Null, J::Number))
    }

    fn visit_str<E>(self, text: &str) -> Result<J, E> {
        Ok(J::String(text.to_string()))
    }

    fn visit_string<E>(self, text: String) -> Result<J, E> {
        Ok(J::String(text))
    }

    fn visit_unit<E>(self) -> Result<J, E> {
        Ok(J::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<J, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(AtItsSize)? {
            items.push(item);
        }
        items.shrink_to_fit();
        Ok(J::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<J, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value_seed(AtItsSize)?));
        }
        // As serde_json's own: a repeated key keeps its first place and its last value.
        let mut sized = serde_json::Map::with_capacity(entries.len());
        sized.extend(entries);
        Ok(J::Object(sized))
    }
}

/// The JSON of a template value: the node itself when the value is a view, else converted.
pub(super) fn of(value: &Value) -> Cow<'_, J> {
    match value.downcast_object_ref::<Json>() {
        Some(view) => Cow::Borrowed(view.node()),
        None => Cow::Owned(serde_json::to_value(value).unwrap_or(J::Null)),
    }
}

/// A value's overhead in the estimates of [`approx_bytes`] and [`json_bytes`].
const NODE: usize = 48;

/// Roughly the memory `value` holds, for the memo's budget. A view into a document holds
/// the document only when it is the whole document: the views into it share it.
pub(super) fn approx_bytes(value: &Value) -> usize {
    if let Some(view) = value.downcast_object_ref::<Json>() {
        return match view.path.is_empty() {
            true => json_bytes(&view.root),
            false => NODE,
        };
    }
    if let Some(text) = value.as_str() {
        return NODE + text.len();
    }
    let Ok(items) = value.try_iter() else {
        return NODE;
    };
    NODE + match value.kind() {
        ValueKind::Map => items
            .map(|key| approx_bytes(&key) + value.get_item(&key).map_or(0, |v| approx_bytes(&v)))
            .sum(),
        _ => items.map(|item| approx_bytes(&item)).sum::<usize>(),
    }
}

/// Roughly the memory a parsed JSON value holds: its text and a node's overhead for each
/// value.
pub(super) fn json_bytes(json: &J) -> usize {
    NODE + match json {
        J::String(s) => s.len(),
        J::Array(items) => items.iter().map(json_bytes).sum(),
        J::Object(map) => map.iter().map(|(k, v)| k.len() + json_bytes(v)).sum(),
        _ => 0,
    }
}

impl Json {
    fn at(root: Arc<J>, path: Vec<Step>) -> Value {
        let view = Json { root, path };
        match view.node() {
            J::Array(_) | J::Object(_) => Value::from_object(view),
            scalar => Value::from(Serde(scalar)),
        }
    }

    /// The node, found again from the root: the path was taken from this very document.
    fn node(&self) -> &J {
        let mut node = &*self.root;
        for step in &self.path {
            let next = match (node, step) {
                (J::Object(map), Step::Key(key)) => map.get(key),
                (J::Array(items), Step::Index(i)) => items.get(*i),
                _ => None,
            };
            node = next.unwrap_or(&J::Null);
        }
        node
    }

    fn child(&self, step: Step) -> Value {
        let mut path = Vec::with_capacity(self.path.len() + 1);
        path.extend_from_slice(&self.path);
        path.push(step);
        Json::at(self.root.clone(), path)
    }
}

impl Object for Json {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            J::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.node() {
            J::Object(map) => {
                let key = key.as_str()?;
                map.contains_key(key)
                    .then(|| self.child(Step::Key(key.to_string())))
            }
            J::Array(items) => {
                let i = key.as_usize()?;
                (i < items.len()).then(|| self.child(Step::Index(i)))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            J::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                Enumerator::Values(keys.into_iter().map(|k| Value::from(k.as_str())).collect())
            }
            J::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(match self.node() {
            J::Object(map) => map.len(),
            J::Array(items) => items.len(),
            _ => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn converted(json: &J) -> Value {
        Value::from(Serde(json))
    }

    #[test]
    fn a_view_reads_prints_and_compares_as_the_converted_value_does() {
        let doc = json!({"b": [1, -2, 2.5, "x", null, true], "a": {"z": {}, "y": []}});
        let view = value(doc.clone());
        let plain = converted(&doc);
        assert_eq!(view.to_string(), plain.to_string());
        assert_eq!(view, plain);
        assert_eq!(view.len(), Some(2));
        let b = view.get_attr("b").unwrap();
        assert_eq!(b.get_item(&Value::from(-1)).unwrap(), Value::from(true));
        assert_eq!(b.get_item(&Value::from(1)).unwrap(), Value::from(-2));
        assert!(b.get_item(&Value::from(9)).unwrap().is_undefined());
        assert!(!view.get_attr("a").unwrap().get_attr("z").unwrap().is_true());
        assert!(view.get_attr("missing").unwrap().is_undefined());
    }

    #[test]
    fn a_filter_gets_the_node_itself_and_other_values_converted() {
        let doc = json!({"containers": [{"Name": "/sl-app"}]});
        let view = value(doc.clone());
        let node = view.get_attr("containers").unwrap();
        assert!(matches!(of(&node), Cow::Borrowed(_)));
        assert_eq!(*of(&node), doc["containers"]);
        assert_eq!(*of(&converted(&doc)), doc);
    }

    #[test]
    fn a_parsed_document_is_serde_jsons_own_at_its_size() {
        let texts = [
            r#"{"z": [3, {"b": 1, "a": [true, null, "x"]}], "a": {"y": {}, "x": []}}"#,
            r#"{"k": 1, "j": 2, "k": 3}"#,
            r#"[1.5, -0.0, 1e300, -7, 18446744073709551615, "\u00e9\n", {}]"#,
            r#" "text" "#,
            "null",
        ];
        for text in texts {
            let own: J = serde_json::from_str(text).unwrap();
            let sized = document(text).unwrap();
            let sized = of(&sized).into_owned();
            assert!(
                crate::template::same(&sized, &own),
                "{text}: {sized} against {own}"
            );
            assert_eq!(sized.to_string(), own.to_string(), "{text}");
        }
        let list = document(r#"{"a": [1, 2, 3, 4, 5]}"#).unwrap();
        let J::Array(items) = &of(&list)["a"] else {
            panic!("a list")
        };
        assert_eq!(items.capacity(), items.len());
        for bad in ["{", "[1,]", "{} x", "", "1e400"] {
            assert_eq!(
                document(bad).unwrap_err().to_string(),
                serde_json::from_str::<J>(bad).unwrap_err().to_string(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_document_is_counted_once_not_in_every_view_into_it() {
        let doc = json!({"stdout": {"text": "x".repeat(1000)}});
        let whole = value(doc.clone());
        assert_eq!(approx_bytes(&whole), json_bytes(&doc));
        assert!(approx_bytes(&whole.get_attr("stdout").unwrap()) < 100);
        assert!(approx_bytes(&converted(&doc)) >= 1000);
        // A list's items are counted once each, whatever their values.
        let list = converted(&json!([0, 0, 0]));
        assert_eq!(approx_bytes(&list), 4 * NODE);
    }
}
