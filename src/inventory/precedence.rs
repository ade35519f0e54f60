//! A host's variables by Ansible's precedence: all < parent group < child group < host,
//! with `group_vars/` and `host_vars/` files above the inline values of the same level.
//!
//! What the order needs (each group's parents and depth, each host's own groups) is worked
//! out once for the whole inventory, so giving every host of a large fleet its variables
//! costs the size of the inventory once, not once per host.

use std::collections::HashMap;

use indexmap::IndexSet;
use serde_json::Value;

use super::{Inventory, ALL, UNGROUPED};
use crate::vars::{overlay, Vars};

/// The variables Ansible sets itself for every host, which fleetup sets too; not the
/// inventory's own, so `ansible-inventory --list` does not show them.
pub const MAGIC_VARS: [&str; 2] = ["inventory_hostname", "group_names"];

const PRIORITY: &str = "ansible_group_priority";

/// The inventory's group graph, read for variable precedence.
pub struct Precedence<'a> {
    inventory: &'a Inventory,
    /// Each group's parents: the groups that list it in `children`.
    parents: HashMap<&'a str, Vec<&'a str>>,
    /// How deep each group sits below `all`.
    depths: HashMap<&'a str, usize>,
    /// The groups that list each host, in inventory order.
    direct: HashMap<&'a str, Vec<&'a str>>,
}

impl Inventory {
    /// What the variables of many hosts need, worked out once (see [`Precedence`]).
    pub fn precedence(&self) -> Precedence<'_> {
        let parents = self.parents();
        let depths = self.depths(&parents);
        let mut direct: HashMap<&str, Vec<&str>> = HashMap::new();
        for (group, def) in &self.groups {
            for host in &def.hosts {
                direct
                    .entry(host.as_str())
                    .or_default()
                    .push(group.as_str());
            }
        }
        Precedence {
            inventory: self,
            parents,
            depths,
            direct,
        }
    }

    /// One host's variables (see [`Precedence::host_vars`]); for many hosts, ask one
    /// [`Inventory::precedence`].
    pub fn host_vars(&self, host: &str) -> Vars {
        self.precedence().host_vars(host)
    }

    /// How deep each group sits below `all` by its longest chain of parents (as Ansible
    /// counts it): its variables override those of shallower groups. Computed for all
    /// groups at once, parents before children (cycles were refused when reading), since
    /// asking each group's parents recursively is exponential in a lattice of groups.
    fn depths<'a>(&'a self, parents: &HashMap<&'a str, Vec<&'a str>>) -> HashMap<&'a str, usize> {
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
}

impl<'a> Precedence<'a> {
    /// A host's variables with Ansible's precedence, lowest first: inline group vars (by
    /// depth, then `ansible_group_priority`, then name), `group_vars/` files in the same
    /// order (`all`'s first; beside the playbook above beside the inventory at each of the
    /// two steps), inline host vars, `host_vars/` files beside the inventory, then beside
    /// the playbook. Adds `inventory_hostname` and
    /// `group_names` as Ansible does.
    pub fn host_vars(&self, host: &str) -> Vars {
        let groups = &self.inventory.groups;
        let mut order: Vec<&str> = self.groups_of(host).into_iter().collect();
        order.sort_by_cached_key(|g| {
            let depth = self.depths.get(g).copied().unwrap_or(0);
            (depth, self.priority(g), g.to_string())
        });
        let mut vars = Vars::new();
        for def in order.iter().filter_map(|g| groups.get(*g)) {
            overlay(&mut vars, &def.vars);
        }
        // Ansible makes a group's inline `ansible_group_priority` the group's priority, not
        // a variable of its hosts.
        vars.remove(PRIORITY);
        // Ansible's VARIABLE_PRECEDENCE: `all`'s files beside the inventory, then beside the
        // playbook, then the other groups' beside the inventory, then beside the playbook.
        let (all, others): (Vec<&str>, Vec<&str>) = order.iter().partition(|g| **g == ALL);
        for files in [&all, &others] {
            let defs = || files.iter().filter_map(|g| groups.get(*g));
            defs().for_each(|def| overlay(&mut vars, &def.file_vars));
            defs().for_each(|def| overlay(&mut vars, &def.play_vars));
        }
        if let Some(def) = self.inventory.hosts.get(host) {
            overlay(&mut vars, &def.vars);
            overlay(&mut vars, &def.file_vars);
            overlay(&mut vars, &def.play_vars);
        }
        let mut names: Vec<&str> = order.into_iter().filter(|g| *g != ALL).collect();
        if names.is_empty() {
            names.push(UNGROUPED);
        }
        names.sort_unstable();
        let [hostname, group_names] = MAGIC_VARS;
        vars.insert(hostname.into(), Value::String(host.to_string()));
        vars.insert(group_names.into(), names.into());
        vars
    }

    /// The groups a host belongs to, directly or through a child group, with `all`.
    fn groups_of(&self, host: &str) -> IndexSet<&'a str> {
        let mut groups: IndexSet<&str> = self
            .direct
            .get(host)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let mut i = 0;
        while i < groups.len() {
            if let Some(up) = self.parents.get(groups[i]) {
                groups.extend(up.iter().copied());
            }
            i += 1;
        }
        groups.insert(ALL);
        groups
    }

    fn priority(&self, group: &str) -> i64 {
        self.inventory
            .groups
            .get(group)
            .and_then(|g| g.vars.get(PRIORITY))
            .and_then(Value::as_i64)
            .unwrap_or(1)
    }
}
