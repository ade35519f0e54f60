//! ssh_config(5) files read as OpenSSH's `readconf.c` reads them: `keyword [=] args`,
//! quoted arguments, comments, `Host` and `Match` blocks and `Include` (globbed, relative to
//! `~/.ssh`, nested at most 16 deep). Reading only builds the tree of the files: which
//! block applies to a connection is decided by [`super::ssh_config_eval`], where `Match`
//! criteria are read, so that a wrong one is reported when a connection reaches it, as
//! OpenSSH reports it.
//!
//! ssh2-config (used before) has no `Match` at all: its options leaked into the block
//! before it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::SshSetupError;

/// OpenSSH's READCONF_MAX_DEPTH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a line is, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct At {
    pub(crate) file: Arc<PathBuf>,
    pub(crate) line: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.file.display(), self.line)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Host {
        patterns: Vec<String>,
    },
    Match {
        at: At,
        args: Vec<String>,
    },
    /// Any other keyword, lowercase.
    Option {
        at: At,
        keyword: String,
        args: Vec<String>,
    },
    /// The items of each file the `Include` names, in glob order.
    Include {
        files: Vec<Vec<Item>>,
    },
}

/// Reads a config file; a missing file is an empty config.
pub(crate) fn load(path: &Path, home: &Path) -> Result<Vec<Item>, SshSetupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path, home, 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(SshSetupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse(text: &str, path: &Path, home: &Path, depth: usize) -> Result<Vec<Item>, SshSetupError> {
    let file = Arc::new(path.to_path_buf());
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = At {
            file: file.clone(),
            line: i + 1,
        };
        let bad = |detail: String| SshSetupError::Parse {
            path: path.to_path_buf(),
            detail: format!("line {}: {detail}", i + 1),
        };
        let Some((keyword, args)) = split_line(line).map_err(bad)? else {
            continue;
        };
        items.push(match keyword.as_str() {
            "host" if args.is_empty() => return Err(bad("Host without a pattern".into())),
            "host" => Item::Host { patterns: args },
            "match" => Item::Match { at, args },
            "include" if args.is_empty() => return Err(bad("Include without a file".into())),
            "include" if depth >= MAX_INCLUDE_DEPTH => {
                return Err(bad(format!(
                    "Include nested more than {MAX_INCLUDE_DEPTH} deep"
                )))
            }
            "include" => Item::Include {
                files: include(&args, home, depth)?,
            },
            _ => Item::Option { at, keyword, args },
        });
    }
    Ok(items)
}

/// Each argument is a glob; a relative one is under `~/.ssh`. Files that match nothing are
/// skipped, as OpenSSH skips them.
fn include(args: &[String], home: &Path, depth: usize) -> Result<Vec<Vec<Item>>, SshSetupError> {
    let mut files = Vec::new();
    for arg in args {
        let pattern = match arg.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None if Path::new(arg).is_absolute() => PathBuf::from(arg),
            None => home.join(".ssh").join(arg),
        };
        let mut paths: Vec<PathBuf> = glob::glob(&pattern.to_string_lossy())
            .map(|g| g.filter_map(Result::ok).collect())
            .unwrap_or_default();
        paths.sort();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|source| SshSetupError::Read {
                path: p.clone(),
                source,
            })?;
            files.push(parse(&text, &p, home, depth + 1)?);
        }
    }
    Ok(files)
}

/// `keyword [=] arg...` with OpenSSH's quoting (double or single quotes, backslash
/// escapes) and a word starting with `#` ending the line. `None` for blank and comment lines.
pub(crate) fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim_start();
    let Some(first_space) = line.find(|c: char| c.is_whitespace() || c == '=') else {
        return Ok(
            (!line.is_empty() && !line.starts_with('#')).then(|| (line.to_lowercase(), Vec::new()))
        );
    };
    let keyword = &line[..first_space];
    if keyword.is_empty() || keyword.starts_with('#') {
        return Ok(None);
    }
    let mut rest = line[first_space..].trim_start();
    if let Some(after) = rest.strip_prefix('=') {
        rest = after;
    }
    Ok(Some((keyword.to_lowercase(), words(rest)?)))
}

fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => return Ok(out),
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) => word.push(chars.next().ok_or("a line ends with a backslash")?),
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_whitespace() => break,
                (c, _) => word.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".into());
        }
        out.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<(String, Vec<String>)> {
        split_line(line).expect("split")
    }

    #[test]
    fn lines_as_readconf_splits_them() {
        assert_eq!(split("  # comment"), None);
        assert_eq!(split(""), None);
        assert_eq!(
            split("HostName=10.0.0.1"),
            Some(("hostname".into(), vec!["10.0.0.1".into()]))
        );
        assert_eq!(
            split("\tUser = \"deploy user\"  # who"),
            Some(("user".into(), vec!["deploy user".into()]))
        );
        assert_eq!(
            split("Match exec 'test -e /tmp/x' host a,b"),
            Some((
                "match".into(),
                vec![
                    "exec".into(),
                    "test -e /tmp/x".into(),
                    "host".into(),
                    "a,b".into()
                ]
            ))
        );
        assert!(split_line("User \"open").is_err());
    }

    #[test]
    fn includes_are_globbed_under_dot_ssh_and_bounded() {
        let home = tempfile::tempdir().expect("tempdir");
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).expect("mkdir");
        std::fs::write(ssh.join("conf.d/b.conf"), "User b\n").expect("write");
        std::fs::write(ssh.join("conf.d/a.conf"), "User a\n").expect("write");
        std::fs::write(ssh.join("loop"), "Include loop\n").expect("write");
        let items = parse(
            "Include conf.d/*.conf none\n",
            &ssh.join("config"),
            home.path(),
            0,
        )
        .expect("parse");
        let Item::Include { files } = &items[0] else {
            panic!("{items:?}")
        };
        let users: Vec<&str> = files
            .iter()
            .map(|f| match &f[0] {
                Item::Option { args, .. } => args[0].as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(users, ["a", "b"]);
        let err = parse("Include loop\n", &ssh.join("config"), home.path(), 0).unwrap_err();
        assert!(err.to_string().contains("16 deep"), "{err}");
    }
}
