//! Ansible host patterns, for a playbook's `hosts:` and for `--limit`.
//!
//! `all` (or `*`), group and host names, `*`/`?` wildcards, and lists joined by `:` or `,`
//! where `&name` intersects and `!name` excludes. As in Ansible, the plain terms are united
//! first, then the intersections applied, then the exclusions, whatever their order in the
//! text: `production:!canaries:&eu` means (production) ∩ eu − canaries.

use indexmap::IndexSet;

use super::Inventory;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    op: Op,
    name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Intersect,
    Exclude,
}

/// The hosts a pattern selects, in inventory order, and the terms that matched nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub hosts: Vec<String>,
    pub unmatched: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut terms = Vec::new();
        for raw in text.split([':', ',']).map(str::trim) {
            if raw.is_empty() {
                return Err(format!(
                    "host pattern `{text}` has an empty part (between `:` or `,`)"
                ));
            }
            let (op, name) = if let Some(n) = raw.strip_prefix('&') {
                (Op::Intersect, n)
            } else if let Some(n) = raw.strip_prefix('!') {
                (Op::Exclude, n)
            } else {
                (Op::Union, raw)
            };
            if name.is_empty() {
                return Err(format!("host pattern `{text}`: `{raw}` names nothing"));
            }
            if name.contains(['[', ']', '~']) {
                return Err(format!(
                    "host pattern `{text}`: `{raw}` uses subscripts or regular expressions, \
                     which fleetup does not support; use names and * wildcards"
                ));
            }
            terms.push(Term {
                op,
                name: name.to_string(),
            });
        }
        if !terms.iter().any(|t| t.op == Op::Union) {
            // `!canaries` alone means "all but the canaries" in Ansible.
            terms.insert(
                0,
                Term {
                    op: Op::Union,
                    name: "all".into(),
                },
            );
        }
        Ok(Pattern {
            text: text.to_string(),
            terms,
        })
    }

    /// Every host of the inventory.
    pub fn all() -> Pattern {
        Pattern {
            text: "all".into(),
            terms: vec![Term {
                op: Op::Union,
                name: "all".into(),
            }],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Inventory {
    /// The hosts `pattern` selects, in inventory order.
    pub fn select(&self, pattern: &Pattern) -> Selection {
        let mut unmatched = Vec::new();
        let mut resolve = |name: &str| {
            let hosts = self.match_term(name);
            if hosts.is_empty() {
                unmatched.push(name.to_string());
            }
            hosts
        };
        let mut chosen: IndexSet<&str> = IndexSet::new();
        for t in pattern.terms.iter().filter(|t| t.op == Op::Union) {
            chosen.extend(resolve(&t.name));
        }
        for t in pattern.terms.iter().filter(|t| t.op == Op::Intersect) {
            let other = resolve(&t.name);
            chosen.retain(|h| other.contains(h));
        }
        for t in pattern.terms.iter().filter(|t| t.op == Op::Exclude) {
            let other = resolve(&t.name);
            chosen.retain(|h| !other.contains(h));
        }
        Selection {
            hosts: self
                .host_names()
                .filter(|h| chosen.contains(h))
                .map(str::to_string)
                .collect(),
            unmatched,
        }
    }

    /// One term: `all`/`*`, a group, a host, or a wildcard over both.
    fn match_term(&self, name: &str) -> IndexSet<&str> {
        if name == "all" || name == "*" {
            return self.host_names().collect();
        }
        if name.contains(['*', '?']) {
            let Ok(glob) = glob::Pattern::new(name) else {
                return IndexSet::new();
            };
            let groups: Vec<&str> = self.group_names().filter(|g| glob.matches(g)).collect();
            let mut hosts: IndexSet<&str> = self.host_names().filter(|h| glob.matches(h)).collect();
            for g in groups {
                hosts.extend(self.group_hosts(g));
            }
            return hosts;
        }
        if self.has_group(name) {
            return self.group_hosts(name);
        }
        self.host_names().filter(|h| *h == name).collect()
    }
}
