//! Ansible YAML inventories: hosts, nested groups and their variables.
//!
//! An operator's existing Ansible inventory must work unchanged, so the rules here are
//! Ansible's: a group has `hosts`, `vars` and `children` (read in that order of
//! precedence: vars, children, hosts, as Ansible's YAML plugin does), a host may sit in
//! several groups, `all` holds everything, and variables merge by precedence
//! all < parent group < child group < host, with `group_vars/` and `host_vars/` files above
//! the inline values of the same level. The module is pure: [`load`] does the file I/O.

mod config;
mod ini;
mod list;
mod load;
mod parse;
mod pattern;
mod precedence;
mod pylit;
mod range;
mod script;
mod shlex;
mod source;
mod value;
mod vaulted;

pub use config::{sources, vault_options, Environment};
pub use ini::parse_ini;
pub use load::{load, load_playbook_vars};
pub use parse::parse_port;
pub use pattern::{Pattern, Selection};
pub use precedence::{Precedence, MAGIC_VARS};
pub use script::TIMEOUT_VAR as SCRIPT_TIMEOUT_VAR;
pub use source::parse_text;

use std::collections::{HashMap, HashSet};

use indexmap::{IndexMap, IndexSet};

use crate::diagnostic::Diagnostic;
use crate::vars::{overlay, Vars};

/// The hosts and groups of one or more inventory sources, merged.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    hosts: IndexMap<String, HostDef>,
    groups: IndexMap<String, GroupDef>,
    /// Things worth telling the operator that do not stop the run.
    pub warnings: Vec<Diagnostic>,
    /// [`MAX_HOSTS`] was reached (and said once): later hosts are not read.
    full: bool,
    /// The decrypted values of vault-encrypted variables and files.
    secret_values: Vec<String>,
    /// Each decrypted `!vault` value's ciphertext, by its plaintext: what to show instead.
    ciphertexts: HashMap<String, String>,
}

/// The most hosts one inventory may define. A fleet of ten thousand is large; a range
/// typo (`h[0:99999999]`) would otherwise expand until memory runs out.
pub const MAX_HOSTS: usize = 100_000;

#[derive(Debug, Default, Clone)]
struct HostDef {
    vars: Vars,
    /// From `host_vars/` beside the inventory, above the inline vars.
    file_vars: Vars,
    /// From `host_vars/` beside the playbook, above those beside the inventory.
    play_vars: Vars,
}

#[derive(Debug, Default, Clone)]
struct GroupDef {
    vars: Vars,
    /// From `group_vars/` beside the inventory, above every inline group var.
    file_vars: Vars,
    /// From `group_vars/` beside the playbook (see [`Precedence::host_vars`]).
    play_vars: Vars,
    children: IndexSet<String>,
    hosts: IndexSet<String>,
}

/// Where a `group_vars/` or `host_vars/` folder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Inventory,
    Playbook,
}

const ALL: &str = "all";
const UNGROUPED: &str = "ungrouped";
impl Inventory {
    /// An inventory with only `all` and its child `ungrouped`, as Ansible starts one.
    fn empty() -> Inventory {
        let mut inv = Inventory::default();
        inv.group_mut(ALL).children.insert(UNGROUPED.into());
        inv.group_mut(UNGROUPED);
        inv
    }

    /// As Ansible does after reading (`InventoryData.reconcile_inventory`): `all` and
    /// `ungrouped` exist, a group nobody lists as a child is a child of `all`, and
    /// `ungrouped` holds exactly the hosts no other group lists — including those an
    /// explicit `ungrouped:` group names, and none that a later file put in a group.
    fn reconcile(&mut self) {
        self.group_mut(ALL);
        if !self.groups.contains_key(UNGROUPED) {
            self.group_mut(UNGROUPED);
            self.group_mut(ALL).children.insert(UNGROUPED.into());
        }
        let parents = self.parents();
        let orphans: Vec<String> = self
            .groups
            .keys()
            .filter(|g| *g != ALL && !parents.contains_key(g.as_str()))
            .cloned()
            .collect();
        self.group_mut(ALL).children.extend(orphans);
        let grouped = self.grouped();
        let alone: IndexSet<String> = self
            .host_names()
            .filter(|h| !grouped.contains(*h))
            .map(String::from)
            .collect();
        let ungrouped = self.group_mut(UNGROUPED);
        ungrouped.hosts.retain(|h| alone.contains(h));
        ungrouped.hosts.extend(alone);
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
            overlay(&mut def.play_vars, &host.play_vars);
        }
        for (name, group) in other.groups {
            let def = self.groups.entry(name).or_default();
            overlay(&mut def.vars, &group.vars);
            overlay(&mut def.file_vars, &group.file_vars);
            overlay(&mut def.play_vars, &group.play_vars);
            def.children.extend(group.children);
            def.hosts.extend(group.hosts);
        }
        self.warnings.extend(other.warnings);
        self.secret_values.extend(other.secret_values);
        self.ciphertexts.extend(other.ciphertexts);
    }

    /// Every host, in inventory order.
    pub fn host_names(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }

    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }

    pub fn has_host(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// The hosts some group other than `all` and `ungrouped` lists: one pass over the
    /// groups, rather than a search of every group for each host.
    fn grouped(&self) -> HashSet<String> {
        self.groups
            .iter()
            .filter(|(g, _)| *g != ALL && *g != UNGROUPED)
            .flat_map(|(_, def)| def.hosts.iter().cloned())
            .collect()
    }

    /// A group's own child groups, in the order they were added.
    pub fn group_children(&self, group: &str) -> impl Iterator<Item = &str> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|g| g.children.iter().map(String::as_str))
    }

    /// The hosts a group lists itself (not through its children), in the order listed.
    pub fn group_own_hosts(&self, group: &str) -> impl Iterator<Item = &str> {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|g| g.hosts.iter().map(String::as_str))
    }

    /// A group's own variables: inline, then its `group_vars/` files on top (beside the
    /// inventory, then beside the playbook).
    pub fn group_vars(&self, group: &str) -> Vars {
        let def = self.groups.get(group);
        layered(def.map(|d| [&d.vars, &d.file_vars, &d.play_vars]))
    }

    /// A host's own variables, layered as [`Inventory::group_vars`] are.
    pub fn host_own_vars(&self, host: &str) -> Vars {
        let def = self.hosts.get(host);
        layered(def.map(|d| [&d.vars, &d.file_vars, &d.play_vars]))
    }

    /// The hosts of a group and of all its descendants, in inventory order.
    pub fn group_hosts(&self, group: &str) -> IndexSet<&str> {
        if group == ALL {
            return self.host_names().collect();
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

    /// Sets a host's own variables (a `--list` document's `_meta.hostvars`).
    fn set_host_vars(&mut self, host: &str, vars: Vars) {
        if let Some(def) = self.hosts.get_mut(host) {
            overlay(&mut def.vars, &vars);
        }
    }

    /// Adds variables read from `group_vars/<group>` (true) or `host_vars/<host>` (false),
    /// beside the inventory or beside the playbook.
    fn add_file_vars(&mut self, is_group: bool, layer: Layer, name: &str, vars: &Vars) {
        let target = match (is_group, layer) {
            (true, Layer::Inventory) => self.groups.get_mut(name).map(|g| &mut g.file_vars),
            (true, Layer::Playbook) => self.groups.get_mut(name).map(|g| &mut g.play_vars),
            (false, Layer::Inventory) => self.hosts.get_mut(name).map(|h| &mut h.file_vars),
            (false, Layer::Playbook) => self.hosts.get_mut(name).map(|h| &mut h.play_vars),
        };
        if let Some(target) = target {
            overlay(target, vars);
        }
    }
}

/// Variables set at several levels, lowest first, merged.
fn layered(levels: Option<[&Vars; 3]>) -> Vars {
    let mut vars = Vars::new();
    for level in levels.into_iter().flatten() {
        overlay(&mut vars, level);
    }
    vars
}

#[cfg(test)]
mod tests;
