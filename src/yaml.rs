//! YAML documents that remember where each value came from.
//!
//! serde_yaml turns text into values but forgets positions, and an operator needs
//! `file:line:column` for every mistake, including ones found long after parsing (an
//! undefined variable in a template, a serial of 0). So each document is read twice: once
//! by serde_yaml for the values, once by yaml-rust2's event parser, which only records the
//! position of every key and value under its path (`steps[2].shell`). The event parser
//! never expands aliases, so the position index stays small even for an alias bomb.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::{did_you_mean, Diagnostic, Pos};

/// A parsed YAML file with the position of every key and value.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    pub value: serde_yaml::Value,
    positions: HashMap<String, Place>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Place {
    key: Option<Pos>,
    value: Option<Pos>,
    /// The value is an unquoted scalar (`yes`, not `"yes"`): YAML 1.1 readers, as
    /// Ansible's, type some of these otherwise than YAML 1.2 does.
    plain: bool,
}

/// The largest input file fleetup reads. An inventory of ten thousand hosts is about a
/// megabyte; anything near this is a mistake (a log or a dump given to `-i`), and reading
/// it whole would cost memory in proportion.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;

/// Reads an input file (inventory, playbook, vars file), refusing one over
/// [`MAX_INPUT_BYTES`] before reading it. `what` names it in the message ("playbook").
pub fn read_input(path: &Path, what: &str) -> Result<String, Diagnostic> {
    use std::io::Read;
    let cannot = |e: std::io::Error| Diagnostic::new(path, "", format!("cannot read {what}: {e}"));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let too_big = |size: u64| {
        Diagnostic::new(
            path,
            "",
            format!(
                "{what} is {size} bytes; fleetup reads files of at most {} MiB",
                MAX_INPUT_BYTES >> 20
            ),
        )
        .hint("is this the right file?")
    };
    let size = file.metadata().map_err(cannot)?.len();
    if size > MAX_INPUT_BYTES {
        return Err(too_big(size));
    }
    // The size can change under us (a pipe, a growing file): read at most one byte more.
    let mut text = String::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_big(text.len() as u64));
    }
    Ok(text)
}

impl Document {
    /// A document with no text, for what is not read from a file (an ad-hoc command).
    pub fn named(file: &str) -> Document {
        Document {
            file: PathBuf::from(file),
            value: serde_yaml::Value::Null,
            positions: HashMap::new(),
        }
    }

    /// Reads and parses an input file; `what` names it in messages ("inventory").
    pub fn read(path: &Path, what: &str) -> Result<Document, Diagnostic> {
        Document::parse(path, &read_input(path, what)?)
    }

    /// Parses `text`, read from `file` (used only in messages).
    pub fn parse(file: &Path, text: &str) -> Result<Document, Diagnostic> {
        if let Some(pos) = too_deep(text) {
            return Err(Diagnostic::new(
                file,
                "",
                format!("not valid YAML: nested more than {MAX_FLOW_DEPTH} levels deep"),
            )
            .at(Some(pos)));
        }
        let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                column: l.column(),
            });
            Diagnostic::new(file, "", format!("not valid YAML: {}", strip_location(&e))).at(pos)
        })?;
        // Ansible inventories use `<<: *defaults`; serde_yaml leaves merge keys as plain keys.
        value
            .apply_merge()
            .map_err(|e| Diagnostic::new(file, "", format!("bad YAML merge key (<<): {e}")))?;
        let mut index = Indexer::default();
        // serde_yaml accepted the text, so a scan error here can only be a disagreement
        // between the two parsers: positions are then missing, which costs precision, not
        // correctness.
        let _ = Parser::new_from_str(text).load(&mut index, false);
        Ok(Document {
            file: file.to_path_buf(),
            value,
            positions: index.positions,
        })
    }

    /// Where the value at `path` starts.
    pub fn pos(&self, path: &str) -> Option<Pos> {
        let place = self.positions.get(path)?;
        place.value.or(place.key)
    }

    /// Where the key of the entry at `path` stands (falls back to its value).
    pub fn key_pos(&self, path: &str) -> Option<Pos> {
        let place = self.positions.get(path)?;
        place.key.or(place.value)
    }

    /// Whether the value at `path` was written as an unquoted scalar.
    pub fn is_plain(&self, path: &str) -> bool {
        self.positions.get(path).is_some_and(|p| p.plain)
    }

    /// A diagnostic about the value at `path`, placed in this file.
    pub fn error(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, path, message).at(self.pos(path))
    }

    /// Deserializes the value at `path` (`""` for the whole document) into `T`. Unknown keys,
    /// wrong types and missing fields come back with their place and, for a misspelt key,
    /// the closest known one.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Diagnostic> {
        let value = if path.is_empty() {
            &self.value
        } else {
            lookup(&self.value, path).unwrap_or(&serde_yaml::Value::Null)
        };
        self.deserialize(path, value)
    }

    /// Deserializes `value`, which stands at `path`, reporting problems as [`get`] does. For
    /// values whose path cannot be looked up again: a key with a dot (`web.example.com`)
    /// reads as two steps of a path.
    ///
    /// [`get`]: Document::get
    pub fn deserialize<T: DeserializeOwned>(
        &self,
        path: &str,
        value: &serde_yaml::Value,
    ) -> Result<T, Diagnostic> {
        serde_path_to_error::deserialize(value.clone()).map_err(|e| {
            let inner = join(path, &e.path().to_string());
            let message = e.inner().to_string();
            if let Some((field, expected)) = parse_unknown_field(&message) {
                // serde_path_to_error's path already ends with the unknown key.
                let field_path = if inner == field || inner.ends_with(&format!(".{field}")) {
                    inner.clone()
                } else {
                    join(&inner, &field)
                };
                let mut d = Diagnostic::new(&self.file, field_path.as_str(), "unknown key")
                    .at(self.key_pos(&field_path).or_else(|| self.pos(&inner)));
                let known = expected.iter().map(String::as_str);
                d.hint = did_you_mean(&field, known)
                    .or_else(|| Some(format!("known keys: {}", expected.join(", "))));
                d
            } else {
                Diagnostic::new(&self.file, inner.as_str(), message).at(self.pos(&inner))
            }
        })
    }
}

/// serde_yaml refuses nesting deeper than 128 levels, but only after libyaml has scanned
/// the whole text, and libyaml's scan of nested flow collections (`[[[[...`) is quadratic
/// in their depth: 64 KiB of them took seconds. A flow collection opened this deep is
/// refused before that scan.
const MAX_FLOW_DEPTH: usize = 128;

/// Where the text opens a flow collection more than [`MAX_FLOW_DEPTH`] levels deep, by a
/// linear scan that skips quoted text and comments. A bracket inside a word (`web[01:20]`)
/// opens nothing.
fn too_deep(text: &str) -> Option<Pos> {
    let (mut depth, mut quote) = (0usize, None);
    for (line_no, line) in text.lines().enumerate() {
        // Quotes and comments start a token: `don't` and `a#b` are plain text.
        let (mut prev, mut opened) = (' ', false);
        for (col, c) in line.chars().enumerate() {
            let token_start = prev.is_whitespace() || matches!(prev, ',' | ':') || opened;
            opened = false;
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') if token_start => quote = Some(c),
                (None, '#') if prev.is_whitespace() => break,
                (None, '[' | '{') if token_start => {
                    depth += 1;
                    opened = true;
                    if depth > MAX_FLOW_DEPTH {
                        return Some(Pos {
                            line: line_no + 1,
                            column: col + 1,
                        });
                    }
                }
                (None, ']' | '}') => depth = depth.saturating_sub(1),
                _ => {}
            }
            prev = c;
        }
    }
    None
}

/// Joins a parent path and a child path as serde_path_to_error prints them.
pub fn join(parent: &str, child: &str) -> String {
    match (parent, child) {
        (p, "." | "") => p.to_string(),
        ("", c) => c.to_string(),
        (p, c) if c.starts_with('[') => format!("{p}{c}"),
        (p, c) => format!("{p}.{c}"),
    }
}

/// The value at a path of the form `a.b[2].c`, for paths this module produced.
fn lookup<'v>(value: &'v serde_yaml::Value, path: &str) -> Option<&'v serde_yaml::Value> {
    let mut current = value;
    for part in path.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            current = current.get(index.parse::<usize>().ok()?)?;
        }
    }
    Some(current)
}

/// serde's derive reports unknown keys as "unknown field `x`, expected one of `a`, `b`"
/// (or "expected `a`", or "there are no fields"); this message has been stable since
/// serde 1.0 and is the only place the list of known keys is available.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((field.to_string(), expected))
}

/// serde_yaml appends " at line L column C" to its messages; the diagnostic has its own.
fn strip_location(e: &serde_yaml::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Records positions from parser events, tracking the path of the node being read.
#[derive(Default)]
struct Indexer {
    stack: Vec<Frame>,
    positions: HashMap<String, Place>,
    done: bool,
}

enum Frame {
    /// `key` is the path of the entry whose value comes next, or None when a key comes next.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl Indexer {
    /// The path a new node gets, or None when the node is a mapping key.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { key, .. }) => key.take(),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }

    fn record_value(&mut self, path: &str, mark: Marker) {
        self.positions.entry(path.to_string()).or_default().value = Some(to_pos(mark));
    }

    fn record_key(&mut self, key: &str, mark: Marker) {
        if let Some(Frame::Map { path, key: next }) = self.stack.last_mut() {
            let full = join(path, key);
            self.positions.entry(full.clone()).or_default().key = Some(to_pos(mark));
            *next = Some(full);
        }
    }

    /// A non-scalar used as a key: give its entry a path that matches nothing.
    fn complex_key(&mut self) {
        if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
            *key = Some("\u{0}complex-key".to_string());
        }
    }
}

fn to_pos(mark: Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        match ev {
            Event::Scalar(text, style, ..) => match self.next_value_path() {
                Some(path) => {
                    self.record_value(&path, mark);
                    if style == TScalarStyle::Plain {
                        self.positions.entry(path).or_default().plain = true;
                    }
                }
                None => self.record_key(&text, mark),
            },
            Event::Alias(_) => match self.next_value_path() {
                Some(path) => self.record_value(&path, mark),
                None => self.complex_key(),
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(ev, Event::MappingStart(..));
                let path = match self.next_value_path() {
                    Some(path) => {
                        self.record_value(&path, mark);
                        path
                    }
                    None => {
                        self.complex_key();
                        "\u{0}complex-key".to_string()
                    }
                };
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::DocumentEnd => self.done = true,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const TEXT: &str = "\
name: demo
steps:
  - name: first
    shell: echo 1
  - name: second
    shel: echo 2
nested:
  list: [a, {b: c}]
";

    fn doc() -> Document {
        Document::parse(Path::new("t.yml"), TEXT).unwrap()
    }

    #[test]
    fn positions_of_keys_and_values() {
        let d = doc();
        assert_eq!(d.pos("name"), Some(Pos { line: 1, column: 7 }));
        assert_eq!(d.key_pos("steps[1].shel"), Some(Pos { line: 6, column: 5 }));
        assert_eq!(
            d.pos("steps[1].shel"),
            Some(Pos {
                line: 6,
                column: 11
            })
        );
        assert_eq!(d.pos("nested.list[1].b").map(|p| p.line), Some(8));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Step {
        name: String,
        shell: String,
    }

    #[test]
    fn unknown_key_is_placed_and_suggested() {
        let err = doc().get::<Vec<Step>>("steps").unwrap_err();
        assert_eq!(err.field, "steps[1].shel");
        assert_eq!((err.line, err.column), (6, 5));
        assert_eq!(err.message, "unknown key");
        assert_eq!(err.hint.as_deref(), Some("did you mean `shell`?"));
    }

    #[test]
    fn wrong_type_is_placed() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Named {
            name: u32,
        }
        let d = Document::parse(Path::new("t.yml"), "name: ten\n").unwrap();
        let err = d.get::<Named>("").unwrap_err();
        assert_eq!(err.field, "name");
        assert_eq!(err.line, 1);
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn syntax_error_has_a_line() {
        let err = Document::parse(Path::new("t.yml"), "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.line > 0);
        assert!(err.message.starts_with("not valid YAML"), "{}", err.message);
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.yml");
        // Sparse: 100 MB long without writing 100 MB.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(100 << 20).unwrap();
        let err = Document::read(&path, "inventory file").unwrap_err();
        assert!(err.message.contains("at most 16 MiB"), "{}", err.message);
        assert!(err.to_string().contains("huge.yml"), "{err}");
    }

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        // "Billion laughs": 9 levels of 9 aliases would expand to 9^9 strings.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let started = std::time::Instant::now();
        let result = Document::parse(Path::new("bomb.yml"), &text);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let err = result.unwrap_err();
        assert!(err.message.contains("not valid YAML"), "{}", err.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for text in [
            "[".repeat(30_000),
            "a:\n".to_string() + &"- ".repeat(30_000) + "x",
        ] {
            let err = Document::parse(Path::new("deep.yml"), &text).unwrap_err();
            assert!(err.message.contains("not valid YAML"), "{}", err.message);
        }
    }
}
