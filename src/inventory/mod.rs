//! Ansible YAML inventories: hosts, nested groups and their variables.
//!
//! An operator's existing Ansible inventory must work unchanged, so the rules here are
//! Ansible's: a group has `hosts`, `vars` and `children` (read in that order of
//! precedence: vars, children, hosts, as Ansible's YAML plugin does), a host may sit in
//! several groups, `all` holds everything, and variables merge by precedence
//! all < parent group < child group < host, with `group_vars/` and `host_vars/` files above
//! the inline values of the same level. The module is pure: [`load`] does the file I/O.

mod load;
mod pattern;

pub use load::load;
pub use pattern::{Pattern, Selection};

use std::collections::HashMap;

use indexmap::{IndexMap, IndexSet};
use serde_json::Value;

use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::vars::{check_name, overlay, Vars};
use crate::yaml::{join, Document};

/// The hosts and groups of one or more inventory sources, merged.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    hosts: IndexMap<String, HostDef>,
    groups: IndexMap<String, GroupDef>,
    /// Things worth telling the operator that do not stop the run.
    pub warnings: Vec<Diagnostic>,
    /// [`MAX_HOSTS`] was reached (and said once): later hosts are not read.
    full: bool,
}

/// The most hosts one inventory may define. A fleet of ten thousand is large; a range
/// typo (`h[0:99999999]`) would otherwise expand until memory runs out.
pub const MAX_HOSTS: usize = 100_000;

#[derive(Debug, Default, Clone)]
struct HostDef {
    vars: Vars,
    /// From `host_vars/`, above the inline vars.
    file_vars: Vars,
}

#[derive(Debug, Default, Clone)]
struct GroupDef {
    vars: Vars,
    /// From `group_vars/`, above every inline group var.
    file_vars: Vars,
    children: IndexSet<String>,
    hosts: IndexSet<String>,
}

const ALL: &str = "all";
const UNGROUPED: &str = "ungrouped";
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
        let mut inv = Inventory::default();
        inv.groups.insert(ALL.to_string(), GroupDef::default());
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
                        let host = host_key(host);
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

    /// As Ansible does after reading: a group nobody lists as a child is a child of `all`.
    fn reconcile(&mut self) {
        let parents = self.parents();
        let orphans: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != ALL && !parents.contains_key(g.as_str()))
            .cloned()
            .collect();
        self.group_mut(ALL).children.extend(orphans);
    }

    /// Each group's parents: the groups that list it in `children`. Built once per query,
    /// so that walking up from a group costs its ancestors, not every group each step.
    fn parents(&self) -> HashMap<&str, Vec<&str>> {
        let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (parent, def) in &self.groups {
            for child in &def.children {
                parents
                    .entry(child.as_str())
                    .or_default()
                    .push(parent.as_str());
            }
        }
        parents
    }

    fn group_mut(&mut self, name: &str) -> &mut GroupDef {
        self.groups.entry(name.to_string()).or_default()
    }

    /// A group that is its own descendant would make variable precedence meaningless (and
    /// the depth of a group infinite), so it is refused after every read and merge. One
    /// depth-first walk of the whole graph, without recursion: a chain of ten thousand
    /// groups is neither slow nor a stack overflow.
    pub(crate) fn find_cycle(&self) -> Option<String> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            OnPath,
            Done,
        }
        let mut marks: HashMap<&str, Mark> = HashMap::new();
        for start in self.groups.keys() {
            if marks.contains_key(start.as_str()) {
                continue;
            }
            marks.insert(start, Mark::OnPath);
            // (group, its children not yet walked)
            let children = |g: &str| {
                self.groups
                    .get(g)
                    .into_iter()
                    .flat_map(|d| d.children.iter())
            };
            let mut path = vec![(start.as_str(), children(start))];
            while let Some((g, next)) = path.last_mut() {
                let g = *g;
                match next.next() {
                    Some(child) => match marks.get(child.as_str()) {
                        Some(Mark::OnPath) => {
                            return Some(format!(
                                "group `{child}` is its own descendant (through `{g}`)"
                            ))
                        }
                        Some(Mark::Done) => {}
                        None => {
                            marks.insert(child, Mark::OnPath);
                            path.push((child.as_str(), children(child)));
                        }
                    },
                    None => {
                        marks.insert(g, Mark::Done);
                        path.pop();
                    }
                }
            }
        }
        None
    }

    /// Adds the hosts, groups and variables of `other`; on conflicts `other` wins, as a later
    /// `-i` does in Ansible.
    pub fn merge(&mut self, other: Inventory) {
        for (name, host) in other.hosts {
            let def = self.hosts.entry(name).or_default();
            overlay(&mut def.vars, &host.vars);
            overlay(&mut def.file_vars, &host.file_vars);
        }
        for (name, group) in other.groups {
            let def = self.groups.entry(name).or_default();
            overlay(&mut def.vars, &group.vars);
            overlay(&mut def.file_vars, &group.file_vars);
            def.children.extend(group.children);
            def.hosts.extend(group.hosts);
        }
        self.warnings.extend(other.warnings);
    }

    /// Every host, in inventory order.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }

    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups
            .keys()
            .map(String::as_str)
            .chain(self.has_ungrouped().then_some(UNGROUPED))
    }

    pub fn has_host(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name) || (name == UNGROUPED && self.has_ungrouped())
    }

    fn has_ungrouped(&self) -> bool {
        self.hosts.keys().any(|h| self.is_ungrouped(h))
    }

    fn is_ungrouped(&self, host: &str) -> bool {
        !self
            .groups
            .iter()
            .any(|(g, def)| g != ALL && def.hosts.contains(host))
    }

    /// The hosts of a group and of all its descendants, in inventory order.
    pub fn group_hosts(&self, group: &str) -> IndexSet<&str> {
        if group == ALL {
            return self.host_names().collect();
        }
        if group == UNGROUPED {
            return self.host_names().filter(|h| self.is_ungrouped(h)).collect();
        }
        let mut members = IndexSet::new();
        let mut stack = vec![group];
        let mut visited = IndexSet::new();
        while let Some(g) = stack.pop() {
            if !visited.insert(g) {
                continue;
            }
            if let Some(def) = self.groups.get(g) {
                members.extend(def.hosts.iter().map(String::as_str));
                stack.extend(def.children.iter().map(String::as_str));
            }
        }
        // Inventory order, not discovery order.
        self.host_names().filter(|h| members.contains(h)).collect()
    }

    /// The groups a host belongs to, directly or through a child group, with `all`.
    fn groups_of<'a>(
        &'a self,
        host: &str,
        parents: &HashMap<&'a str, Vec<&'a str>>,
    ) -> IndexSet<&'a str> {
        let mut groups: IndexSet<&str> = self
            .groups
            .iter()
            .filter(|(_, def)| def.hosts.contains(host))
            .map(|(g, _)| g.as_str())
            .collect();
        let mut i = 0;
        while i < groups.len() {
            if let Some(up) = parents.get(groups[i]) {
                groups.extend(up.iter().copied());
            }
            i += 1;
        }
        groups.insert(ALL);
        groups
    }

    /// How deep each group sits below `all` by its longest chain of parents (as Ansible
    /// counts it): its variables override those of shallower groups. Computed for all
    /// groups at once, parents before children (cycles were refused when reading), since
    /// asking each group's parents recursively is exponential in a lattice of groups.
    fn depths(&self, parents: &HashMap<&str, Vec<&str>>) -> HashMap<&str, usize> {
        let mut waiting: HashMap<&str, usize> =
            parents.iter().map(|(g, up)| (*g, up.len())).collect();
        let mut ready: Vec<&str> = self
            .groups
            .keys()
            .map(String::as_str)
            .filter(|g| !parents.contains_key(g))
            .collect();
        let mut depths: HashMap<&str, usize> = HashMap::new();
        while let Some(g) = ready.pop() {
            let depth = *depths.entry(g).or_insert(0);
            for child in self.groups.get(g).into_iter().flat_map(|d| &d.children) {
                let d = depths.entry(child.as_str()).or_insert(0);
                *d = (*d).max(depth + 1);
                if let Some(n) = waiting.get_mut(child.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push(child);
                    }
                }
            }
        }
        depths
    }

    /// A host's variables with Ansible's precedence, lowest first: inline group vars (by
    /// depth, then `ansible_group_priority`, then name), `group_vars/` files in the same
    /// order, inline host vars, `host_vars/` files. Adds `inventory_hostname` and
    /// `group_names` as Ansible does.
    pub fn host_vars(&self, host: &str) -> Vars {
        let parents = self.parents();
        let depths = self.depths(&parents);
        let mut groups: Vec<&str> = self.groups_of(host, &parents).into_iter().collect();
        groups.sort_by_cached_key(|g| {
            let depth = depths.get(g).copied().unwrap_or(0);
            (depth, self.priority(g), g.to_string())
        });
        let mut vars = Vars::new();
        for g in &groups {
            overlay(&mut vars, &self.groups[*g].vars);
        }
        for g in &groups {
            overlay(&mut vars, &self.groups[*g].file_vars);
        }
        if let Some(def) = self.hosts.get(host) {
            overlay(&mut vars, &def.vars);
            overlay(&mut vars, &def.file_vars);
        }
        let mut names: Vec<&str> = groups.into_iter().filter(|g| *g != ALL).collect();
        if names.is_empty() {
            names.push(UNGROUPED);
        }
        names.sort_unstable();
        vars.insert("inventory_hostname".into(), Value::String(host.to_string()));
        vars.insert("group_names".into(), names.into());
        vars
    }

    fn priority(&self, group: &str) -> i64 {
        self.groups[group]
            .vars
            .get("ansible_group_priority")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }

    /// Adds variables read from `group_vars/<group>` (true) or `host_vars/<host>` (false).
    fn add_file_vars(&mut self, is_group: bool, name: &str, vars: &Vars) {
        let target = if is_group {
            self.groups.get_mut(name).map(|g| &mut g.file_vars)
        } else {
            self.hosts.get_mut(name).map(|h| &mut h.file_vars)
        };
        if let Some(target) = target {
            overlay(target, vars);
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
    let vars: Vars = match doc.deserialize(path, value) {
        Ok(v) => v,
        Err(d) => {
            errors.push(d);
            return None;
        }
    };
    let before = errors.len();
    check_vars(doc, path, &vars, errors);
    (errors.len() == before).then_some(vars)
}

/// Checks names and the types of the connection and rollout variables where they are set,
/// so a mistake is reported at its own line, not later on some host.
pub(crate) fn check_vars(doc: &Document, path: &str, vars: &Vars, errors: &mut Vec<Diagnostic>) {
    for (name, value) in vars {
        let field = join(path, name);
        if let Err(m) = check_name(name) {
            errors.push(Diagnostic::new(&doc.file, field.as_str(), m).at(doc.key_pos(&field)));
            continue;
        }
        if name == crate::window::VAR {
            if let Err(m) = crate::window::Windows::from_value(value) {
                errors.push(doc.error(&field, m));
            }
            continue;
        }
        let Some((_, ty)) = TYPED_VARS.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let problem = match ty {
            VarType::Text => (!value.is_string()).then_some("must be a string"),
            VarType::Bool => (!value.is_boolean()).then_some("must be true or false"),
            VarType::Int => (!value.is_i64()).then_some("must be a whole number"),
            VarType::Port => {
                (parse_port(value).is_none()).then_some("must be a port number from 1 to 65535")
            }
        };
        if let Some(problem) = problem {
            errors.push(doc.error(&field, format!("{problem}, found {value}")));
        }
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

fn host_key(key: &serde_yaml::Value) -> String {
    match key {
        serde_yaml::Value::String(s) => s.clone(),
        // `10.0.0.1:` is a string, but `42:` is read as a number.
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
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

const TOO_MANY: &str = "more hosts than an inventory may hold";

/// Expands Ansible host ranges: `web[01:03].example.com` is web01, web02, web03; `[a:c]`
/// letters; an optional `:step`. Names without brackets are returned as they are. Refuses
/// to make more than `limit` names, counting a range before expanding it.
fn expand_host_range(pattern: &str, limit: usize) -> Result<Vec<String>, String> {
    if pattern.is_empty() || pattern.chars().any(char::is_whitespace) {
        return Err(format!("`{pattern}` is not a valid host name"));
    }
    let Some(open) = pattern.find('[') else {
        if limit == 0 {
            return Err(too_many(pattern));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("host range in `{pattern}` has no closing `]`"))?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bad = || format!("`{pattern}`: a host range is [START:END] or [START:END:STEP]");
    let parts: Vec<&str> = range.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [s, e] => (*s, *e, 1),
        [s, e, step] => (*s, *e, step.parse::<usize>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    if step == 0 {
        return Err(bad());
    }
    let count = |a: u64, b: u64| if a > b { 0 } else { (b - a) / step as u64 + 1 };
    let items: Vec<String> = if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        let width = if start.starts_with('0') {
            start.len()
        } else {
            0
        };
        if count(a, b) > limit as u64 {
            return Err(too_many(pattern));
        }
        (a..=b)
            .step_by(step)
            .map(|n| format!("{n:0width$}"))
            .collect()
    } else {
        let (Some(a), Some(b)) = (single_letter(start), single_letter(end)) else {
            return Err(bad());
        };
        (a..=b).step_by(step).map(String::from).collect()
    };
    if items.is_empty() {
        return Err(format!("`{pattern}`: the host range is empty"));
    }
    let mut names = Vec::new();
    for item in items {
        for rest in expand_host_range(&format!("{item}{tail}"), limit - names.len())? {
            names.push(format!("{head}{rest}"));
        }
    }
    Ok(names)
}

fn too_many(pattern: &str) -> String {
    format!("`{pattern}` makes {TOO_MANY} ({MAX_HOSTS}); is the range right?")
}

fn single_letter(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
