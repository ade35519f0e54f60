//! Ansible host ranges (`web[01:03].example.com`), expanded with a bound so that a typo
//! cannot fill memory.

use super::MAX_HOSTS;

pub(super) const TOO_MANY: &str = "more hosts than an inventory may hold";

/// Expands Ansible host ranges: `web[01:03].example.com` is web01, web02, web03; `[a:c]`
/// letters; an optional `:step`. Names without brackets are returned as they are. Refuses
/// to make more than `limit` names, counting a range before expanding it.
pub(super) fn expand_host_range(pattern: &str, limit: usize) -> Result<Vec<String>, String> {
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
    // As Ansible's `expand_hostname_range`: an empty start is 0, and a zero-padded start
    // sets the width, which the end must share.
    let start = if start.is_empty() { "0" } else { start };
    if start.len() > 1 && start.starts_with('0') && start.len() != end.len() {
        return Err(format!(
            "`{pattern}`: a zero-padded range needs a start and an end of the same length"
        ));
    }
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
        // Ansible's letters are a-z then A-Z: `[x:B]` is x, y, z, A, B.
        let (Some(a), Some(b)) = (letter_index(a), letter_index(b)) else {
            return Err(bad());
        };
        LETTERS
            .get(a..=b)
            .unwrap_or_default()
            .iter()
            .step_by(step)
            .map(|c| char::from(*c).to_string())
            .collect()
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

const LETTERS: &[u8; 52] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn letter_index(c: char) -> Option<usize> {
    LETTERS.iter().position(|l| char::from(*l) == c)
}

fn single_letter(s: &str) -> Option<char> {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
        _ => None,
    }
}
