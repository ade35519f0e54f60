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
use serde_json::Value as J;

use super::node::{Key, Node};

/// One node of a shared JSON document: the document and the way down to the node.
#[derive(Debug)]
pub(super) struct Json {
    root: Arc<Node>,
    path: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Key(Key),
    Index(usize),
}

/// `node` as a template value: a scalar as itself, an array or a mapping as a view.
pub(super) fn value(node: Node) -> Value {
    Json::at(Arc::new(node), Vec::new())
}

/// `text` parsed as a template value. It is kept as long as its host's values are (a
/// waiting host's parsed `docker inspect` stays in the memo until its turn): see
/// [`Node`] for how it is kept small.
pub(super) fn document(text: &str) -> serde_json::Result<Value> {
    Node::parse(text).map(value)
}

/// The JSON of a template value: the node itself when the value is a view, else converted.
pub(super) fn of(value: &Value) -> Cow<'_, Node> {
    match value.downcast_object_ref::<Json>() {
        Some(view) => Cow::Borrowed(view.node()),
        None => Cow::Owned(Node::from(&serde_json::to_value(value).unwrap_or(J::Null))),
    }
}

/// A value's overhead in the estimates of [`approx_bytes`] and [`json_bytes`].
const NODE: usize = 48;

/// Roughly the memory `value` holds, for the memo's budget. A view into a document holds
/// the document only when it is the whole document: the views into it share it.
pub(super) fn approx_bytes(value: &Value) -> usize {
    if let Some(view) = value.downcast_object_ref::<Json>() {
        return match view.path.is_empty() {
            true => node_bytes(&view.root),
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

/// The same estimate as [`json_bytes`], of a parsed document: the memo's budget counts
/// it as it did serde_json's larger form, so what is kept is smaller than its budget.
fn node_bytes(node: &Node) -> usize {
    NODE + match node {
        Node::String(s) => s.len(),
        Node::Array(items) => items.iter().map(node_bytes).sum(),
        Node::Object(map) => map.iter().map(|(k, v)| k.len() + node_bytes(v)).sum(),
        _ => 0,
    }
}

impl Json {
    fn at(root: Arc<Node>, path: Vec<Step>) -> Value {
        let view = Json { root, path };
        match view.node() {
            Node::Array(_) | Node::Object(_) => Value::from_object(view),
            scalar => Value::from(Serde(scalar)),
        }
    }

    /// The node, found again from the root: the path was taken from this very document.
    fn node(&self) -> &Node {
        let mut node = &*self.root;
        for step in &self.path {
            let next = match (node, step) {
                (Node::Object(map), Step::Key(key)) => map.get(key),
                (Node::Array(items), Step::Index(i)) => items.get(*i),
                _ => None,
            };
            node = next.unwrap_or(&Node::Null);
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
            Node::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.node() {
            Node::Object(map) => {
                let (key, _) = map.entry(key.as_str()?)?;
                Some(self.child(Step::Key(key.clone())))
            }
            Node::Array(items) => {
                let i = key.as_usize()?;
                (i < items.len()).then(|| self.child(Step::Index(i)))
            }
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Node::Object(map) => {
                Enumerator::Values(map.sorted_keys().into_iter().map(Value::from).collect())
            }
            Node::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(match self.node() {
            Node::Object(map) => map.len(),
            Node::Array(items) => items.len(),
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
        let view = value(Node::from(&doc));
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
        let view = value(Node::from(&doc));
        let node = view.get_attr("containers").unwrap();
        assert!(matches!(of(&node), Cow::Borrowed(_)));
        assert_eq!(*of(&node), Node::from(&doc["containers"]));
        assert_eq!(*of(&converted(&doc)), Node::from(&doc));
    }

    /// What a parse holds and how it fails is `node.rs`'s to test; here, the view on it.
    #[test]
    fn a_document_is_a_view_of_its_parse() {
        let text = r#"{"z": [3, {"b": 1}], "a": {"y": {}}}"#;
        let view = document(text).unwrap();
        assert!(matches!(of(&view), Cow::Borrowed(_)));
        assert_eq!(*of(&view), Node::parse(text).unwrap());
        assert_eq!(view.get_attr("z").unwrap().len(), Some(2));
        assert_eq!(
            document("[1,]").unwrap_err().to_string(),
            serde_json::from_str::<J>("[1,]").unwrap_err().to_string()
        );
    }

    #[test]
    fn the_document_is_counted_once_not_in_every_view_into_it() {
        let doc = json!({"stdout": {"text": "x".repeat(1000)}});
        let whole = value(Node::from(&doc));
        assert_eq!(approx_bytes(&whole), json_bytes(&doc));
        assert!(approx_bytes(&whole.get_attr("stdout").unwrap()) < 100);
        assert!(approx_bytes(&converted(&doc)) >= 1000);
        // A list's items are counted once each, whatever their values.
        let list = converted(&json!([0, 0, 0]));
        assert_eq!(approx_bytes(&list), 4 * NODE);
    }
}
