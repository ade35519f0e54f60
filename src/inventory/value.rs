//! YAML values as Ansible keeps them: a mapping's keys are strings whatever YAML typed them
//! (`ports: {80: http}` is `{"80": "http"}`, as Ansible's JSON shows it), so one odd key
//! does not make the whole inventory unreadable. And unquoted `yes`, `no`, `on` and `off`
//! are booleans, as the YAML 1.1 that Ansible reads says (YAML 1.2 made them text), so
//! that `enabled: no` is false in fleetup as in Ansible.

use serde_json::{Number, Value};

use crate::vars::Vars;
use crate::yaml::{join, Document};

/// The variables of the mapping at `path` of `doc` (`None` when it is not a mapping).
pub(crate) fn to_vars(doc: &Document, path: &str, value: &serde_yaml::Value) -> Option<Vars> {
    match convert(Some(doc), path, value) {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// Recursive: serde_yaml refuses documents nested deeper than 128 levels, so the depth is
/// bounded.
fn convert(doc: Option<&Document>, path: &str, value: &serde_yaml::Value) -> Value {
    match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(*b),
        serde_yaml::Value::Number(n) => number(n),
        serde_yaml::Value::String(s) => match doc.filter(|d| d.is_plain(path)) {
            Some(_) => yaml11_bool(s).map_or_else(|| Value::String(s.clone()), Value::Bool),
            None => Value::String(s.clone()),
        },
        serde_yaml::Value::Sequence(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| convert(doc, &format!("{path}[{i}]"), v))
                .collect(),
        ),
        serde_yaml::Value::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let k = key_string(k);
                    let v = convert(doc, &join(path, &k), v);
                    (k, v)
                })
                .collect::<Vars>(),
        ),
        serde_yaml::Value::Tagged(tagged) => match (doc, &tagged.value) {
            (Some(doc), serde_yaml::Value::String(text)) if tagged.tag == "vault" => {
                super::vaulted::marker(text, &doc.file, doc.pos(path))
            }
            _ => convert(doc, path, &tagged.value),
        },
    }
}

/// The booleans of YAML 1.1 (PyYAML's resolver) that YAML 1.2 reads as text.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn number(n: &serde_yaml::Number) -> Value {
    if let Some(i) = n.as_i64() {
        return Value::from(i);
    }
    if let Some(u) = n.as_u64() {
        return Value::from(u);
    }
    let f = n.as_f64().unwrap_or(f64::NAN);
    // JSON has no infinity or NaN: Ansible's JSON writes them as words, kept here as text.
    Number::from_f64(f).map_or_else(|| Value::String(n.to_string()), Value::Number)
}

/// A key as JSON writes it: `80` → "80", `true` → "true", `~` → "null".
pub(crate) fn key_string(key: &serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Null => "null".into(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        serde_yaml::Value::Number(n) => match number(n) {
            Value::String(s) => s,
            v => v.to_string(),
        },
        serde_yaml::Value::Tagged(t) => key_string(&t.value),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> serde_yaml::Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn keys_of_any_type_become_strings() {
        let v = convert(
            None,
            "",
            &yaml("{80: http, 443: https, true: yes, ~: none, 1.5: f}"),
        );
        assert_eq!(
            v,
            json!({"80": "http", "443": "https", "true": "yes", "null": "none", "1.5": "f"})
        );
    }

    #[test]
    fn unquoted_yaml11_booleans_are_booleans() {
        let doc = Document::parse(
            std::path::Path::new("v.yml"),
            "a: yes\nb: 'yes'\nc: [off, \"on\", No]\nd: {e: ON}\nf: yesterday\n",
        )
        .unwrap();
        assert_eq!(
            Value::Object(to_vars(&doc, "", &doc.value).unwrap()),
            json!({"a": true, "b": "yes", "c": [false, "on", false], "d": {"e": true}, "f": "yesterday"})
        );
    }

    #[test]
    fn nested_values_keep_their_types() {
        let v = convert(None, "", &yaml("a: [1, 2.5, x, null, {b: [true]}]"));
        assert_eq!(v, json!({"a": [1, 2.5, "x", null, {"b": [true]}]}));
    }
}
