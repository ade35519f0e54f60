//! Inventories in the JSON form `ansible-inventory --list` writes and inventory scripts
//! print: each top-level key a group (`hosts` a list, `vars` a mapping, `children` a
//! list), and `_meta.hostvars` each host's variables. Read as Ansible's `script` plugin
//! reads a script's output, including its old leniencies (a group given as a bare list of
//! hosts; a group mapping with none of the three keys taken as one host of that name with
//! those variables). Ansible reads this form only from a script's output; fleetup also
//! reads it from a file, so that a `--list` export can be kept as an inventory. Pure.

use serde_yaml::Value;

use super::parse::check_value;
use super::value::{key_string, to_vars};
use super::Inventory;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::vars::{check_name, Vars};
use crate::yaml::{join, Document};

/// What a list document holds.
pub(super) struct Listed {
    pub inventory: Inventory,
    /// Whether `_meta.hostvars` was given: without it, a script is asked `--host H`.
    pub has_meta: bool,
}

/// Whether a document is in the `--list` form rather than Ansible's YAML form: it has
/// `_meta`, or a group whose `hosts` or `children` is a list.
pub(super) fn is_list_form(value: &Value) -> bool {
    let Some(map) = value.as_mapping() else {
        return false;
    };
    map.contains_key("_meta")
        || map.values().any(|g| {
            g.as_sequence().is_some()
                || ["hosts", "children"]
                    .iter()
                    .any(|k| g.get(k).is_some_and(Value::is_sequence))
        })
}

/// Reads a document in the `--list` form.
pub(super) fn read_list(doc: &Document) -> Result<Listed, Diagnostics> {
    let mut inv = Inventory::empty();
    let mut errors = Vec::new();
    let Some(top) = doc.value.as_mapping() else {
        return Err(doc
            .error("", "a --list inventory is a JSON object of groups")
            .into());
    };
    let mut meta = None;
    for (name, data) in top {
        let name = key_string(name);
        if name == "_meta" {
            meta = Some(data);
        } else {
            read_group(doc, &mut inv, &name, data, &mut errors);
        }
    }
    let hostvars = meta.map(|m| (m.get("hostvars"), "_meta.hostvars"));
    match hostvars {
        Some((Some(Value::Mapping(all)), path)) => {
            for (host, vars) in all {
                let host = key_string(host);
                if inv.hosts.contains_key(&host) {
                    let field = join(path, &host);
                    if let Some(vars) = checked_vars(doc, &field, vars, &mut errors) {
                        inv.set_host_vars(&host, vars);
                    }
                }
            }
        }
        Some((_, path)) => errors.push(doc.error(path, "`_meta.hostvars` must be an object")),
        None => {}
    }
    if let Some(cycle) = inv.find_cycle() {
        errors.push(doc.error("", cycle));
    }
    if !errors.is_empty() {
        return Err(Diagnostics(errors));
    }
    inv.reconcile();
    Ok(Listed {
        inventory: inv,
        has_meta: meta.is_some(),
    })
}

fn read_group(
    doc: &Document,
    inv: &mut Inventory,
    name: &str,
    data: &Value,
    errors: &mut Vec<Diagnostic>,
) {
    inv.group_mut(name);
    let keys = ["hosts", "vars", "children"];
    let lone_host;
    let (hosts, vars, children) = match data {
        Value::Mapping(m) if keys.iter().any(|k| m.contains_key(*k)) => {
            (m.get("hosts"), m.get("vars"), m.get("children"))
        }
        // `{"web1": {"x": 1}}`: a group holding one host of its name, with these variables.
        Value::Mapping(_) => {
            lone_host = Value::Sequence(vec![Value::String(name.into())]);
            (Some(&lone_host), Some(data), None)
        }
        hosts => (Some(hosts), None, None),
    };
    if let Some(hosts) = hosts {
        let Some(hosts) = hosts.as_sequence() else {
            return errors.push(doc.error(&join(name, "hosts"), "`hosts` must be a list"));
        };
        for host in hosts {
            let host = key_string(host);
            inv.hosts.entry(host.clone()).or_default();
            inv.group_mut(name).hosts.insert(host);
        }
    }
    if let Some(vars) = vars {
        if let Some(vars) = checked_vars(doc, &join(name, "vars"), vars, errors) {
            crate::vars::overlay(&mut inv.group_mut(name).vars, &vars);
        }
    }
    if let Some(children) = children {
        let Some(children) = children.as_sequence() else {
            return errors.push(doc.error(&join(name, "children"), "`children` must be a list"));
        };
        for child in children {
            let child = key_string(child);
            inv.group_mut(&child);
            inv.group_mut(name).children.insert(child);
        }
    }
}

/// A mapping of variables, each checked, or `None` after reporting what is wrong.
pub(super) fn checked_vars(
    doc: &Document,
    path: &str,
    value: &Value,
    errors: &mut Vec<Diagnostic>,
) -> Option<Vars> {
    let Some(vars) = to_vars(doc, path, value) else {
        errors.push(doc.error(path, "variables must be an object of name: value"));
        return None;
    };
    let before = errors.len();
    for (name, value) in &vars {
        let field = join(path, name);
        if let Err(m) = check_name(name).and_then(|()| check_value(name, value)) {
            errors.push(doc.error(&field, m));
        }
    }
    (errors.len() == before).then_some(vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn list(text: &str) -> Result<Listed, Diagnostics> {
        read_list(&Document::parse(Path::new("inv.json"), text).unwrap())
    }

    #[test]
    fn reads_the_list_form_with_meta() {
        let text = r#"{"_meta": {"hostvars": {"w1": {"x": 1}, "stray": {"y": 2}}},
            "all": {"children": ["ungrouped", "web"]},
            "web": {"hosts": ["w1", "w2"], "vars": {"http_port": 80}, "children": ["edge"]},
            "edge": ["e1"], "solo": {"z": 3}}"#;
        assert!(is_list_form(
            &Document::parse(Path::new("x"), text).unwrap().value
        ));
        let listed = list(text).unwrap();
        assert!(listed.has_meta);
        let inv = listed.inventory;
        assert_eq!(
            inv.host_names().collect::<Vec<_>>(),
            ["w1", "w2", "e1", "solo"]
        );
        assert_eq!(inv.host_vars("w1")["x"], json!(1));
        assert_eq!(inv.host_vars("e1")["http_port"], json!(80));
        assert_eq!(inv.host_vars("solo")["z"], json!(3));
        assert!(
            !inv.has_host("stray"),
            "hostvars of a host in no group are ignored"
        );
    }

    #[test]
    fn wrong_shapes_are_named() {
        let e = list(r#"{"web": {"hosts": "w1"}, "db": {"vars": {"ansible_port": "x"}}}"#)
            .err()
            .unwrap();
        let text = e.to_string();
        assert!(text.contains("web.hosts: `hosts` must be a list"), "{text}");
        assert!(
            text.contains("db.vars.ansible_port: must be a port"),
            "{text}"
        );
    }
}
