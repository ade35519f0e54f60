//! Jinja2 templates and conditions, as Ansible operators write them (minijinja).
//!
//! Undefined variables are errors, never empty strings: an empty `{{ sl_app_path }}` in a
//! `docker compose` command on a production host is exactly the accident fleetup exists to
//! prevent. Filters and tests that Ansible playbooks rely on for this job are added:
//! `quote` (shell quoting), `bool`, `from_json`, the `version` test for comparing
//! releases and `pinned_version` (`4.66.1` or `v4.66.1`, not `latest`); and the `docker_*` filters of [`docker`], which read `docker inspect` output.
//!
//! A variable whose whole value is one expression (`"{{ facts.stdout | from_json }}"`)
//! keeps the expression's type, as Ansible's native types do: a mapping stays a mapping.

mod docker;

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashSet;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::diagnostic::did_you_mean;
use crate::vars::Vars;

/// A problem in one template, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// Whether the problem is a name the template uses but nothing defines.
    pub undefined: bool,
}

/// The template engine with fleetup's filters and tests.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Commands are shell text, not HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        // Hostile inputs must not hang validation (a template is run once per host).
        env.set_fuel(Some(1_000_000));
        env.add_filter("quote", quote);
        env.add_filter("bool", to_bool);
        env.add_filter("from_json", from_json);
        // Python's str and dict methods (`.startswith`, `.split`, `.get`...), which Ansible
        // playbooks use as freely as filters.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("docker_by_name", |list: Value| {
            Value::from(Serde(docker::by_name(&to_json(&list))))
        });
        env.add_filter("docker_label", |containers: Value, key: String| {
            Value::from(Serde(docker::label(&to_json(&containers), &key)))
        });
        env.add_filter("docker_run_options", |c: Value, i: Value| {
            docker::run_options(&to_json(&c), &to_json(&i))
        });
        env.add_filter("docker_run_context", |c: Value, i: Value| {
            docker::run_context(&to_json(&c), &to_json(&i))
        });
        env.add_filter("docker_run_command", |c: Value, i: Value| {
            docker::run_command(&to_json(&c), &to_json(&i))
        });
        env.add_filter("docker_published", |c: Value, port: Value| {
            docker::published(&to_json(&c), &port.to_string())
        });
        env.add_test("version", version_test);
        env.add_test("pinned_version", |v: Value| {
            v.as_str()
                .is_some_and(|s| compare_versions(s, "0").is_some())
        });
        env.add_function("lookup", lookup);
        Templates { env }
    }

    /// Renders a template (a command) with `vars`.
    pub fn render(&self, source: &str, vars: &Vars) -> Result<String, TemplateError> {
        let template = self.env.template_from_str(source).map_err(describe)?;
        let used = template.undeclared_variables(false);
        check_defined(source, &used, vars)?;
        let expanded = self.expand(&used, vars)?;
        template
            .render(context(&used, &expanded))
            .map_err(|e| explain(e, &used, vars))
    }

    /// Evaluates a condition (`when`, `until`...): a bare Jinja expression, no braces.
    pub fn eval(&self, expression: &str, vars: &Vars) -> Result<bool, TemplateError> {
        let expr = self.compile(expression)?;
        let used = expr.undeclared_variables(false);
        check_defined(expression, &used, vars)?;
        let expanded = self.expand(&used, vars)?;
        expr.eval(context(&used, &expanded))
            .map(|v| v.is_true())
            .map_err(|e| explain(e, &used, vars))
    }

    /// Variables may be templates themselves (`backup_dir: "{{ app_path }}/backups"`), as
    /// in Ansible, where they are rendered when used. Renders those that `used` needs,
    /// dependencies first; a variable that needs itself is an error.
    fn expand<'v>(
        &self,
        used: &HashSet<String>,
        vars: &'v Vars,
    ) -> Result<Cow<'v, Vars>, TemplateError> {
        let mut pending: Vec<String> = used
            .iter()
            .filter(|n| vars.get(*n).is_some_and(has_template))
            .cloned()
            .collect();
        if pending.is_empty() {
            return Ok(Cow::Borrowed(vars));
        }
        let mut out = vars.clone();
        let mut in_progress: Vec<String> = Vec::new();
        // A rendered value may hold braces of its own (a docker --format in a shell
        // snippet): it is rendered once, never again.
        let mut done: HashSet<String> = HashSet::new();
        while let Some(name) = pending.last().cloned() {
            let value = out.get(&name).cloned().filter(has_template);
            let Some(value) = value.filter(|_| !done.contains(&name)) else {
                pending.pop();
                continue;
            };
            let needs: Vec<String> = self
                .variables_in(&value)
                .map_err(|e| in_variable(&name, e))?
                .into_iter()
                .filter(|n| out.get(n).is_some_and(has_template) && *n != name && !done.contains(n))
                .collect();
            // Only a variable still waiting for its own needs closes a cycle; one merely
            // pending (also read directly) is simply rendered first.
            if let Some(cycle) = needs.iter().find(|n| in_progress.contains(n)) {
                return Err(TemplateError {
                    message: format!("variables `{name}` and `{cycle}` refer to each other"),
                    undefined: false,
                });
            }
            if needs.is_empty() {
                let rendered = self
                    .render_value(&value, &out)
                    .map_err(|e| in_variable(&name, e))?;
                out.insert(name.clone(), rendered);
                pending.pop();
                in_progress.retain(|n| *n != name);
                done.insert(name);
            } else {
                in_progress.push(name);
                pending.extend(needs);
            }
        }
        Ok(Cow::Owned(out))
    }

    fn variables_in(&self, value: &serde_json::Value) -> Result<HashSet<String>, TemplateError> {
        let mut names = HashSet::new();
        match value {
            serde_json::Value::String(s) if is_template(s) => {
                names.extend(self.variables_of_template(s)?);
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    names.extend(self.variables_in(item)?);
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values() {
                    names.extend(self.variables_in(item)?);
                }
            }
            _ => {}
        }
        Ok(names)
    }

    fn render_value(
        &self,
        value: &serde_json::Value,
        vars: &Vars,
    ) -> Result<serde_json::Value, TemplateError> {
        Ok(match value {
            serde_json::Value::String(s) if is_template(s) => match single_expression(s) {
                Some(expression) => self.eval_value(expression, vars)?,
                None => {
                    let template = self.env.template_from_str(s).map_err(describe)?;
                    let used = template.undeclared_variables(false);
                    check_defined(s, &used, vars)?;
                    let rendered = template
                        .render(context(&used, vars))
                        .map_err(|e| explain(e, &used, vars))?;
                    serde_json::Value::String(rendered)
                }
            },
            serde_json::Value::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| self.render_value(i, vars))
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_value(v, vars)?)))
                    .collect::<Result<_, TemplateError>>()?,
            ),
            other => other.clone(),
        })
    }

    /// The value of one expression, with its type (a mapping, a list, a number...).
    fn eval_value(
        &self,
        expression: &str,
        vars: &Vars,
    ) -> Result<serde_json::Value, TemplateError> {
        let expr = self.compile(expression)?;
        let used = expr.undeclared_variables(false);
        check_defined(expression, &used, vars)?;
        let value = expr
            .eval(context(&used, vars))
            .map_err(|e| explain(e, &used, vars))?;
        Ok(to_json(&value))
    }

    /// The variables a template or expression reads, and those that the variables it reads
    /// read in turn (variables may be templates): what its value depends on.
    pub fn variables_reached(
        &self,
        source: &str,
        is_expression: bool,
        vars: &Vars,
    ) -> Result<HashSet<String>, TemplateError> {
        let direct = if is_expression {
            self.variables_of_expression(source)?
        } else {
            self.variables_of_template(source)?
        };
        let mut reached: HashSet<String> = HashSet::new();
        let mut pending = direct;
        while let Some(name) = pending.pop() {
            if !reached.insert(name.clone()) {
                continue;
            }
            if let Some(value) = vars.get(&name).filter(|v| has_template(v)) {
                pending.extend(self.variables_in(value)?);
            }
        }
        Ok(reached)
    }

    /// The variables a template uses (its syntax checked).
    pub fn variables_of_template(&self, source: &str) -> Result<Vec<String>, TemplateError> {
        let template = self.env.template_from_str(source).map_err(describe)?;
        Ok(template.undeclared_variables(false).into_iter().collect())
    }

    /// The variables an expression uses (its syntax checked).
    pub fn variables_of_expression(&self, expression: &str) -> Result<Vec<String>, TemplateError> {
        Ok(self
            .compile(expression)?
            .undeclared_variables(false)
            .into_iter()
            .collect())
    }

    fn compile(&self, expression: &str) -> Result<minijinja::Expression<'_, '_>, TemplateError> {
        if expression.trim_start().starts_with("{{") {
            return Err(TemplateError {
                message: "a condition is a bare expression: write `x == 1`, not `{{ x == 1 }}`"
                    .into(),
                undefined: false,
            });
        }
        self.env
            .compile_expression_owned(expression.to_string())
            .map_err(describe)
    }
}

/// What a template sees: only the variables it reads. Handing it every variable would
/// convert all of them (a host's registered outputs, the playbook's parsed JSON) to
/// template values for each template rendered, which was most of a run's CPU.
fn context(used: &HashSet<String>, vars: &Vars) -> Value {
    Value::from(Serde(Subset { used, vars }))
}

struct Subset<'a> {
    used: &'a HashSet<String>,
    vars: &'a Vars,
}

impl serde::Serialize for Subset<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for name in self.used {
            if let Some(value) = self.vars.get(name) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

/// The expression of a value that is one `{{ ... }}` and nothing else.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

fn to_json(value: &Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Ansible's `from_json`: a registered `stdout` read as the JSON it is.
fn from_json(text: &str) -> Result<Value, Error> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| Value::from(Serde(v)))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not JSON: {e}")))
}

fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

fn has_template(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => is_template(s),
        serde_json::Value::Array(items) => items.iter().any(has_template),
        serde_json::Value::Object(map) => map.values().any(has_template),
        _ => false,
    }
}

fn in_variable(name: &str, e: TemplateError) -> TemplateError {
    TemplateError {
        message: format!("in variable `{name}`: {}", e.message),
        undefined: e.undefined,
    }
}

/// minijinja lets an undefined value through a filter (`{{ x | quote }}` renders as ''),
/// so names are checked before rendering: one that no variable defines is an error unless
/// every use of it is guarded by `default` or an `is defined` test.
fn check_defined(source: &str, used: &HashSet<String>, vars: &Vars) -> Result<(), TemplateError> {
    let mut missing: Vec<&String> = used
        .iter()
        .filter(|name| !vars.contains_key(*name) && !is_builtin_global(name))
        .filter(|name| !guarded(source, name))
        .collect();
    missing.sort();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    Err(undefined(first, vars))
}

/// Whether every use of `name` in `source` is followed (after any `.attribute`s) by a
/// `default` filter or a `defined`/`undefined` test.
fn guarded(source: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut uses = 0;
    for (at, _) in source.match_indices(name) {
        let before = source[..at].chars().next_back();
        let after = &source[at + name.len()..];
        if before.is_some_and(|c| is_ident(c) || c == '.') || after.starts_with(is_ident) {
            continue;
        }
        uses += 1;
        let rest = after
            .trim_start_matches(|c: char| is_ident(c) || c == '.')
            .trim_start();
        let guard = rest
            .strip_prefix('|')
            .map(|r| {
                let r = r.trim_start();
                r.starts_with("default") || r.starts_with("d(")
            })
            .unwrap_or(false)
            || ["is defined", "is not defined", "is undefined"]
                .iter()
                .any(|t| rest.starts_with(t));
        if !guard {
            return false;
        }
    }
    uses > 0
}

fn undefined(name: &str, vars: &Vars) -> TemplateError {
    let mut message = format!("undefined variable `{name}`");
    if let Some(hint) = did_you_mean(name, vars.keys().map(String::as_str)) {
        message.push_str(&format!(" ({hint})"));
    }
    TemplateError {
        message,
        undefined: true,
    }
}

/// minijinja says "undefined value"; the operator wants the name. A name the template uses
/// (outside `default` and `is defined`, which minijinja allows) that no variable defines is
/// the culprit; otherwise it is an attribute, and minijinja's own detail says which.
fn explain(e: Error, used: &HashSet<String>, vars: &Vars) -> TemplateError {
    if e.kind() != ErrorKind::UndefinedError {
        return describe(e);
    }
    let mut missing: Vec<&String> = used
        .iter()
        .filter(|name| !vars.contains_key(*name) && !is_builtin_global(name))
        .collect();
    missing.sort();
    match missing.first() {
        Some(first) => undefined(first, vars),
        None => describe(e),
    }
}

/// minijinja's own global functions, which a template may call without defining them.
fn is_builtin_global(name: &str) -> bool {
    matches!(name, "range" | "dict" | "namespace" | "debug" | "lookup")
}

/// An error minijinja reports about a value (an attribute it lacks, a filter it does not
/// suit): the output a host registers may yet have it, so it is not an undefined name.
fn describe(e: Error) -> TemplateError {
    let mut message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line().filter(|l| *l > 1) {
        message.push_str(&format!(" (line {line} of the template)"));
    }
    TemplateError {
        message,
        undefined: false,
    }
}

/// Shell quoting, as Ansible's `quote` filter: a value reaches the remote shell as one word.
fn quote(value: Value) -> String {
    shell_words::quote(&value.to_string()).into_owned()
}

/// The largest file `lookup('file', ...)` reads: a password or a key, not a database.
const LOOKUP_FILE_MAX: u64 = 1 << 20;

/// Ansible's `lookup('env', NAME)` and `lookup('file', PATH)`, so that secrets need not be
/// written in the inventory. Unlike Ansible, an unset variable is an error rather than an
/// empty string (unless `default=` is given), for the reason undefined variables are.
/// A file's trailing newline is dropped, as Ansible's `rstrip` does; a relative path is
/// taken from the directory fleetup runs in.
fn lookup(kind: &str, arg: &str, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let default: Option<String> = kwargs.get("default")?;
    kwargs.assert_all_used()?;
    let failed = |message: String| Error::new(ErrorKind::InvalidOperation, message);
    let found = match kind {
        "env" => std::env::var(arg).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                failed(format!("lookup('env', '{arg}'): the environment variable is not set"))
            }
            std::env::VarError::NotUnicode(_) => {
                failed(format!("lookup('env', '{arg}'): the value is not UTF-8"))
            }
        }),
        "file" => read_lookup_file(arg).map_err(|e| failed(format!("lookup('file', '{arg}'): {e}"))),
        other => {
            return Err(failed(format!(
                "lookup('{other}', ...) is not known: fleetup has lookup('env', NAME) and lookup('file', PATH)"
            )))
        }
    };
    match (found, default) {
        (Ok(value), _) => Ok(Value::from(value)),
        (Err(_), Some(default)) => Ok(Value::from(default)),
        (Err(e), None) => Err(e),
    }
}

fn read_lookup_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(LOOKUP_FILE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > LOOKUP_FILE_MAX {
        return Err(format!(
            "the file is over {} MiB: lookup reads a value, not a dump",
            LOOKUP_FILE_MAX >> 20
        ));
    }
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    Ok(text)
}

/// Ansible's `bool` filter: yes/on/true/1 are true, anything else false.
fn to_bool(value: Value) -> bool {
    if let Some(s) = value.as_str() {
        return matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "true" | "1" | "y"
        );
    }
    value.is_true()
}

/// `current is version('v4.65.2', '<')`: compares releases number by number, ignoring a
/// leading `v` (so v4.10.0 is after v4.9.9).
fn version_test(value: Value, other: String, op: Option<String>) -> Result<bool, Error> {
    let ordering = compare_versions(&value.to_string(), &other).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot compare versions `{value}` and `{other}`"),
        )
    })?;
    let op = op.unwrap_or_else(|| "eq".into());
    Ok(match op.as_str() {
        "<" | "lt" => ordering == Ordering::Less,
        "<=" | "le" => ordering != Ordering::Greater,
        ">" | "gt" => ordering == Ordering::Greater,
        ">=" | "ge" => ordering != Ordering::Less,
        "==" | "=" | "eq" => ordering == Ordering::Equal,
        "!=" | "<>" | "ne" => ordering != Ordering::Equal,
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown version comparison `{other}` (use <, <=, >, >=, ==, !=)"),
            ))
        }
    })
}

/// Compares `v4.65.2` with `4.66`; None when either is not a dotted list of numbers.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    fn parts(v: &str) -> Option<Vec<u64>> {
        let v = v.trim();
        let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
        v.split('.').map(|p| p.parse().ok()).collect()
    }
    let (mut a, mut b) = (parts(a)?, parts(b)?);
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    Some(a.cmp(&b))
}

#[cfg(test)]
mod tests;
