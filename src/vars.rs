//! Variables: the values templates see, and the `-e` extra vars of the command line.

use std::path::Path;

use serde_json::Value;

use crate::diagnostic::Diagnostic;
use crate::yaml::Document;

/// Variables by name, in the order they were first set.
pub type Vars = serde_json::Map<String, Value>;

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
}
