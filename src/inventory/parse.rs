//! Reading one inventory document (the YAML of one `-i` file) into an [`Inventory`]: its
//! groups, hosts and variables, each mistake placed at its line. Pure: [`super::load`]
//! reads the files.

use serde_json::Value;

use super::range::{expand_host_range, TOO_MANY};
use super::value::{key_string, to_vars};
use super::{Inventory, MAX_HOSTS};
use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::vars::{check_name, overlay, Vars};
use crate::yaml::{join, Document};

const GROUP_KEYS: [&str; 3] = ["hosts", "vars", "children"];

/// Variables whose type fleetup relies on, checked where they are set.
const TYPED_VARS: [(&str, VarType); 8] = [
    ("ansible_host", VarType::Text),
    ("ansible_port", VarType::Port),
    ("ansible_user", VarType::Text),
    ("ansible_ssh_private_key_file", VarType::Text),
    ("ansible_ssh_common_args", VarType::Text),
    ("ansible_group_priority", VarType::Int),
    ("canary", VarType::Bool),
    ("proxy_jump", VarType::Text),
];

#[derive(Clone, Copy)]
enum VarType {
    Text,
    Port,
    Int,
    Bool,
}

impl Inventory {
    /// Reads one inventory document (the YAML text of one `-i` file).
    pub fn from_document(doc: &Document) -> Result<Inventory, Diagnostics> {
        let mut inv = Inventory::empty();
        let mut errors = Vec::new();
        match &doc.value {
            serde_yaml::Value::Null => inv.warnings.push(doc.error("", "inventory is empty")),
            serde_yaml::Value::Mapping(top) => {
                for (name, def) in top {
                    let Some(name) = name.as_str() else {
                        errors.push(doc.error("", "group names must be strings"));
                        continue;
                    };
                    inv.read_group(doc, name, name, def, None, &mut errors);
                }
            }
            _ => errors.push(
                doc.error("", "an inventory is a mapping of groups")
                    .hint("start with `all:` and put hosts under `hosts:`"),
            ),
        }
        if let Some(cycle) = inv.find_cycle() {
            errors.push(doc.error("", cycle));
        } else {
            inv.reconcile();
        }
        if errors.is_empty() {
            Ok(inv)
        } else {
            Err(Diagnostics(errors))
        }
    }

    fn read_group(
        &mut self,
        doc: &Document,
        path: &str,
        name: &str,
        def: &serde_yaml::Value,
        parent: Option<&str>,
        errors: &mut Vec<Diagnostic>,
    ) {
        if let Err(m) = check_group_name(name) {
            errors.push(Diagnostic::new(&doc.file, path, m).at(doc.key_pos(path)));
            return;
        }
        self.groups.entry(name.to_string()).or_default();
        if let Some(parent) = parent {
            self.group_mut(parent).children.insert(name.to_string());
        }
        let map = match def {
            serde_yaml::Value::Null => return,
            serde_yaml::Value::Mapping(map) => map,
            _ => {
                errors.push(doc.error(path, "a group is a mapping with hosts, vars and children"));
                return;
            }
        };
        for key in map.keys() {
            let key = key.as_str().unwrap_or("?");
            if !GROUP_KEYS.contains(&key) {
                let field = join(path, key);
                let hint = did_you_mean(key, GROUP_KEYS).unwrap_or_else(|| {
                    "a group has only hosts, vars and children: hosts go under `hosts:`".into()
                });
                errors.push(
                    Diagnostic::new(&doc.file, field.as_str(), "unknown key in a group")
                        .at(doc.key_pos(&field))
                        .hint(hint),
                );
            }
        }
        if let Some(vars) = map.get("vars") {
            let vpath = join(path, "vars");
            if let Some(vars) = read_vars(doc, &vpath, vars, errors) {
                overlay(&mut self.group_mut(name).vars, &vars);
            }
        }
        if let Some(children) = map.get("children") {
            let cpath = join(path, "children");
            match children {
                serde_yaml::Value::Null => {}
                serde_yaml::Value::Mapping(children) => {
                    for (child, def) in children {
                        let child = child.as_str().unwrap_or_default();
                        self.read_group(doc, &join(&cpath, child), child, def, Some(name), errors);
                    }
                }
                _ => errors.push(doc.error(&cpath, "children is a mapping of group names")),
            }
        }
        if let Some(hosts) = map.get("hosts") {
            let hpath = join(path, "hosts");
            match hosts {
                serde_yaml::Value::Null => {}
                serde_yaml::Value::Mapping(hosts) => {
                    for (host, vars) in hosts {
                        let host = key_string(host);
                        self.read_host(doc, &join(&hpath, &host), &host, vars, name, errors);
                    }
                }
                _ => errors.push(
                    doc.error(&hpath, "hosts is a mapping of host names")
                        .hint("write `web1:` (with a colon) for a host without variables"),
                ),
            }
        }
    }

    fn read_host(
        &mut self,
        doc: &Document,
        path: &str,
        pattern: &str,
        vars: &serde_yaml::Value,
        group: &str,
        errors: &mut Vec<Diagnostic>,
    ) {
        if self.full {
            return;
        }
        let names = match expand_host_range(pattern, MAX_HOSTS - self.hosts.len()) {
            Ok(names) => names,
            Err(m) => {
                self.full = m.contains(TOO_MANY);
                errors.push(Diagnostic::new(&doc.file, path, m).at(doc.key_pos(path)));
                return;
            }
        };
        let vars = match vars {
            serde_yaml::Value::Null => Some(Vars::new()),
            v => read_vars(doc, path, v, errors),
        };
        for name in names {
            let def = self.hosts.entry(name.clone()).or_default();
            if let Some(vars) = &vars {
                overlay(&mut def.vars, vars);
            }
            self.group_mut(group).hosts.insert(name);
        }
    }
}

/// Reads a `vars` mapping and checks the variables fleetup relies on.
fn read_vars(
    doc: &Document,
    path: &str,
    value: &serde_yaml::Value,
    errors: &mut Vec<Diagnostic>,
) -> Option<Vars> {
    if !value.is_mapping() {
        errors.push(doc.error(path, "variables must be a mapping of name: value"));
        return None;
    }
    // Keys of any type are kept, as strings, as Ansible keeps them.
    let vars = to_vars(doc, path, value)?;
    let before = errors.len();
    check_vars(doc, path, &vars, errors);
    (errors.len() == before).then_some(vars)
}

/// Checks names and the types of the connection and rollout variables where they are set,
/// so a mistake is reported at its own line, not later on some host.
pub(super) fn check_vars(doc: &Document, path: &str, vars: &Vars, errors: &mut Vec<Diagnostic>) {
    for (name, value) in vars {
        let field = join(path, name);
        if let Err(m) = check_name(name) {
            errors.push(Diagnostic::new(&doc.file, field.as_str(), m).at(doc.key_pos(&field)));
        } else if let Err(m) = check_value(name, value) {
            errors.push(doc.error(&field, m));
        }
    }
}

/// The type fleetup needs of a variable it relies on (`ansible_port`, `window`...).
pub(super) fn check_value(name: &str, value: &Value) -> Result<(), String> {
    if super::vaulted::is_marker(value) {
        // Checked once decrypted (see `load`).
        return Ok(());
    }
    if name == crate::window::VAR {
        return crate::window::Windows::from_value(value).map(|_| ());
    }
    let Some((_, ty)) = TYPED_VARS.iter().find(|(n, _)| *n == name) else {
        return Ok(());
    };
    let problem = match ty {
        VarType::Text => (!value.is_string()).then_some("must be a string"),
        VarType::Bool => (!value.is_boolean()).then_some("must be true or false"),
        VarType::Int => (!value.is_i64()).then_some("must be a whole number"),
        VarType::Port => {
            (parse_port(value).is_none()).then_some("must be a port number from 1 to 65535")
        }
    };
    match problem {
        Some(problem) => Err(format!("{problem}, found {value}")),
        None => Ok(()),
    }
}

/// A port as Ansible accepts it: a number, or a string of digits.
pub fn parse_port(value: &Value) -> Option<u16> {
    let n = match value {
        Value::Number(n) => n.as_u64()?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p > 0)
}

fn check_group_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| !(c.is_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(format!(
            "`{name}` is not a valid group name (letters, digits, _ and -)"
        ));
    }
    Ok(())
}
