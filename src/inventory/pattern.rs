//! Ansible host patterns, for a playbook's `hosts:` and for `--limit`.
//!
//! `all` (or `*`), group and host names, fnmatch wildcards (`*`, `?`, `[abc]`, `[!abc]`),
//! `~regex` (matched from the start of a name, as Python's `re.match`), subscripts
//! (`web[0]`, `web[-1]`, `web[0:2]` inclusive, `web[1:]`) taken in the order Ansible lists
//! a group's hosts, and lists joined by `,` or by `:` outside brackets, where `&name`
//! intersects and `!name` excludes. As in Ansible, the plain terms are united first, then
//! the intersections applied, then the exclusions, whatever their order in the text:
//! `production:!canaries:&eu` means (production) ∩ eu − canaries.

use indexmap::IndexSet;

use super::Inventory;

#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    terms: Vec<Term>,
}

/// Two patterns are the same when written the same.
impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.text == other.text
    }
}

impl Eq for Pattern {}

#[derive(Debug, Clone)]
struct Term {
    op: Op,
    /// As written, without its `&` or `!`: what a message names.
    name: String,
    expr: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    /// `~regex`, anchored at the start of a name.
    Regex(regex::Regex),
    /// A name or fnmatch wildcard, and the subscript after it.
    Name {
        name: String,
        subscript: Option<Subscript>,
    },
}

/// `[i]` (an index, negative from the end) or `[start:end]` (inclusive; `[start:]` to the
/// end, which Ansible writes as end -1).
#[derive(Debug, Clone, Copy)]
struct Subscript {
    start: i64,
    end: Option<i64>,
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
    /// Of `unmatched`, those written after `!` or `&`: a host meant to be left out may
    /// then be in.
    pub unmatched_filters: Vec<String>,
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut terms = Vec::new();
        for raw in split(text).iter().map(|s| s.trim()) {
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
            let expr = parse_expr(name).map_err(|m| format!("host pattern `{text}`: {m}"))?;
            terms.push(Term {
                op,
                name: name.to_string(),
                expr,
            });
        }
        if !terms.iter().any(|t| t.op == Op::Union) {
            // `!canaries` alone means "all but the canaries" in Ansible.
            terms.insert(0, Term::all());
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
            terms: vec![Term::all()],
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Term {
    fn all() -> Term {
        Term {
            op: Op::Union,
            name: "all".into(),
            expr: Expr::Name {
                name: "all".into(),
                subscript: None,
            },
        }
    }
}

/// Ansible's `split_host_pattern`: on `,` when there is one, else on `:` outside brackets
/// (so `web[0:2]` is one term). An IPv6 address (`fe80::1`) is one term.
fn split(text: &str) -> Vec<&str> {
    if text.contains(',') {
        return text.split(',').collect();
    }
    let ipv6 = text.matches(':').count() >= 2
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    if ipv6 {
        return vec![text];
    }
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// One term, without its operator: `~regex`, or a name with an optional subscript
/// (Ansible's `_split_subscript`).
fn parse_expr(term: &str) -> Result<Expr, String> {
    if let Some(re) = term.strip_prefix('~') {
        return regex::Regex::new(&format!("^(?:{re})"))
            .map(Expr::Regex)
            .map_err(|e| format!("`{term}` is not a valid regular expression: {e}"));
    }
    let Some((name, inside)) = term
        .strip_suffix(']')
        .and_then(|t| t.rsplit_once('['))
        .filter(|(name, _)| !name.is_empty())
    else {
        return Ok(Expr::Name {
            name: term.to_string(),
            subscript: None,
        });
    };
    let number = |s: &str| s.parse::<i64>().ok();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let subscript = if let Some(i) = number(inside).filter(|_| {
        inside
            .trim_start_matches('-')
            .bytes()
            .all(|b| b.is_ascii_digit())
    }) {
        Some(Subscript {
            start: i,
            end: None,
        })
    } else if let Some((a, b)) = inside
        .split_once(':')
        .filter(|(a, b)| digits(a) && (b.is_empty() || digits(b)))
    {
        let end = if b.is_empty() {
            -1
        } else {
            number(b).unwrap_or(-1)
        };
        Some(Subscript {
            start: number(a).unwrap_or(0),
            end: Some(end),
        })
    } else if inside
        .split_once('-')
        .is_some_and(|(a, b)| digits(a) && (b.is_empty() || digits(b)))
    {
        // Ansible still reads `[1-3]` as a subscript, one it no longer supports: it
        // matches nothing there. Said at once rather than selecting nothing.
        return Err(format!(
            "`{term}`: Ansible reads `[{inside}]` as a removed kind of subscript and selects nothing; write `{name}[{}]` for a subscript, or `~{}` for a regular expression",
            inside.replace('-', ":"),
            term.replace('.', "\\.")
        ));
    } else {
        None
    };
    Ok(match subscript {
        Some(subscript) => Expr::Name {
            name: name.to_string(),
            subscript: Some(subscript),
        },
        // Anything else in brackets (`sl-prod-0[!13]`, `web[ab]`) is an fnmatch class.
        None => Expr::Name {
            name: term.to_string(),
            subscript: None,
        },
    })
}

impl Inventory {
    /// The hosts `pattern` selects, in inventory order.
    pub fn select(&self, pattern: &Pattern) -> Selection {
        let mut unmatched = Vec::new();
        let mut unmatched_filters = Vec::new();
        let mut resolve = |t: &Term| {
            let hosts: IndexSet<&str> = self.match_term(&t.expr).into_iter().collect();
            if hosts.is_empty() {
                unmatched.push(t.name.clone());
                if t.op != Op::Union {
                    unmatched_filters.push(t.name.clone());
                }
            }
            hosts
        };
        let mut chosen: IndexSet<&str> = IndexSet::new();
        for t in pattern.terms.iter().filter(|t| t.op == Op::Union) {
            chosen.extend(resolve(t));
        }
        for t in pattern.terms.iter().filter(|t| t.op == Op::Intersect) {
            let other = resolve(t);
            chosen.retain(|h| other.contains(h));
        }
        for t in pattern.terms.iter().filter(|t| t.op == Op::Exclude) {
            let other = resolve(t);
            chosen.retain(|h| !other.contains(h));
        }
        Selection {
            hosts: self
                .host_names()
                .filter(|h| chosen.contains(h))
                .map(str::to_string)
                .collect(),
            unmatched,
            unmatched_filters,
        }
    }

    /// One term's hosts, in the order Ansible enumerates them (which a subscript indexes).
    fn match_term<'a>(&'a self, expr: &Expr) -> Vec<&'a str> {
        let (name, subscript) = match expr {
            Expr::Regex(re) => return self.enumerate(|n| re.is_match(n), true),
            Expr::Name { name, subscript } => (name.as_str(), *subscript),
        };
        let hosts = if name == "all" || name == "*" {
            self.host_names().collect()
        } else if self.has_host(name) {
            // A plain host name is that host (Ansible checks hosts first).
            self.host_names().filter(|h| *h == name).collect()
        } else {
            let special = name.contains(['.', '?', '*', '[']);
            match glob::Pattern::new(name) {
                Ok(glob) => self.enumerate(|n| glob.matches(n), special),
                // An unbalanced `[` is no wildcard: the name, literally.
                Err(_) => self.enumerate(|n| n == name, special),
            }
        };
        match subscript {
            None => hosts,
            Some(s) => apply(&hosts, s),
        }
    }

    /// Ansible's `_enumerate_matches`: the hosts of the groups whose names match, then,
    /// when no group matched or the pattern has wildcards, the hosts whose names match.
    fn enumerate(&self, matches: impl Fn(&str) -> bool, special: bool) -> Vec<&str> {
        let mut hosts: IndexSet<&str> = IndexSet::new();
        let groups: Vec<&str> = self.group_names().filter(|g| matches(g)).collect();
        for g in &groups {
            hosts.extend(self.group_hosts_listed(g));
        }
        if groups.is_empty() || special {
            hosts.extend(self.host_names().filter(|h| matches(h)));
        }
        hosts.into_iter().collect()
    }

    /// A group's hosts as Ansible lists them: its own, then its children's, level by level.
    fn group_hosts_listed(&self, group: &str) -> IndexSet<&str> {
        if group == super::ALL {
            return self.host_names().collect();
        }
        let mut groups: IndexSet<&str> = IndexSet::new();
        groups.insert(self.group_names().find(|g| *g == group).unwrap_or_default());
        let mut i = 0;
        while i < groups.len() {
            let kids: Vec<&str> = self.group_children(groups[i]).collect();
            groups.extend(kids);
            i += 1;
        }
        groups
            .into_iter()
            .flat_map(|g| self.group_own_hosts(g))
            .collect()
    }
}

/// Ansible's `_apply_subscript`: `[i]` one host (none when out of range), `[a:b]` the
/// hosts a to b inclusive, `[a:]` to the end; `[a:0]` is `[a]`, as in Ansible.
fn apply<'a>(hosts: &[&'a str], s: Subscript) -> Vec<&'a str> {
    let len = i64::try_from(hosts.len()).unwrap_or(i64::MAX);
    let at = |i: i64| usize::try_from(if i < 0 { len + i } else { i }).ok();
    match s.end {
        Some(end) if end != 0 => {
            let end = if end == -1 { len - 1 } else { end };
            let (Some(a), Some(b)) = (at(s.start), usize::try_from(end + 1).ok()) else {
                return Vec::new();
            };
            hosts
                .get(a..b.min(hosts.len()))
                .unwrap_or_default()
                .to_vec()
        }
        _ => at(s.start)
            .and_then(|i| hosts.get(i))
            .copied()
            .into_iter()
            .collect(),
    }
}
