//! Secrets: values that are used on the hosts but never shown or written down.
//!
//! A variable is secret when the playbook lists it in `secrets:` or when its name says so
//! (`db_password`, `api_token`...). Its value, as each host renders it, goes into one
//! [`Redactor`], which every way out of fleetup passes through: the events (so the
//! screen, `--output json` and the journal), the per-host logs, the plan preview and
//! `run.json`. Redacting what leaves, rather than tracking where a value flows, also
//! catches a secret echoed back by a failing command or registered from its output.

use std::borrow::Cow;
use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};

/// What a secret becomes wherever fleetup shows or keeps it.
pub const REDACTED: &str = "********";

/// Whether a variable's name says it holds a secret, for variables the playbook does not
/// list in `secrets:`. A name for where a secret is kept (`ansible_ssh_private_key_file`,
/// `vault_password_file`) holds a path, which the operator needs to see in errors.
pub fn looks_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if name.ends_with("_file") {
        return false;
    }
    [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "private_key",
        "api_key",
    ]
    .iter()
    .any(|s| name.contains(s))
}

/// Replaces secret values by [`REDACTED`] in text and in streamed output.
#[derive(Default)]
pub struct Redactor {
    /// `None` when there is no secret: redaction then costs nothing.
    matcher: Option<AhoCorasick>,
    /// The longest pattern, in bytes: a stream holds back one byte less.
    longest: usize,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the patterns themselves.
        let count = self.matcher.as_ref().map_or(0, |m| m.patterns_len());
        write!(f, "Redactor({count} patterns)")
    }
}

impl Redactor {
    /// A redactor for `values`. Each is also matched as the `quote` filter writes it into
    /// a command, and a multi-line value (a key file) line by line, since output is
    /// often cut into lines before it is shown.
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut patterns: Vec<String> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            let quoted = shell_words::quote(&value).into_owned();
            if quoted != value {
                patterns.push(quoted);
            }
            if value.contains('\n') {
                patterns.extend(
                    value
                        .lines()
                        .map(|l| l.trim_end_matches('\r'))
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_string),
                );
            }
            patterns.push(value);
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Redactor::default();
        }
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        // Leftmost-longest: the quoted form wins over the bare value inside it.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .ok();
        Redactor { matcher, longest }
    }

    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `text` with every secret replaced.
    pub fn text<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let Some(matcher) = &self.matcher else {
            return Cow::Borrowed(text);
        };
        let mut found = matcher.find_iter(text).peekable();
        if found.peek().is_none() {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for m in found {
            // Patterns are whole UTF-8 strings, so matches start and end on characters.
            out.push_str(&text[at..m.start()]);
            out.push_str(REDACTED);
            at = m.end();
        }
        out.push_str(&text[at..]);
        Cow::Owned(out)
    }

    /// Redacts a string where it stands.
    pub fn string(&self, text: &mut String) {
        if let Cow::Owned(redacted) = self.text(text) {
            *text = redacted;
        }
    }

    pub fn option(&self, text: &mut Option<String>) {
        if let Some(text) = text {
            self.string(text);
        }
    }
}

/// Output redacted as it streams, chunk by chunk: the last bytes of a chunk, which could
/// be the start of a secret that the next chunk ends, wait for that chunk.
#[derive(Debug, Default)]
pub struct RedactingStream {
    held: Vec<u8>,
}

impl RedactingStream {
    /// Passes `data` to `out`, redacted, except for what must wait for more.
    pub fn push(&mut self, redactor: &Redactor, data: &[u8], out: &mut dyn FnMut(&[u8])) {
        let Some(matcher) = &redactor.matcher else {
            out(data);
            return;
        };
        self.held.extend_from_slice(data);
        let keep = redactor.longest - 1;
        if self.held.len() <= keep {
            return;
        }
        // A match that starts before `boundary` has all its bytes here, even the longest.
        let boundary = self.held.len() - keep;
        let mut at = 0;
        for m in matcher.find_iter(&self.held) {
            if m.start() >= boundary {
                break;
            }
            out(&self.held[at..m.start()]);
            out(REDACTED.as_bytes());
            at = m.end();
        }
        let cut = boundary.max(at);
        out(&self.held[at..cut]);
        self.held.drain(..cut);
    }

    /// Passes on what is held, redacted: the stream has ended.
    pub fn flush(&mut self, redactor: &Redactor, out: &mut dyn FnMut(&[u8])) {
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            return;
        }
        let Some(matcher) = &redactor.matcher else {
            out(&held);
            return;
        };
        let mut at = 0;
        for m in matcher.find_iter(&held) {
            out(&held[at..m.start()]);
            out(REDACTED.as_bytes());
            at = m.end();
        }
        out(&held[at..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streamed(redactor: &Redactor, chunks: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let mut stream = RedactingStream::default();
        for chunk in chunks {
            stream.push(redactor, chunk, &mut |b| out.extend_from_slice(b));
        }
        stream.flush(redactor, &mut |b| out.extend_from_slice(b));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn names_that_say_secret() {
        assert!(looks_secret("db_password"));
        assert!(looks_secret("API_TOKEN"));
        assert!(!looks_secret("sl_app_path"));
        assert!(looks_secret("ansible_become_password"));
        assert!(!looks_secret("ansible_ssh_private_key_file"));
        assert!(!looks_secret("ansible_private_key_file"));
    }

    #[test]
    fn text_is_redacted_with_quoted_and_line_forms() {
        let r = Redactor::new(["pa ss".to_string(), "line one\nline two".into()]);
        assert_eq!(r.text("echo 'pa ss' pa ss"), "echo ******** ********");
        assert_eq!(r.text("got line two"), "got ********");
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
        let none = Redactor::new([String::new()]);
        assert!(none.is_empty());
        assert_eq!(none.text("pa ss"), "pa ss");
    }

    #[test]
    fn a_secret_split_across_chunks_is_caught() {
        let r = Redactor::new(["hunter2".to_string()]);
        let text = "one hunter2 two hunter2";
        // Every way of cutting the text in two or three pieces.
        for i in 0..text.len() {
            for j in i..text.len() {
                let chunks = [
                    &text.as_bytes()[..i],
                    &text.as_bytes()[i..j],
                    &text.as_bytes()[j..],
                ];
                assert_eq!(
                    streamed(&r, &chunks),
                    "one ******** two ********",
                    "{i} {j}"
                );
            }
        }
        // One byte at a time, and nothing held back without secrets.
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(streamed(&r, &bytes), "one ******** two ********");
        assert_eq!(streamed(&Redactor::default(), &bytes), text);
    }

    #[test]
    fn overlapping_secrets_are_redacted_longest_first() {
        let r = Redactor::new(["abc".to_string(), "abcdef".into()]);
        assert_eq!(
            streamed(&r, &[b"xxabc", b"defyy abc"]),
            "xx********yy ********"
        );
    }
}
