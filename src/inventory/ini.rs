//! INI inventories, read as Ansible's `ini` plugin reads them: `[group]` lists hosts (with
//! `host:port` and inline `key=value`), `[group:vars]` sets `key=value`, `[group:children]`
//! names groups that may be defined further down; lines before any section belong to
//! `ungrouped`; `#` and `;` start comments. Every value, inline or in `:vars`, is typed as
//! Python's `ast.literal_eval` types it (see [`super::pylit`]). Unlike Ansible, which stops
//! at the first bad line, every bad line is reported, each at its line. Pure.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::Value;

use super::parse::check_value;
use super::pylit::literal;
use super::range::{expand_host_range, TOO_MANY};
use super::{shlex, Inventory, MAX_HOSTS, UNGROUPED};
use crate::diagnostic::{Diagnostic, Diagnostics, Pos};
use crate::vars::{check_name, Vars};

#[derive(Clone, Copy, PartialEq)]
enum Section {
    Hosts,
    Vars,
    Children,
}

/// A group named before it is defined: by `[g:vars]`, or as a child in `[p:children]`.
struct Pending {
    line: usize,
    section: Section,
    parents: Vec<String>,
}

struct Reader<'a> {
    file: &'a Path,
    inv: Inventory,
    group: String,
    section: Section,
    pending: IndexMap<String, Pending>,
    errors: Vec<Diagnostic>,
    line: usize,
}

/// Reads the INI inventory `text`, read from `file` (named in messages).
pub fn parse_ini(file: &Path, text: &str) -> Result<Inventory, Diagnostics> {
    let mut r = Reader {
        file,
        inv: Inventory::empty(),
        group: UNGROUPED.into(),
        section: Section::Hosts,
        pending: IndexMap::new(),
        errors: Vec::new(),
        line: 0,
    };
    for (i, raw) in text.lines().enumerate() {
        r.line = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        r.read_line(line);
    }
    for (name, p) in std::mem::take(&mut r.pending) {
        r.line = p.line;
        let message = match p.section {
            Section::Vars => format!("section [{name}:vars] is for a group defined nowhere"),
            _ => format!(
                "section [{}:children] names group `{name}`, defined nowhere",
                p.parents.last().map_or("", String::as_str)
            ),
        };
        r.error(
            message,
            "define it with a [group] or [group:children] section",
        );
    }
    if let Some(cycle) = r.inv.find_cycle() {
        r.line = 0;
        r.errors.push(Diagnostic::new(file, "", cycle));
    }
    if !r.errors.is_empty() {
        return Err(Diagnostics(r.errors));
    }
    r.inv.reconcile();
    Ok(r.inv)
}

impl Reader<'_> {
    fn error(&mut self, message: impl Into<String>, hint: &str) {
        let pos = (self.line > 0).then_some(Pos {
            line: self.line,
            column: 1,
        });
        let mut d = Diagnostic::new(self.file, "", message).at(pos);
        if !hint.is_empty() {
            d = d.hint(hint);
        }
        self.errors.push(d);
    }

    fn read_line(&mut self, line: &str) {
        if let Some((name, section)) = section_header(line) {
            return match section {
                Ok(section) => self.start_section(name, section),
                Err(tag) => self.error(
                    format!("section [{name}:{tag}] has an unknown type `{tag}`"),
                    "a section is [group], [group:vars] or [group:children]",
                ),
            };
        }
        if line.starts_with('[') && line.ends_with(']') {
            return self.error(
                format!("invalid section `{line}`"),
                "a section is [group], [group:vars] or [group:children], without spaces",
            );
        }
        match self.section {
            Section::Hosts => self.read_hosts(line),
            Section::Vars => self.read_group_var(line),
            Section::Children => self.read_child(line),
        }
    }

    fn start_section(&mut self, name: &str, section: Section) {
        self.group = name.to_string();
        self.section = section;
        if !self.inv.groups.contains_key(name) {
            // `[g:vars]` alone does not define `g`: a group must be defined somewhere.
            if section == Section::Vars && !self.pending.contains_key(name) {
                self.pending.insert(
                    name.to_string(),
                    Pending {
                        line: self.line,
                        section,
                        parents: Vec::new(),
                    },
                );
            }
            self.inv.group_mut(name);
        }
        if section != Section::Vars {
            self.define(name);
        }
    }

    /// `name` is defined: the parents that named it before get it as a child.
    fn define(&mut self, name: &str) {
        let Some(p) = self.pending.shift_remove(name) else {
            return;
        };
        for parent in p.parents {
            self.inv
                .group_mut(&parent)
                .children
                .insert(name.to_string());
        }
    }

    fn read_group_var(&mut self, line: &str) {
        let Some((key, value)) = line.split_once('=') else {
            return self.error(
                format!("expected key=value, found `{line}`"),
                "a [group:vars] section holds one variable per line",
            );
        };
        let (key, value) = (key.trim(), typed(value.trim()));
        if self.check_var(key, &value) {
            let group = self.group.clone();
            self.inv.group_mut(&group).vars.insert(key.into(), value);
        }
    }

    fn read_child(&mut self, line: &str) {
        let child = line.split('#').next().unwrap_or("").trim();
        if child.is_empty() || child.contains([':', ']']) || child.contains(char::is_whitespace) {
            return self.error(
                format!("expected a group name, found `{line}`"),
                "a [group:children] section holds one group name per line",
            );
        }
        let parent = self.group.clone();
        if self.inv.groups.contains_key(child) && !self.pending.contains_key(child) {
            self.inv.group_mut(&parent).children.insert(child.into());
            return;
        }
        let line = self.line;
        self.pending
            .entry(child.to_string())
            .or_insert(Pending {
                line,
                section: Section::Children,
                parents: Vec::new(),
            })
            .parents
            .push(parent);
    }

    fn read_hosts(&mut self, line: &str) {
        let words = match shlex::split(line) {
            Ok(words) => words,
            Err(e) => return self.error(format!("cannot split host line `{line}`: {e}"), ""),
        };
        let Some((pattern, assignments)) = words.split_first() else {
            return;
        };
        let mut vars = Vars::new();
        for word in assignments {
            let Some((key, value)) = word.split_once('=') else {
                return self.error(
                    format!("expected key=value after the host, found `{word}`"),
                    "quote a value that holds spaces: key='a b'",
                );
            };
            let value = typed(value);
            if self.check_var(key, &value) {
                vars.insert(key.into(), value);
            }
        }
        let (pattern, port) = split_port(pattern);
        if pattern.ends_with(':') && port.is_none() {
            return self.error(
                format!("host `{pattern}` ends in `:`, which is reserved for a port"),
                "write host:PORT",
            );
        }
        if pattern == "---" {
            return self.error("`---` is no host: is this a YAML file with an error?", "");
        }
        self.add_hosts(pattern, port, vars);
    }

    fn add_hosts(&mut self, pattern: &str, port: Option<u64>, vars: Vars) {
        if self.inv.full {
            return;
        }
        let names = match expand_host_range(pattern, MAX_HOSTS - self.inv.hosts.len()) {
            Ok(names) => names,
            Err(m) => {
                self.inv.full = m.contains(TOO_MANY);
                return self.error(m, "");
            }
        };
        let group = self.group.clone();
        for name in names {
            let def = self.inv.hosts.entry(name.clone()).or_default();
            if let Some(port) = port {
                def.vars.insert("ansible_port".into(), port.into());
            }
            def.vars.extend(vars.clone());
            self.inv.group_mut(&group).hosts.insert(name);
        }
    }

    /// Whether `key=value` may be kept; a problem is reported at this line.
    fn check_var(&mut self, key: &str, value: &Value) -> bool {
        let problem = check_name(key).and_then(|()| check_value(key, value));
        match problem {
            Ok(()) => true,
            Err(m) => {
                self.error(format!("variable `{key}`: {m}"), "");
                false
            }
        }
    }
}

/// A value as Ansible's INI plugin types it: a Python literal, else the text.
fn typed(text: &str) -> Value {
    literal(text).unwrap_or_else(|| Value::String(text.to_string()))
}

/// `[name]`, `[name:tag]` (with an optional comment after it): the group and the section,
/// or the unknown tag. None when the line is no section header.
fn section_header(line: &str) -> Option<(&str, Result<Section, &str>)> {
    let inner = line.strip_prefix('[')?;
    let (inside, rest) = inner.split_once(']')?;
    let rest = rest.trim_start();
    if !(rest.is_empty() || rest.starts_with('#')) {
        return None;
    }
    let (name, tag) = match inside.split_once(':') {
        Some((name, tag)) => (name, Some(tag)),
        None => (inside, None),
    };
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    if name.is_empty() || name.contains(char::is_whitespace) || !tag.is_none_or(word) {
        return None;
    }
    let section = match tag {
        None | Some("hosts") => Ok(Section::Hosts),
        Some("vars") => Ok(Section::Vars),
        Some("children") => Ok(Section::Children),
        Some(other) => Err(other),
    };
    Some((name, section))
}

/// `host:port` and `[host]:port` (Ansible's `parse_address`): the port is split off when
/// what precedes it, brackets aside, holds no other `:` (so `::1` keeps its colons).
fn split_port(pattern: &str) -> (&str, Option<u64>) {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(inner) = pattern.strip_prefix('[') {
        if let Some((host, port)) = inner.rsplit_once("]:") {
            if digits(port) && !host.is_empty() {
                return (host, port.parse().ok());
            }
        }
    }
    let mut depth = 0;
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                let (host, port) = (&pattern[..i], &pattern[i + 1..]);
                return match digits(port) && !host.is_empty() {
                    true => (host, port.parse().ok()),
                    false => (pattern, None),
                };
            }
            _ => {}
        }
    }
    (pattern, None)
}

#[cfg(test)]
#[path = "ini_tests.rs"]
mod tests;
