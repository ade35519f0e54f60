//! The Go templates docker uses for `--format`: fields, `{{range}}`, `{{if}}`, `{{with}}`,
//! `{{json}}`, `{{index}}` (nested, and as `(index ...).Field`), `{{println}}`, `{{join}}`,
//! pipes, `{{-`/`-}}` trimming; and docker's table output.

use crate::opts::Opts;
use serde_json::Value;

enum Node {
    Text(String),
    Act(String),
    Range(String, Vec<Node>, Vec<Node>),
    If(String, Vec<Node>, Vec<Node>),
    With(String, Vec<Node>, Vec<Node>),
}

fn lex(tpl: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = tpl;
    while let Some(i) = rest.find("{{") {
        let mut text = rest[..i].to_string();
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| format!("template: :1: unclosed action in {tpl:?}"))?;
        let mut act = &after[..j];
        if act.starts_with('-') {
            text = text.trim_end().to_string();
            act = &act[1..];
        }
        let trim_after = act.ends_with('-') && act.len() > 1;
        if trim_after {
            act = &act[..act.len() - 1];
        }
        out.push((false, text));
        out.push((true, act.trim().to_string()));
        rest = &after[j + 2..];
        if trim_after {
            rest = rest.trim_start();
        }
    }
    out.push((false, rest.to_string()));
    Ok(out)
}

/// Parse until `end` (or `else`); returns the nodes and what stopped it.
fn parse(toks: &[(bool, String)], i: &mut usize) -> Result<(Vec<Node>, String), String> {
    let mut nodes = Vec::new();
    while *i < toks.len() {
        let (is_act, s) = &toks[*i];
        *i += 1;
        if !is_act {
            if !s.is_empty() {
                nodes.push(Node::Text(s.clone()));
            }
            continue;
        }
        if s == "end" || s == "else" {
            return Ok((nodes, s.clone()));
        }
        if s.starts_with("/*") {
            continue;
        }
        let block = ["range ", "if ", "with "]
            .iter()
            .find(|k| s.starts_with(*k));
        if let Some(k) = block {
            let arg = s[k.len()..].trim().to_string();
            let (body, stop) = parse(toks, i)?;
            let els = if stop == "else" {
                parse(toks, i)?.0
            } else {
                Vec::new()
            };
            nodes.push(match *k {
                "range " => Node::Range(arg, body, els),
                "if " => Node::If(arg, body, els),
                _ => Node::With(arg, body, els),
            });
            continue;
        }
        nodes.push(Node::Act(s.clone()));
    }
    Ok((nodes, String::new()))
}

/// Go's default formatting of a value (fmt %v).
pub fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", plain(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().map(|x| x != 0.0).unwrap_or(false),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c[i] == '"' || c[i] == '`' {
            let q = c[i];
            i += 1;
            while i < c.len() && c[i] != q {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c[i] == '(' {
            let mut d = 0;
            while i < c.len() {
                d += match c[i] {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                i += 1;
                if d == 0 {
                    break;
                }
            }
            while i < c.len() && !c[i].is_whitespace() {
                i += 1;
            }
        } else if c[i] == '|' {
            i += 1;
        } else {
            while i < c.len() && !c[i].is_whitespace() && c[i] != '(' {
                i += 1;
            }
        }
        out.push(c[start..i.min(c.len())].iter().collect());
    }
    Ok(out)
}

struct Ctx<'a> {
    root: &'a Value,
}

fn field(v: &Value, path: &str, top: bool) -> Result<Value, String> {
    let mut cur = v.clone();
    for (k, part) in path.split('.').filter(|p| !p.is_empty()).enumerate() {
        cur = match &cur {
            Value::Object(m) => match m.get(part) {
                Some(x) => x.clone(),
                None if top && k == 0 => {
                    return Err(format!("template: :1:2: executing \"\" at <.{part}>: can't evaluate field {part} in type *types.ContainerJSON"))
                }
                None => return Ok(Value::String("<no value>".into())),
            },
            Value::Null => return Err(format!("template: :1: executing \"\" at <.{part}>: nil pointer evaluating interface {{}}.{part}")),
            _ => return Err(format!("template: :1: executing \"\" at <.{part}>: can't evaluate field {part} in type string")),
        };
    }
    Ok(cur)
}

impl Ctx<'_> {
    fn arg(&self, w: &str, dot: &Value) -> Result<Value, String> {
        if let Some(s) = w.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
            return Ok(Value::String(
                s.replace("\\n", "\n")
                    .replace("\\t", "\t")
                    .replace("\\\"", "\""),
            ));
        }
        if let Some(s) = w.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
            return Ok(Value::String(s.into()));
        }
        if w.starts_with('(') {
            let close = w.rfind(')').ok_or("template: unmatched (")?;
            let inner = self.pipeline(&w[1..close], dot)?;
            return field(&inner, &w[close + 1..], false);
        }
        if w == "." {
            return Ok(dot.clone());
        }
        if let Some(p) = w.strip_prefix('$') {
            return field(self.root, p, false);
        }
        if w.starts_with('.') {
            return field(dot, w, std::ptr::eq(dot, self.root) || dot == self.root);
        }
        if let Ok(n) = w.parse::<i64>() {
            return Ok(Value::from(n));
        }
        match w {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "nil" => Ok(Value::Null),
            _ => Err(format!("template: :1: function \"{w}\" not defined")),
        }
    }

    fn pipeline(&self, s: &str, dot: &Value) -> Result<Value, String> {
        let mut prev: Option<Value> = None;
        for cmd in split_pipes(s) {
            let ws = words(cmd.trim())?;
            prev = Some(self.call(&ws, dot, prev)?);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    fn call(&self, ws: &[String], dot: &Value, piped: Option<Value>) -> Result<Value, String> {
        let Some(f) = ws.first() else {
            return Ok(piped.unwrap_or(Value::Null));
        };
        let is_fn = !f.starts_with('.')
            && !f.starts_with('$')
            && !f.starts_with('(')
            && !f.starts_with('"')
            && f.parse::<i64>().is_err();
        if !is_fn {
            return self.arg(f, dot);
        }
        let mut args = ws[1..]
            .iter()
            .map(|w| self.arg(w, dot))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(p) = piped {
            args.push(p);
        }
        let a0 = args.first().cloned().unwrap_or(Value::Null);
        Ok(match f.as_str() {
            "json" => Value::String(a0.to_string()),
            "println" => Value::String(format!(
                "{}\n",
                args.iter().map(plain).collect::<Vec<_>>().join(" ")
            )),
            "print" => Value::String(args.iter().map(plain).collect::<Vec<_>>().join("")),
            "printf" => Value::String(printf(&args)),
            "lower" => Value::String(plain(&a0).to_lowercase()),
            "upper" => Value::String(plain(&a0).to_uppercase()),
            "title" => Value::String(plain(&a0)),
            "len" => Value::from(match &a0 {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                _ => 0,
            }),
            "join" => match &a0 {
                Value::Array(a) => Value::String(
                    a.iter()
                        .map(plain)
                        .collect::<Vec<_>>()
                        .join(&plain(args.get(1).unwrap_or(&Value::Null))),
                ),
                _ => a0,
            },
            "split" => Value::Array(
                plain(&a0)
                    .split(&plain(args.get(1).unwrap_or(&Value::Null)))
                    .map(|x| Value::String(x.into()))
                    .collect(),
            ),
            "index" => index(a0, &args[1..])?,
            "eq" => Value::Bool(args[1..].iter().any(|x| plain(x) == plain(&a0))),
            "ne" => Value::Bool(plain(&a0) != plain(args.get(1).unwrap_or(&Value::Null))),
            "not" => Value::Bool(!truthy(&a0)),
            "and" => args
                .iter()
                .find(|x| !truthy(x))
                .cloned()
                .unwrap_or_else(|| args.last().cloned().unwrap_or(Value::Null)),
            "or" => args
                .iter()
                .find(|x| truthy(x))
                .cloned()
                .unwrap_or_else(|| args.last().cloned().unwrap_or(Value::Null)),
            other => return Err(format!("template: :1: function \"{other}\" not defined")),
        })
    }

    fn eval(&self, nodes: &[Node], dot: &Value, out: &mut String) -> Result<(), String> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Act(a) => {
                    let v = self.pipeline(a, dot)?;
                    out.push_str(&plain(&v));
                }
                Node::Range(a, body, els) => {
                    let (var, expr) = range_var(a);
                    let v = self.pipeline(expr, dot)?;
                    let items: Vec<(Value, Value)> = match v {
                        Value::Array(xs) => xs
                            .into_iter()
                            .enumerate()
                            .map(|(i, x)| (Value::from(i), x))
                            .collect(),
                        Value::Object(m) => {
                            let mut ks: Vec<(String, Value)> = m.into_iter().collect();
                            ks.sort_by(|a, b| a.0.cmp(&b.0));
                            ks.into_iter().map(|(k, x)| (Value::String(k), x)).collect()
                        }
                        _ => Vec::new(),
                    };
                    if items.is_empty() {
                        self.eval(els, dot, out)?;
                    }
                    for (k, x) in items {
                        let d = match &var {
                            Some((kn, vn)) => {
                                let mut s = render_vars(body, kn, &k, vn, &x);
                                s.retain(|_| true);
                                out.push_str(&self.render_nodes_with(&s, &x)?);
                                continue;
                            }
                            None => x,
                        };
                        self.eval(body, &d, out)?;
                    }
                }
                Node::If(a, body, els) => {
                    let v = self.pipeline(a, dot)?;
                    self.eval(if truthy(&v) { body } else { els }, dot, out)?;
                }
                Node::With(a, body, els) => {
                    let v = self.pipeline(a, dot)?;
                    if truthy(&v) {
                        self.eval(body, &v, out)?;
                    } else {
                        self.eval(els, dot, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn render_nodes_with(&self, tpl: &str, dot: &Value) -> Result<String, String> {
        let toks = lex(tpl)?;
        let (nodes, _) = parse(&toks, &mut 0)?;
        let mut out = String::new();
        self.eval(&nodes, dot, &mut out)?;
        Ok(out)
    }
}

/// `range $k, $v := .X` → (($k, $v), ".X")
fn range_var(a: &str) -> (Option<(String, String)>, &str) {
    if let Some((vars, expr)) = a.split_once(":=") {
        let vs: Vec<&str> = vars.split(',').map(str::trim).collect();
        let (k, v) = match vs.as_slice() {
            [k, v] => (k.to_string(), v.to_string()),
            [v] => (String::new(), v.to_string()),
            _ => (String::new(), String::new()),
        };
        return (Some((k, v)), expr.trim());
    }
    (None, a)
}

/// Substitute `$k`/`$v` in a range body by literal values (a small stand-in for Go's
/// variables, enough for `{{range $k, $v := .Config.Labels}}{{$k}}={{$v}}{{end}}`).
fn render_vars(body: &[Node], kn: &str, k: &Value, vn: &str, v: &Value) -> String {
    fn lit(x: &Value) -> String {
        format!("{}", Value::String(plain(x)))
    }
    let mut s = String::new();
    for n in body {
        if let Node::Text(t) = n {
            s.push_str(t);
        } else if let Node::Act(a) = n {
            let mut a = a.clone();
            if !kn.is_empty() {
                a = a.replace(kn, &lit(k));
            }
            if !vn.is_empty() {
                a = a.replace(vn, &lit(v));
            }
            s.push_str(&format!("{{{{{a}}}}}"));
        }
    }
    s
}

fn split_pipes(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut q, mut start) = (0, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => q = !q,
            '(' if !q => depth += 1,
            ')' if !q => depth -= 1,
            '|' if !q && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn printf(args: &[Value]) -> String {
    let Some(f) = args.first() else {
        return String::new();
    };
    let mut out = String::new();
    let mut it = args[1..].iter();
    let f = plain(f);
    let mut chars = f.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('%') => out.push('%'),
                Some(_) => out.push_str(&it.next().map(plain).unwrap_or_default()),
                None => out.push('%'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Render one object, with docker's `\t`/`\n` escapes in the format string.
pub fn render(tpl: &str, v: &Value) -> Result<String, String> {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let toks = lex(&tpl)?;
    let (nodes, stop) = parse(&toks, &mut 0)?;
    if !stop.is_empty() {
        return Err(format!("template: :1: unexpected {{{{{stop}}}}}"));
    }
    let mut out = String::new();
    Ctx { root: v }.eval(&nodes, v, &mut out)?;
    Ok(out)
}

/// Render a list: with a `table ` prefix print a header line too.
pub fn render_list(tpl: &str, rows: &[Value]) -> Result<String, String> {
    let (table, body) = match tpl.strip_prefix("table") {
        Some(b) => (true, b.trim_start()),
        None => (false, tpl),
    };
    let mut lines: Vec<Vec<String>> = Vec::new();
    if table {
        let header: String = body
            .split("{{")
            .map(|p| match p.find("}}") {
                Some(i) => {
                    let name = p[..i]
                        .trim()
                        .rsplit('.')
                        .next()
                        .unwrap_or("")
                        .to_uppercase();
                    format!("{name}{}", &p[i + 2..])
                }
                None => p.to_string(),
            })
            .collect();
        lines.push(
            header
                .replace("\\t", "\t")
                .split('\t')
                .map(str::to_string)
                .collect(),
        );
    }
    for r in rows {
        lines.push(render(body, r)?.split('\t').map(str::to_string).collect());
    }
    if !table {
        return Ok(lines
            .iter()
            .map(|l| format!("{}\n", l.join("\t")))
            .collect());
    }
    Ok(tabulate(&lines))
}

/// Columns separated by at least three spaces, as docker's tabwriter prints them.
pub fn tabulate(lines: &[Vec<String>]) -> String {
    let cols = lines.iter().map(|l| l.len()).max().unwrap_or(0);
    let mut w = vec![0usize; cols];
    for l in lines {
        for (i, c) in l.iter().enumerate() {
            if i + 1 < l.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for l in lines {
        let mut line = String::new();
        for (i, c) in l.iter().enumerate() {
            line.push_str(c);
            if i + 1 < l.len() {
                line.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// How `--format json` prints a listing: compose prints one array, docker an object a line.
pub enum JsonRows {
    Array,
    Lines,
}

/// Prints a `ps` listing as docker and compose do: the ids alone with `-q`, the rows with
/// `--format` (`json`, or a template), else a table of `columns`, each `(header, key)`
/// read from the row's `key`. Returns the exit code.
pub fn print_ps(o: &Opts, rows: Vec<Value>, json: JsonRows, columns: &[(&str, &str)]) -> i32 {
    if o.has(&["-q", "--quiet"]) {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return 0;
    }
    match (o.get(&["--format"]).as_deref(), json) {
        (Some("json"), JsonRows::Array) => println!("{}", Value::Array(rows)),
        (Some("json"), JsonRows::Lines) => rows.iter().for_each(|r| println!("{r}")),
        (Some(f), _) => return print_list(f, &rows),
        (None, _) => {
            let mut lines = vec![columns
                .iter()
                .map(|(header, _)| header.to_string())
                .collect()];
            for r in &rows {
                let cells = columns
                    .iter()
                    .map(|(_, key)| r[*key].as_str().unwrap_or(""));
                lines.push(cells.map(str::to_string).collect());
            }
            print!("{}", tabulate(&lines));
        }
    }
    0
}

/// Prints `rows` with `--format TPL` as docker does; a bad template is docker's exit 1.
pub fn print_list(tpl: &str, rows: &[Value]) -> i32 {
    match render_list(tpl, rows) {
        Ok(s) => {
            print!("{s}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// Go's `index`: `value` looked up by each key in turn, a map by name, a list by number.
fn index(value: Value, keys: &[Value]) -> Result<Value, String> {
    let mut cur = value;
    for k in keys {
        cur = match (&cur, k) {
            (Value::Object(m), _) => m.get(&plain(k)).cloned().unwrap_or(Value::Null),
            (Value::Array(a), Value::Number(n)) => a
                .get(n.as_u64().unwrap_or(u64::MAX) as usize)
                .cloned()
                .ok_or("template: error calling index: index out of range")?,
            _ => Value::Null,
        };
    }
    Ok(cur)
}
