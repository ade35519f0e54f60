//! A host's variables over the playbook's defaults, which every host shares.

use std::sync::Arc;

use serde_json::Value;

use super::{Lookup, NameSet, Vars};

/// A host's variables: what it sets itself over the playbook's defaults, which every host
/// shares (a copy of them for each host was 29 kB, 29 MB at 1000 hosts).
#[derive(Clone, Debug, Default)]
pub struct Layered {
    defaults: Arc<Vars>,
    own: Vars,
    /// The names in `own`: most reads are of a default, and a miss in `own` cost as much
    /// as the read itself (every template reads its variables through here).
    own_names: NameSet,
}

impl Layered {
    pub fn new(defaults: Arc<Vars>, own: Vars) -> Self {
        let own_names = own
            .keys()
            .fold(NameSet::default(), |set, name| set.with(NameSet::of(name)));
        Layered {
            defaults,
            own,
            own_names,
        }
    }

    pub fn insert(&mut self, name: String, value: Value) {
        self.own_names = self.own_names.with(NameSet::of(&name));
        self.own.insert(name, value);
    }

    /// What the host sets itself, over the defaults.
    pub fn own(&self) -> &Vars {
        &self.own
    }

    /// Every variable once, in the order [`super::overlay`] of the host's own on a copy of the
    /// defaults would give.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        let defaults = self
            .defaults
            .iter()
            .map(|(k, v)| (k, self.own_value(k).unwrap_or(v)));
        let added = self
            .own
            .iter()
            .filter(|(k, _)| !self.defaults.contains_key(*k));
        defaults.chain(added)
    }

    /// The host's own value of `name`, looked up only if the host may set it.
    fn own_value(&self, name: &str) -> Option<&Value> {
        self.own_names
            .may_hold(name)
            .then(|| self.own.get(name))
            .flatten()
    }
}

/// As the one mapping of [`Layered::iter`].
impl serde::Serialize for Layered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl From<Vars> for Layered {
    fn from(own: Vars) -> Self {
        Layered::new(Arc::default(), own)
    }
}

impl Lookup for Layered {
    fn get(&self, name: &str) -> Option<&Value> {
        self.own_value(name).or_else(|| self.defaults.get(name))
    }

    fn names(&self) -> Vec<&str> {
        self.iter().map(|(k, _)| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vars::{overlay, parse_extra_vars};
    use serde_json::json;

    #[test]
    fn a_host_sees_its_own_over_the_shared_defaults_as_an_overlay_would_give() {
        let defaults = parse_extra_vars(r#"{"a": 1, "b": {"x": 1}, "c": 3}"#).unwrap();
        let own = parse_extra_vars(r#"{"d": 4, "b": {"y": 2}}"#).unwrap();
        let mut copied = defaults.clone();
        overlay(&mut copied, &own);
        let defaults = Arc::new(defaults);
        let mut host = Layered::new(defaults.clone(), own);
        // Written out in the same order too: the journal's fingerprint of a host is its text.
        assert_eq!(
            serde_json::to_string(&host).unwrap(),
            serde_json::to_string(&copied).unwrap()
        );
        assert_eq!(host.names(), ["a", "b", "c", "d"]);
        assert_eq!(host.get("b"), Some(&json!({"y": 2})));
        host.insert("a".into(), json!(9));
        host.insert("e".into(), json!(5));
        assert_eq!(host.get("a"), Some(&json!(9)));
        assert_eq!(host.get("e"), Some(&json!(5)));
        assert_eq!(host.get("f"), None);
        assert_eq!(
            defaults["a"],
            json!(1),
            "the shared defaults are never changed"
        );
    }
}
