//! Python literals, as Ansible's INI plugin types a value: it hands the text to
//! `ast.literal_eval` and keeps the text as a string when that fails. So `80` is a number,
//! `True` a boolean, `[1, 2]` a list, `'80'` a string, and `yes`, `true` or `{a:1}` stay
//! text. The parts of Python's grammar `literal_eval` accepts are read here: numbers,
//! strings (with prefixes, escapes and implicit concatenation), `True`/`False`/`None`,
//! lists, tuples, sets and dicts, unary signs. Complex numbers, big integers past 64 bits
//! and `set()` are left as text, which only changes how a value no inventory uses is typed.

use serde_json::{Map, Number, Value};

/// Python's parser refuses deeper nesting ("too many nested parentheses").
const MAX_DEPTH: usize = 200;

/// The value of `text` as `ast.literal_eval` gives it, or `None` when it is no literal.
pub(super) fn literal(text: &str) -> Option<Value> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 0,
        depth: 0,
    };
    let v = p.expr()?;
    p.skip_space();
    (p.i == p.s.len()).then_some(v)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Spaces, line breaks (inside brackets Python allows them) and `#` comments.
    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_space();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        let v = match self.peek()? {
            b'-' | b'+' => self.signed(),
            b'[' => self.sequence(b']').map(Value::Array),
            b'(' => self.tuple(),
            b'{' => self.braces(),
            b'0'..=b'9' | b'.' => self.number(),
            _ => self.word_or_string(),
        };
        self.depth -= 1;
        v
    }

    fn signed(&mut self) -> Option<Value> {
        let negative = self.s[self.i] == b'-';
        self.i += 1;
        match self.expr()? {
            Value::Number(n) if negative => negate(&n),
            Value::Number(n) => Some(Value::Number(n)),
            _ => None,
        }
    }

    /// Items up to `close`, separated by commas, with an optional trailing comma.
    fn sequence(&mut self, close: u8) -> Option<Vec<Value>> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                return Some(items);
            }
            items.push(self.expr()?);
            if !self.eat(b',') {
                return self.eat(close).then_some(items);
            }
        }
    }

    /// `(x)` is x; `(x,)`, `()` and `(x, y)` are tuples, which Ansible keeps as lists.
    fn tuple(&mut self) -> Option<Value> {
        let start = self.i;
        self.i += 1;
        if self.eat(b')') {
            return Some(Value::Array(Vec::new()));
        }
        let first = self.expr()?;
        if self.eat(b')') {
            return Some(first);
        }
        self.i = start;
        self.sequence(b')').map(Value::Array)
    }

    /// A dict, or a set (kept as a list, in the order written).
    fn braces(&mut self) -> Option<Value> {
        let start = self.i;
        self.i += 1;
        if self.eat(b'}') {
            return Some(Value::Object(Map::new()));
        }
        self.expr()?;
        let is_dict = self.eat(b':');
        self.i = start;
        if !is_dict {
            return self.sequence(b'}').map(Value::Array);
        }
        self.i += 1;
        let mut map = Map::new();
        loop {
            if self.eat(b'}') {
                return Some(Value::Object(map));
            }
            let key = key_text(&self.expr()?)?;
            if !self.eat(b':') {
                return None;
            }
            map.insert(key, self.expr()?);
            if !self.eat(b',') {
                return self.eat(b'}').then_some(Value::Object(map));
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
            || (self.i > start
                && matches!(self.peek(), Some(b'+' | b'-'))
                && matches!(self.s[self.i - 1], b'e' | b'E')
                && !self.text[start..].starts_with("0x"))
        {
            self.i += 1;
        }
        parse_number(&self.text[start..self.i])
    }

    fn word_or_string(&mut self) -> Option<Value> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        let word = &self.text[start..self.i];
        if !matches!(self.peek(), Some(b'\'' | b'"')) {
            return match word {
                "True" => Some(Value::Bool(true)),
                "False" => Some(Value::Bool(false)),
                "None" => Some(Value::Null),
                _ => None,
            };
        }
        self.i = start;
        let mut text = String::new();
        // Adjacent literals join: 'a' "b" is 'ab'.
        loop {
            self.skip_space();
            let at = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
                self.i += 1;
            }
            let prefix = self.text[at..self.i].to_ascii_lowercase();
            if !matches!(self.peek(), Some(b'\'' | b'"')) {
                self.i = at;
                return (at > start).then_some(Value::String(text));
            }
            if !matches!(prefix.as_str(), "" | "r" | "u" | "b" | "br" | "rb") {
                return None;
            }
            text.push_str(&self.string_body(prefix.contains('r'))?);
        }
    }

    /// One quoted string (the quote at `self.i`), its escapes resolved unless `raw`.
    fn string_body(&mut self, raw: bool) -> Option<String> {
        let q = self.s[self.i];
        let triple = self.s[self.i..].starts_with(&[q, q, q]);
        let width = if triple { 3 } else { 1 };
        self.i += width;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.i..];
            let c = rest.chars().next()?;
            if c as u32 == u32::from(q) && (!triple || rest.as_bytes().starts_with(&[q, q, q])) {
                self.i += width;
                return Some(out);
            }
            if c == '\n' && !triple {
                return None;
            }
            self.i += c.len_utf8();
            if c != '\\' {
                out.push(c);
                continue;
            }
            let e = self.text[self.i..].chars().next()?;
            self.i += e.len_utf8();
            if raw {
                out.push('\\');
                out.push(e);
            } else {
                self.escape(e, &mut out)?;
            }
        }
    }

    fn escape(&mut self, e: char, out: &mut String) -> Option<()> {
        let simple = match e {
            '\n' => return Some(()),
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'v' => '\x0b',
            '\\' | '\'' | '"' => e,
            '0'..='7' => {
                let mut n = e.to_digit(8)?;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ b'0'..=b'7') => {
                            n = n * 8 + u32::from(d - b'0');
                            self.i += 1;
                        }
                        _ => break,
                    }
                }
                char::from_u32(n)?
            }
            'x' | 'u' | 'U' => {
                let len = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex = self.text.get(self.i..self.i + len)?;
                self.i += len;
                char::from_u32(u32::from_str_radix(hex, 16).ok()?)?
            }
            // `\N{name}` needs Unicode's names: left as text.
            'N' => return None,
            other => {
                out.push('\\');
                other
            }
        };
        out.push(simple);
        Some(())
    }
}

fn negate(n: &Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return i.checked_neg().map(Value::from);
    }
    Number::from_f64(-n.as_f64()?).map(Value::Number)
}

/// A dict key as JSON writes it (Ansible keeps `{1: x}`'s key a number; its JSON, a string).
fn key_text(key: &Value) -> Option<String> {
    match key {
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

/// Python's numeric literals: `80`, `1_000`, `0x1f`, `0o17`, `0b101`, `1.5`, `.5`, `1e3`.
fn parse_number(t: &str) -> Option<Value> {
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    let digits = t.replace('_', "");
    let lower = digits.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return i64::from_str_radix(rest, radix).ok().map(Value::from);
        }
    }
    if digits.bytes().all(|c| c.is_ascii_digit()) {
        // `017` is a syntax error in Python 3; `00` is zero.
        if digits.len() > 1 && digits.starts_with('0') && digits.bytes().any(|c| c != b'0') {
            return None;
        }
        return digits.parse::<i64>().ok().map(Value::from);
    }
    let float_chars = lower
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'+' | b'-'));
    if !float_chars || lower.starts_with('e') {
        return None;
    }
    lower
        .parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_literals_are_typed() {
        for (text, want) in [
            ("80", json!(80)),
            ("-5", json!(-5)),
            ("1_000", json!(1000)),
            ("0x1f", json!(31)),
            ("1.5", json!(1.5)),
            ("1e3", json!(1000.0)),
            ("True", json!(true)),
            ("None", json!(null)),
            ("'80'", json!("80")),
            ("\"a\\tb\" 'c'", json!("a\tb".to_string() + "c")),
            ("r'a\\tb'", json!("a\\tb")),
            ("[1, 'two', [3]]", json!([1, "two", [3]])),
            ("(1,)", json!([1])),
            ("(1)", json!(1)),
            ("{'a': 1, 2: [True]}", json!({"a": 1, "2": [true]})),
            ("{1, 2}", json!([1, 2])),
            ("80 # a comment", json!(80)),
        ] {
            assert_eq!(literal(text), Some(want), "{text}");
        }
    }

    #[test]
    fn what_is_no_literal_stays_text() {
        for text in [
            "yes",
            "true",
            "{a:1}",
            "web01",
            "017",
            "1 2",
            "inf",
            "-'a'",
            "1.2.3",
            "f'x'",
            "-True",
            "[1,",
            "10.0.0.1",
            "'unterminated",
        ] {
            assert_eq!(literal(text), None, "{text}");
        }
        assert_eq!(literal(&"[".repeat(300)), None);
    }
}
