//! `fleetup inventory`: what fleetup makes of an inventory, in `ansible-inventory`'s own
//! shapes and formatting (`--list`, `--host`: JSON with sorted keys and four-space indents
//! as Python's `json.dumps` writes them; `--graph`, with `--vars` values as
//! Python prints them), so that `diff` between the two shows only real disagreements.

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::{Map, Value};

use crate::inventory::{Inventory, MAGIC_VARS};
use crate::vars::Vars;

const ALL: &str = "all";

/// `ansible-inventory --list [--export]`, for the hosts in `hosts` (the `--limit`ed ones).
pub fn list(inventory: &Inventory, hosts: &[String], export: bool) -> String {
    let available: HashSet<&str> = hosts.iter().map(String::as_str).collect();
    let mut out = Map::new();
    let mut seen = HashSet::new();
    list_group(inventory, ALL, &available, export, &mut seen, &mut out);
    let precedence = inventory.precedence();
    let mut hostvars = Map::new();
    for host in hosts {
        let vars = if export {
            inventory.host_own_vars(host)
        } else {
            without_magic(precedence.host_vars(host))
        };
        if !vars.is_empty() {
            hostvars.insert(host.clone(), inventory.shown(&Value::Object(vars)));
        }
    }
    let mut meta = Map::new();
    meta.insert("hostvars".into(), Value::Object(hostvars));
    meta.insert("profile".into(), "inventory_legacy".into());
    out.insert("_meta".into(), Value::Object(meta));
    python_json(&Value::Object(out))
}

/// One group's entry and, the first time each is met, its children's (Ansible's
/// `format_group`): empty keys are left out, and so is a group left empty.
fn list_group<'a>(
    inventory: &'a Inventory,
    group: &'a str,
    available: &HashSet<&str>,
    export: bool,
    seen: &mut HashSet<&'a str>,
    out: &mut Map<String, Value>,
) {
    let mut entry = Map::new();
    if group != ALL {
        let hosts: Vec<Value> = inventory
            .group_own_hosts(group)
            .filter(|h| available.contains(h))
            .map(Value::from)
            .collect();
        entry.insert("hosts".into(), Value::Array(hosts));
    }
    let mut children = Vec::new();
    for child in inventory.group_children(group) {
        children.push(Value::from(child));
        if seen.insert(child) {
            list_group(inventory, child, available, export, seen, out);
        }
    }
    entry.insert("children".into(), Value::Array(children));
    if export {
        let vars = Value::Object(inventory.group_vars(group));
        entry.insert("vars".into(), inventory.shown(&vars));
    }
    entry.retain(|_, v| !is_empty(v));
    if !entry.is_empty() {
        out.insert(group.to_string(), Value::Object(entry));
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// `ansible-inventory --host H`: the host's variables, without the magic ones.
pub fn host(inventory: &Inventory, host: &str) -> String {
    python_json(&inventory.shown(&Value::Object(without_magic(inventory.host_vars(host)))))
}

fn without_magic(mut vars: Vars) -> Vars {
    vars.retain(|k, _| !MAGIC_VARS.contains(&k.as_str()));
    vars
}

/// `ansible-inventory --graph [GROUP] [--vars]`: a group, then its children (depth
/// first, a group under each of its parents), then its own hosts and variables.
pub fn graph(inventory: &Inventory, group: &str, with_vars: bool) -> String {
    enum Step<'a> {
        Enter(&'a str, usize),
        Lines(Vec<String>),
    }
    let precedence = inventory.precedence();
    let mut lines = Vec::new();
    // An explicit stack: a chain of groups thousands deep is no stack overflow.
    let mut stack = vec![Step::Enter(group, 0)];
    while let Some(step) = stack.pop() {
        let (g, depth) = match step {
            Step::Lines(more) => {
                lines.extend(more);
                continue;
            }
            Step::Enter(g, depth) => (g, depth),
        };
        lines.push(graph_line(&format!("@{g}:"), depth));
        let mut after = Vec::new();
        if g != ALL {
            for h in inventory.group_own_hosts(g) {
                after.push(graph_line(h, depth + 1));
                if with_vars {
                    let vars = without_magic(precedence.host_vars(h));
                    after.extend(var_lines(inventory, &vars, depth + 2));
                }
            }
        }
        if with_vars {
            after.extend(var_lines(inventory, &inventory.group_vars(g), depth + 1));
        }
        stack.push(Step::Lines(after));
        let kids: Vec<&str> = inventory.group_children(g).collect();
        stack.extend(kids.into_iter().rev().map(|k| Step::Enter(k, depth + 1)));
    }
    lines.join("\n")
}

fn graph_line(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_string()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn var_lines(inventory: &Inventory, vars: &Vars, depth: usize) -> Vec<String> {
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|k| {
            let value = python_str(&inventory.shown(&vars[k]));
            graph_line(&format!("{{{k} = {value}}}"), depth)
        })
        .collect()
}

/// A value as Python's `str()` prints it: strings bare at the top, quoted inside lists and
/// dicts (`repr`), `True`, `None`.
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => python_repr(other),
    }
}

fn python_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => python_number(n),
        Value::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::from(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\t' => out.push_str("\\t"),
                    '\r' => out.push_str("\\r"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
            out
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(python_repr).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        python_repr(&Value::from(k.as_str())),
                        python_repr(v)
                    )
                })
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

/// A number as Python writes it: `1.0` stays `1.0`, `1e+16`, `1e-05`.
fn python_number(n: &serde_json::Number) -> String {
    let text = n.to_string();
    if !n.is_f64() {
        return text;
    }
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp.trim_start_matches('+')),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

/// JSON as Python's `json.dumps(value, sort_keys=True, indent=4)` writes it.
pub fn python_json(v: &Value) -> String {
    let mut out = String::new();
    write_json(v, 0, &mut out);
    out
}

fn write_json(v: &Value, depth: usize, out: &mut String) {
    let pad = |d: usize| "    ".repeat(d);
    match v {
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&pad(depth + 1));
                write_json(item, depth + 1, out);
            }
            let _ = write!(out, "\n{}]", pad(depth));
        }
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                out.push_str(if i == 0 { "\n" } else { ",\n" });
                out.push_str(&pad(depth + 1));
                write_string(k, out);
                out.push_str(": ");
                write_json(&map[k], depth + 1, out);
            }
            let _ = write!(out, "\n{}}}", pad(depth));
        }
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
        Value::String(s) => write_string(s, out),
        Value::Number(n) => out.push_str(&python_number(n)),
        other => out.push_str(&other.to_string()),
    }
}

/// A JSON string as Ansible's encoder writes it: control characters escaped, the rest of
/// Unicode as it is.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
