//! The subset of Go templates and table output docker uses for `--format`.

use serde_json::Value;

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        cur = cur.get(part)?;
    }
    Some(cur)
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<no value>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(plain).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", plain(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Render one object. Supports `{{.A.B}}`, `{{json .A}}`, `{{.}}`, `{{lower .A}}`,
/// `{{upper .A}}`, `{{index .A "k"}}` and docker's `\t`/`\n` escapes.
pub fn render(tpl: &str, v: &Value) -> Result<String, String> {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tpl.as_str();
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after
            .find("}}")
            .ok_or_else(|| format!("template: :1: unclosed action in {tpl:?}"))?;
        let action = after[..j]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        rest = &after[j + 2..];
        let words: Vec<&str> = action.split_whitespace().collect();
        let (func, arg) = match words.as_slice() {
            [f, a, ..] if !f.starts_with('.') => (Some(*f), *a),
            [a] => (None, *a),
            _ => return Err(format!("template: :1: unsupported action {{{{{action}}}}}")),
        };
        if !arg.starts_with('.') {
            return Err(format!("template: :1: function {arg:?} not defined"));
        }
        let mut val = lookup(v, arg);
        if func == Some("index") {
            let key = words.get(2).map(|k| k.trim_matches('"')).unwrap_or("");
            val = val.and_then(|x| x.get(key));
        }
        let s = match (func, val) {
            (Some("json"), Some(x)) => x.to_string(),
            (Some("json"), None) => "null".into(),
            (Some("lower"), Some(x)) => plain(x).to_lowercase(),
            (Some("upper"), Some(x)) => plain(x).to_uppercase(),
            (Some("index"), Some(x)) | (None, Some(x)) => plain(x),
            (Some("index"), None) | (None, None) => {
                if v.is_object() && !arg.trim_start_matches('.').contains('.') && arg != "." {
                    return Err(format!(
                        "template: :1:{}: executing \"\" at <{arg}>: can't evaluate field {} in type",
                        3,
                        arg.trim_start_matches('.')
                    ));
                }
                "<no value>".into()
            }
            (Some(f), _) => return Err(format!("template: :1: function {f:?} not defined")),
        };
        out.push_str(&s);
    }
    out.push_str(rest);
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
