//! The hosts a play selected, each with every variable it will see, found by name in
//! constant time: the engine asks for hosts by name inside its loops, and an inventory may
//! hold [`crate::inventory::MAX_HOSTS`] of them.

use std::collections::HashMap;
use std::ops::Deref;

use crate::vars::Layered;

/// A host selected for the play, with every variable it will see.
#[derive(Debug, Clone)]
pub struct HostInPlay {
    pub name: String,
    pub vars: Layered,
}

/// The hosts in play, in inventory order, indexed by name. Read as a slice; changed only
/// through methods that keep the index right.
#[derive(Debug, Clone, Default)]
pub struct HostsInPlay {
    hosts: Vec<HostInPlay>,
    /// Name → position in `hosts`.
    index: HashMap<String, usize>,
}

impl HostsInPlay {
    pub fn new(hosts: Vec<HostInPlay>) -> HostsInPlay {
        let mut index = HashMap::with_capacity(hosts.len());
        for (i, host) in hosts.iter().enumerate() {
            // The first of a name wins, as a search in order would find it.
            index.entry(host.name.clone()).or_insert(i);
        }
        HostsInPlay { hosts, index }
    }

    pub fn get(&self, name: &str) -> Option<&HostInPlay> {
        self.index.get(name).map(|&i| &self.hosts[i])
    }

    /// Keeps the hosts `keep` accepts, in the same order.
    pub(super) fn retain(&mut self, keep: impl FnMut(&HostInPlay) -> bool) {
        let mut hosts = std::mem::take(&mut self.hosts);
        hosts.retain(keep);
        *self = HostsInPlay::new(hosts);
    }

    /// Sets one variable to the same value for every host.
    pub(super) fn set_var(&mut self, name: &str, value: &str) {
        for host in &mut self.hosts {
            host.vars.insert(name.into(), value.into());
        }
    }
}

impl Deref for HostsInPlay {
    type Target = [HostInPlay];

    fn deref(&self) -> &[HostInPlay] {
        &self.hosts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::Lookup;

    fn hosts(names: &[&str]) -> HostsInPlay {
        HostsInPlay::new(
            names
                .iter()
                .map(|n| HostInPlay {
                    name: n.to_string(),
                    vars: Default::default(),
                })
                .collect(),
        )
    }

    #[test]
    fn hosts_are_found_by_name_after_a_retain() {
        let mut play = hosts(&["a", "b", "c"]);
        assert_eq!(play.get("b").map(|h| h.name.as_str()), Some("b"));
        play.retain(|h| h.name != "a");
        assert_eq!(play.get("a").map(|h| h.name.as_str()), None);
        assert_eq!(play.get("c").map(|h| h.name.as_str()), Some("c"));
        let names: Vec<&str> = play.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["b", "c"]);
    }

    #[test]
    fn a_variable_set_for_every_host() {
        let mut play = hosts(&["a", "b"]);
        play.set_var("run", "r1");
        assert!(play.iter().all(|h| h.vars.get("run") == Some(&"r1".into())));
    }
}
