//! The known_hosts file format of sshd(8) (SSH_KNOWN_HOSTS FILE FORMAT), read as OpenSSH's
//! `hostfile.c` reads it, and its verdict on a presented key (`check_key_in_hostkeys`).
//!
//! russh's own reader splits lines on single spaces, matches names only literally, does not
//! know markers (an `@revoked` line is skipped, so a revoked key is accepted when another
//! line records it) and reports a change as soon as one same-type line differs, even when a
//! later line matches. Pure: the text of the file in, entries and verdicts out.

use std::collections::HashMap;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Certificate, PublicKey};
use sha1::Sha1;

use super::host_pattern::{self, ListMatch};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// A host key.
    Key,
    /// `@cert-authority`: a CA whose host certificates are trusted for the names.
    CertAuthority,
    /// `@revoked`: this key is refused for the names, whatever else the file says.
    Revoked,
}

/// One valid line whose names match the host looked up.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// 1-based, as an editor numbers lines.
    pub(crate) line: usize,
    pub(crate) marker: Marker,
    pub(crate) key: PublicKey,
}

/// What the file says about a presented host key or certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Recorded (or, for a certificate, signed by a CA recorded) at this line.
    Known { line: usize },
    /// The key (or the CA that signed the certificate) is marked `@revoked` at this line.
    Revoked { line: usize },
    /// Keys of the same type are recorded, none equal to it; `line` is the last of them
    /// (the one OpenSSH names as "Offending key").
    Changed { line: usize },
    /// Only keys of other types are recorded, at these lines.
    OtherType { lines: Vec<usize> },
    /// Nothing recorded for the host (for a certificate: no CA for the host).
    New,
}

/// The name OpenSSH looks up: `host`, or `[host]:port` for a port other than 22, lowercase.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// A known_hosts text read once for many lookups (a fleet's hosts, each connection looking
/// up its host three times): its lines as OpenSSH keeps them, with the plain names (no
/// pattern, not hashed) indexed, so that a lookup compares its name with the lines that are
/// patterns or hashed only, not with every line of a file that lists the whole fleet.
#[derive(Debug, Default)]
pub(crate) struct Index {
    lines: Vec<Line>,
    /// The lines (in `lines`) that name each plain name, lowercased.
    by_name: HashMap<String, Vec<usize>>,
    /// The lines whose names are patterns or hashed, matched at each lookup.
    matched: Vec<usize>,
}

#[derive(Debug)]
struct Line {
    number: usize,
    marker: Marker,
    names: Names,
    /// `algorithm data`, parsed when the line matches a lookup.
    key: String,
}

#[derive(Debug)]
enum Names {
    /// Indexed in [`Index::by_name`].
    Plain,
    Patterns(String),
    /// `|1|salt|hash`, decoded.
    Hashed {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
}

impl Index {
    pub(crate) fn new(text: &str) -> Index {
        let mut index = Index::default();
        for (i, line) in text.lines().enumerate() {
            let Some((line, plain)) = Line::parse(line, i + 1) else {
                continue;
            };
            let at = index.lines.len();
            match plain {
                Some(names) => {
                    for name in names.split(',') {
                        index
                            .by_name
                            .entry(name.to_lowercase())
                            .or_default()
                            .push(at);
                    }
                }
                None => index.matched.push(at),
            }
            index.lines.push(line);
        }
        index
    }

    /// The valid entries whose names match `name` (from [`lookup_name`]), in the file's
    /// order. Lines that OpenSSH would skip (unknown marker, bad hash, unparsable key) are
    /// skipped.
    pub(crate) fn entries(&self, name: &str) -> Vec<Entry> {
        let mut at: Vec<usize> = self.by_name.get(name).cloned().unwrap_or_default();
        let matching = |&&i: &&usize| self.lines[i].names.matches(name);
        at.extend(self.matched.iter().filter(matching));
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .filter_map(|i| self.lines[i].entry())
            .collect()
    }
}

impl Line {
    /// The line, and its names when they are a plain list; `None` for a line OpenSSH
    /// skips whatever the host (a comment, an unknown marker, a bad hash, no key).
    fn parse(line: &str, number: usize) -> Option<(Line, Option<&str>)> {
        let mut fields = line.split([' ', '\t', '\r']).filter(|f| !f.is_empty());
        let mut first = fields.next()?;
        if first.starts_with('#') {
            return None;
        }
        let marker = match first {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            m if m.starts_with('@') => return None,
            _ => Marker::Key,
        };
        if marker != Marker::Key {
            first = fields.next()?;
        }
        let (names, plain) = match first.strip_prefix("|1|") {
            Some(hashed) => (Names::hashed(hashed)?, None),
            None if first.contains(['*', '?', '!']) => (Names::Patterns(first.into()), None),
            None => (Names::Plain, Some(first)),
        };
        let (algorithm, data) = (fields.next()?, fields.next()?);
        let line = Line {
            number,
            marker,
            names,
            key: format!("{algorithm} {data}"),
        };
        Some((line, plain))
    }

    fn entry(&self) -> Option<Entry> {
        Some(Entry {
            line: self.number,
            marker: self.marker,
            key: PublicKey::from_openssh(&self.key).ok()?,
        })
    }
}

impl Names {
    /// A hashed field is compared whole; a pattern list must match positively (a negated
    /// match excludes the line). Plain names are looked up, not matched.
    fn matches(&self, name: &str) -> bool {
        match self {
            Names::Plain => false,
            Names::Patterns(list) => host_pattern::list(name, list, true) == ListMatch::Positive,
            Names::Hashed { salt, hash } => hashed_match(salt, hash, name),
        }
    }

    /// `salt|hash`, both base64 (`ssh-keygen -H`); `None` when they are not.
    fn hashed(salt_and_hash: &str) -> Option<Names> {
        let (salt, hash) = salt_and_hash.split_once('|')?;
        Some(Names::Hashed {
            salt: BASE64.decode(salt.as_bytes()).ok()?,
            hash: BASE64.decode(hash.as_bytes()).ok()?,
        })
    }
}

/// HMAC-SHA1 of the name keyed with the salt is the hash.
fn hashed_match(salt: &[u8], hash: &[u8], name: &str) -> bool {
    match Hmac::<Sha1>::new_from_slice(salt) {
        Ok(mac) => mac.chain_update(name.as_bytes()).verify_slice(hash).is_ok(),
        Err(_) => false,
    }
}

/// OpenSSH's verdict on a plain host key: revoked wins over everything; otherwise any line
/// recording the key makes it known (several keys per host: rotation).
pub(crate) fn key_status(entries: &[Entry], key: &PublicKey) -> Status {
    if let Some(line) = revoked_line(entries, [key.key_data()]) {
        return Status::Revoked { line };
    }
    let recorded = || entries.iter().filter(|e| e.marker == Marker::Key);
    if let Some(e) = recorded().find(|e| e.key.key_data() == key.key_data()) {
        return Status::Known { line: e.line };
    }
    if let Some(e) = recorded().rfind(|e| e.key.algorithm() == key.algorithm()) {
        return Status::Changed { line: e.line };
    }
    let lines: Vec<usize> = recorded().map(|e| e.line).collect();
    if lines.is_empty() {
        Status::New
    } else {
        Status::OtherType { lines }
    }
}

/// OpenSSH's verdict on a host certificate as known_hosts goes: revoked when its key or its
/// CA is `@revoked`, known when its CA is an `@cert-authority` for the host. The
/// certificate itself (signature, principals, validity) is checked elsewhere.
pub(crate) fn certificate_status(entries: &[Entry], cert: &Certificate) -> Status {
    if let Some(line) = revoked_line(entries, [cert.public_key(), cert.signature_key()]) {
        return Status::Revoked { line };
    }
    entries
        .iter()
        .find(|e| e.marker == Marker::CertAuthority && e.key.key_data() == cert.signature_key())
        .map_or(Status::New, |e| Status::Known { line: e.line })
}

fn revoked_line<'a>(
    entries: &[Entry],
    keys: impl IntoIterator<Item = &'a russh::keys::ssh_key::public::KeyData> + Clone,
) -> Option<usize> {
    entries
        .iter()
        .filter(|e| e.marker == Marker::Revoked)
        .find(|e| keys.clone().into_iter().any(|k| k == e.key.key_data()))
        .map(|e| e.line)
}

/// Keys for the unit tests of known_hosts reading and policy.
#[cfg(test)]
pub(crate) mod test_keys {
    pub(crate) const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    pub(crate) const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILIG2T/B0l0gaqj3puu510tu9N1OkQ4znY3LYuEm5zCF";
}

#[cfg(test)]
mod tests {
    use super::test_keys::{KEY, OTHER};
    use super::*;

    const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
    /// `ssh-keygen -H` of `[web1.example.com]:2222` (salt and hash as OpenSSH 9.2 wrote them).
    const HASHED: &str = "|1|azVHiZcDbrcO5ftTaEGc9D4w4fs=|NcDvAVbHMQ3VDqMQb7JzwaTaIf8=";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).expect("test key")
    }

    fn status(text: &str, host: &str, port: u16, k: &str) -> Status {
        let entries = Index::new(text).entries(&lookup_name(host, port));
        key_status(&entries, &key(k))
    }

    #[test]
    fn any_whitespace_and_comments() {
        let text = format!(
            "  # c\n\n\t web1\t\t{}  comment here\n",
            KEY.replace(' ', " \t ")
        );
        assert_eq!(status(&text, "web1", 22, KEY), Status::Known { line: 3 });
        assert_eq!(status(&text, "WEB1", 22, KEY), Status::Known { line: 3 });
    }

    #[test]
    fn patterns_ports_and_lists() {
        let text = format!(
            "*.example.com,!bad.example.com {KEY}\n[db?]:2222 {KEY}\nweb9,10.0.0.9 {KEY}\n"
        );
        assert_eq!(
            status(&text, "a.example.com", 22, KEY),
            Status::Known { line: 1 }
        );
        assert_eq!(status(&text, "bad.example.com", 22, KEY), Status::New);
        assert_eq!(status(&text, "db1", 2222, KEY), Status::Known { line: 2 });
        assert_eq!(status(&text, "db1", 22, KEY), Status::New);
        assert_eq!(
            status(&text, "10.0.0.9", 22, KEY),
            Status::Known { line: 3 }
        );
    }

    #[test]
    fn rotation_any_line_matches() {
        let text = format!("h {OTHER}\nh {KEY}\n");
        assert_eq!(status(&text, "h", 22, KEY), Status::Known { line: 2 });
        let text = format!("h {OTHER}\nh {ECDSA}\n");
        assert_eq!(status(&text, "h", 22, KEY), Status::Changed { line: 1 });
        let text = format!("h {ECDSA}\n");
        assert_eq!(
            status(&text, "h", 22, KEY),
            Status::OtherType { lines: vec![1] }
        );
    }

    #[test]
    fn revoked_wins_in_every_form() {
        for names in ["h", "*", "x,?", HASHED] {
            let (host, port) = if names == HASHED {
                ("web1.example.com", 2222)
            } else {
                ("h", 22)
            };
            let text = format!(
                "{host_line} {KEY}\n@revoked\t{names} {KEY}\n",
                host_line = lookup_name(host, port)
            );
            assert_eq!(
                status(&text, host, port, KEY),
                Status::Revoked { line: 2 },
                "{names}"
            );
        }
        // A revocation for other names does not apply.
        let text = format!("h {KEY}\n@revoked other {KEY}\n");
        assert_eq!(status(&text, "h", 22, KEY), Status::Known { line: 1 });
        // An unknown marker makes the line invalid, as in OpenSSH.
        let text = format!("@revokd h {KEY}\n");
        assert_eq!(status(&text, "h", 22, KEY), Status::New);
    }

    #[test]
    fn a_host_named_by_plain_pattern_and_hashed_lines_gets_them_in_the_files_order() {
        let text = format!(
            "[web1.example.com]:2222,other {OTHER}\n[web?.example.com]:2222 {KEY}\n[WEB1.example.com]:2222 {ECDSA}\n{HASHED} {KEY}\n[web2.example.com]:2222 {KEY}\n@revoked [web1.example.com]:2222,x {OTHER}\n"
        );
        let lines = |text: &str, name: &str| {
            let entries = Index::new(text).entries(name);
            entries.iter().map(|e| e.line).collect::<Vec<_>>()
        };
        let at_2222 = |host: &str| lines(&text, &lookup_name(host, 2222));
        assert_eq!(at_2222("web1.example.com"), [1, 2, 3, 4, 6]);
        assert_eq!(at_2222("web2.example.com"), [2, 5]);
        assert_eq!(at_2222("web10.example.com"), Vec::<usize>::new());
        assert_eq!(lines(&text, "other"), [1]);
        // Names twice in a line, empty names, a hash of another kind (a plain name).
        let text = format!("h,h,,H {KEY}\n|2|x,h {OTHER}\n");
        assert_eq!(lines(&text, "h"), [1, 2]);
        assert_eq!(lines(&text, ""), [1]);
        assert_eq!(lines(&text, "|2|x"), [2]);
    }

    #[test]
    fn hashed_names() {
        let text = format!("{HASHED} {KEY}\n");
        assert_eq!(
            status(&text, "web1.example.com", 2222, KEY),
            Status::Known { line: 1 }
        );
        assert_eq!(status(&text, "web1.example.com", 22, KEY), Status::New);
        let bad = format!("|1|bad|bad {KEY}\n|1|{}|bad {KEY}\n", &HASHED[3..31]);
        assert_eq!(status(&bad, "h", 22, KEY), Status::New);
    }
}
