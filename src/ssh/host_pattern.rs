//! OpenSSH's host patterns (`match.c`): `*` and `?` wildcards, comma lists and `!`
//! negation, as known_hosts and ssh_config use them.

/// What a pattern list says about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListMatch {
    /// No pattern of the list matches.
    None,
    /// A pattern matches and no negated one does.
    Positive,
    /// A negated pattern (`!pat`) matches: the list excludes the name, whatever else
    /// matches.
    Negated,
}

/// `*` matches any run of characters (none included), `?` exactly one; everything else
/// itself. Case-sensitive, as OpenSSH's `match_pattern`.
pub(crate) fn wildcard(name: &str, pattern: &str) -> bool {
    // Most patterns are plain names (every line of a fleet's known_hosts is matched against
    // every host it connects to): without a wildcard, a pattern matches only itself.
    if !pattern.contains(['*', '?']) {
        return name == pattern;
    }
    let (n, p): (Vec<char>, Vec<char>) = (name.chars().collect(), pattern.chars().collect());
    // Classic backtracking on the last `*`: linear in practice, no recursion.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < n.len() {
        if j < p.len() && (p[j] == '?' || p[j] == n[i]) {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '*' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|c| *c == '*')
}

/// A comma-separated list of patterns, each possibly negated with `!`, as OpenSSH's
/// `match_pattern_list`. With `lowercase`, the patterns are lowercased first (the name is
/// the caller's to lowercase), as for host names.
pub(crate) fn list(name: &str, patterns: &str, lowercase: bool) -> ListMatch {
    let mut found = ListMatch::None;
    for sub in patterns.split(',') {
        let (negated, pat) = match sub.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sub),
        };
        let pat = if lowercase && !pat.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(pat.to_lowercase())
        } else {
            std::borrow::Cow::Borrowed(pat)
        };
        if wildcard(name, &pat) {
            if negated {
                return ListMatch::Negated;
            }
            found = ListMatch::Positive;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard("web1.example.com", "*.example.com"));
        assert!(wildcard("web1", "web?"));
        assert!(!wildcard("web12", "web?"));
        assert!(wildcard("", "*"));
        assert!(wildcard("abc", "a*b*c"));
        assert!(wildcard("aXbYbc", "a*bc"));
        assert!(!wildcard("abcd", "a*c"));
        assert!(wildcard("[10.0.0.1]:2222", "[10.0.0.?]:2222"));
        assert!(!wildcard("Web1", "web1"));
    }

    #[test]
    fn lists_and_negation() {
        assert_eq!(list("web1", "db*,web*", true), ListMatch::Positive);
        assert_eq!(list("web1", "*,!web1", true), ListMatch::Negated);
        assert_eq!(list("web1", "!web1,*", true), ListMatch::Negated);
        assert_eq!(list("web2", "*,!web1", true), ListMatch::Positive);
        assert_eq!(list("web2", "!web1", true), ListMatch::None);
        assert_eq!(list("web1", "WEB1", true), ListMatch::Positive);
        assert_eq!(list("web1", "WEB1", false), ListMatch::None);
        assert_eq!(list("héte", "HÉTE", true), ListMatch::Positive);
        assert_eq!(list("web1", "web10,web", true), ListMatch::None);
        assert_eq!(
            list("[web1]:2222", "[web1]:22,[web1]:2222", true),
            ListMatch::Positive
        );
    }
}
