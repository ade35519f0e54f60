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
//!
//! A run renders the same templates for every host, and a host's variables that are
//! templates for every template that reads them: sources are compiled once ([`environment`])
//! and what a variable renders to is kept until what it reads changes ([`memo`]).

mod docker;
mod environment;
mod host_config;
mod json;
mod memo;
mod networks;
mod node;
mod reads;
mod resolve;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use minijinja::value::{Serde, Value};
use minijinja::{Error, ErrorKind, Expression};

pub use environment::compare_versions;
pub(crate) use memo::same;

use crate::diagnostic::did_you_mean;
use crate::mutex::lock;
use crate::vars::{HostVars, Lookup};
use memo::Memo;
use reads::Uses;
use resolve::Resolver;

/// A problem in one template, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    pub message: String,
    /// Whether the problem is a name the template uses but nothing defines.
    pub undefined: bool,
}

/// The template engine with fleetup's filters and tests, and what it has worked out so far
/// (one per process, [`Templates::shared`]: what it keeps is only ever reused for the very
/// same inputs).
pub struct Templates {
    compiled: Mutex<Compiled>,
    memo: Mutex<Memo>,
    /// Whose [`crate::vars::Notes`] are this memo's ids: another `Templates` has its own.
    owner: u64,
}

/// What the sources read, and the compiled expressions, by source: minijinja parses a
/// source again to list its variables.
#[derive(Default)]
struct Compiled {
    template_uses: UsesBySource,
    expression_uses: UsesBySource,
    expressions: FastMap<String, Arc<Expression<'static, 'static>>>,
}

type UsesBySource = FastMap<String, Arc<Uses>>;

/// Keyed by sources and values of kilobytes: a faster hash than std's, none of them chosen
/// to collide (a collision costs time, never a wrong value).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Variables' values by name, as a template sees them.
type Values = FastMap<String, Value>;

/// What a variable's definition reads, by name, in order: whether each is only a maybe.
type Needs = BTreeMap<String, bool>;

/// The variables a template reads, by name, and the values it sees for them (a variable
/// that is a template, rendered).
struct Scope<'a> {
    vars: &'a dyn Lookup,
    values: &'a Values,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        static OWNERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Templates {
            compiled: Mutex::new(Compiled::default()),
            memo: Mutex::new(Memo::default()),
            owner: OWNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The process's templates. What they keep is known by content alone, so the
    /// pre-flight's work serves the host's turn: a host's facts are parsed once per run.
    pub fn shared() -> &'static Templates {
        static SHARED: LazyLock<Templates> = LazyLock::new(Templates::new);
        &SHARED
    }

    /// Keeps enough of what is worked out for `hosts` hosts in flight at once.
    pub fn make_room_for(&self, hosts: usize) {
        self.memo().make_room_for(hosts);
    }

    /// Forgets the values worked out from what `vars`' host registered, once nothing reads
    /// them again (its run ended, or its pre-flight with no turn after it): else the memo
    /// kept every finished host's parsed `docker inspect` up to its room (85 MB for
    /// `fleetup status` of 1000 hosts), where the room is for the hosts still to come.
    pub fn retire(&self, vars: &HostVars) {
        let ids = vars.registered_derived_ids(self.owner);
        let gone = self.memo().forget_values(ids);
        drop(gone);
    }

    /// Renders a template (a command) with `vars`.
    pub fn render(&self, source: &str, vars: &dyn Lookup) -> Result<String, TemplateError> {
        self.with(vars).render(source)
    }

    /// Evaluates a condition (`when`, `until`...): a bare Jinja expression, no braces.
    pub fn eval(&self, expression: &str, vars: &dyn Lookup) -> Result<bool, TemplateError> {
        self.with(vars).eval(expression)
    }

    /// For several templates with the same `vars`.
    pub fn with<'t>(&'t self, vars: &'t dyn Lookup) -> Rendering<'t> {
        Rendering {
            templates: self,
            vars,
            resolver: Resolver::new(self, vars),
        }
    }

    /// The variables a variable's definition reads, each with whether it is only a maybe
    /// ([`reads::Uses::maybe`]): in none of its strings for sure.
    fn needs_in(&self, value: &serde_json::Value) -> Result<Needs, TemplateError> {
        let mut needs = Needs::new();
        self.add_needs(value, &mut needs)?;
        Ok(needs)
    }

    fn add_needs(&self, value: &serde_json::Value, needs: &mut Needs) -> Result<(), TemplateError> {
        match value {
            serde_json::Value::String(s) if is_template(s) => {
                let uses = self.uses_of_template(s)?;
                for name in &uses.names {
                    let maybe = uses.maybe.contains(name);
                    *needs.entry(name.clone()).or_insert(maybe) &= maybe;
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.add_needs(item, needs)?;
                }
            }
            serde_json::Value::Object(map) => {
                for item in map.values() {
                    self.add_needs(item, needs)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A variable's value rendered, in `scope`, which holds what it reads.
    fn render_value(
        &self,
        value: &serde_json::Value,
        scope: &Scope,
    ) -> Result<Value, TemplateError> {
        Ok(match value {
            serde_json::Value::String(s) if is_template(s) => match single_expression(s) {
                Some(expression) => self.eval_value(expression, scope)?,
                None => {
                    let template = environment::template(s).map_err(describe)?;
                    let used = self.template_uses(s, &template);
                    check_defined(s, &used.checked, scope.vars)?;
                    let rendered = template
                        .render(context(&used.names, scope.values))
                        .map_err(|e| explain(e, s, &used.blamed, scope.vars))?;
                    Value::from(rendered)
                }
            },
            serde_json::Value::Array(items) => items
                .iter()
                .map(|i| self.render_value(i, scope))
                .collect::<Result<Value, _>>()?,
            serde_json::Value::Object(map) => Value::from_pairs(
                map.iter()
                    .map(|(k, v)| Ok((k.as_str(), self.render_value(v, scope)?)))
                    .collect::<Result<Vec<_>, TemplateError>>()?,
            ),
            other => Value::from(Serde(other)),
        })
    }

    /// The value of one expression, with its type (a mapping, a list, a number...).
    fn eval_value(&self, expression: &str, scope: &Scope) -> Result<Value, TemplateError> {
        let expr = self.compile(expression)?;
        let used = self.expression_uses(expression, &expr);
        check_defined(expression, &used.checked, scope.vars)?;
        expr.eval(context(&used.names, scope.values))
            .map_err(|e| explain(e, expression, &used.blamed, scope.vars))
    }

    /// The variables a template or expression reads, and those that the variables it reads
    /// read in turn (variables may be templates): what its value depends on.
    pub fn variables_reached(
        &self,
        source: &str,
        is_expression: bool,
        vars: &dyn Lookup,
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
            let template = |v: &&serde_json::Value| has_template(v) && !vars.registered(&name);
            if let Some(value) = vars.get(&name).filter(template) {
                pending.extend(self.needs_in(value)?.into_keys());
            }
        }
        Ok(reached)
    }

    /// The variables a template uses (its syntax checked).
    pub fn variables_of_template(&self, source: &str) -> Result<Vec<String>, TemplateError> {
        Ok(self
            .uses_of_template(source)?
            .names
            .iter()
            .cloned()
            .collect())
    }

    fn uses_of_template(&self, source: &str) -> Result<Arc<Uses>, TemplateError> {
        let known = lock(&self.compiled).template_uses.get(source).cloned();
        match known {
            Some(used) => Ok(used),
            None => {
                let template = environment::template(source).map_err(describe)?;
                Ok(self.template_uses(source, &template))
            }
        }
    }

    /// The variables an expression uses (its syntax checked).
    pub fn variables_of_expression(&self, expression: &str) -> Result<Vec<String>, TemplateError> {
        let expr = self.compile(expression)?;
        Ok(self
            .expression_uses(expression, &expr)
            .names
            .iter()
            .cloned()
            .collect())
    }

    fn template_uses(&self, source: &str, template: &minijinja::Template<'_, '_>) -> Arc<Uses> {
        self.uses(
            source,
            |c| &mut c.template_uses,
            || Uses::of_template(source, template),
        )
    }

    fn expression_uses(&self, source: &str, expr: &Expression<'_, '_>) -> Arc<Uses> {
        self.uses(
            source,
            |c| &mut c.expression_uses,
            || Uses::of_expression(source, expr),
        )
    }

    /// What `source` reads, from `kept` (the templates' or the expressions'), else `list`ed.
    fn uses(
        &self,
        source: &str,
        kept: impl FnOnce(&mut Compiled) -> &mut UsesBySource,
        list: impl FnOnce() -> Uses,
    ) -> Arc<Uses> {
        let mut compiled = lock(&self.compiled);
        let kept = kept(&mut compiled);
        if let Some(used) = kept.get(source) {
            return used.clone();
        }
        let used = Arc::new(list());
        kept.insert(source.to_string(), used.clone());
        used
    }

    fn compile(
        &self,
        expression: &str,
    ) -> Result<Arc<Expression<'static, 'static>>, TemplateError> {
        if expression.trim_start().starts_with("{{") {
            return Err(TemplateError {
                message: "a condition is a bare expression: write `x == 1`, not `{{ x == 1 }}`"
                    .into(),
                undefined: false,
            });
        }
        if let Some(expr) = lock(&self.compiled).expressions.get(expression) {
            return Ok(expr.clone());
        }
        let expr = Arc::new(environment::expression(expression).map_err(describe)?);
        lock(&self.compiled)
            .expressions
            .insert(expression.to_string(), expr.clone());
        Ok(expr)
    }

    fn memo(&self) -> MutexGuard<'_, Memo> {
        lock(&self.memo)
    }
}

/// Templates rendered with one set of variables (a step's `when`, its command, its
/// `become_user`): the values of the variables they read are worked out once for all.
pub struct Rendering<'t> {
    templates: &'t Templates,
    vars: &'t dyn Lookup,
    resolver: Resolver<'t>,
}

impl Rendering<'_> {
    /// Renders a template (a command).
    pub fn render(&mut self, source: &str) -> Result<String, TemplateError> {
        let template = environment::template(source).map_err(describe)?;
        let used = self.templates.template_uses(source, &template);
        check_defined(source, &used.checked, self.vars)?;
        let values = self.resolver.values(&used.names)?;
        template
            .render(context(&used.names, values))
            .map_err(|e| explain(e, source, &used.blamed, self.vars))
    }

    /// What a template or expression reads with these variables: see
    /// [`Templates::variables_reached`].
    pub fn variables_reached(
        &self,
        source: &str,
        is_expression: bool,
    ) -> Result<HashSet<String>, TemplateError> {
        self.templates
            .variables_reached(source, is_expression, self.vars)
    }

    /// Evaluates a condition (`when`, `until`...): a bare Jinja expression, no braces.
    pub fn eval(&mut self, expression: &str) -> Result<bool, TemplateError> {
        let expr = self.templates.compile(expression)?;
        let used = self.templates.expression_uses(expression, &expr);
        check_defined(expression, &used.checked, self.vars)?;
        let values = self.resolver.values(&used.names)?;
        expr.eval(context(&used.names, values))
            .map(|v| v.is_true())
            .map_err(|e| explain(e, expression, &used.blamed, self.vars))
    }
}

/// What a template sees: only the variables it reads. Handing it every variable would
/// convert all of them (a host's registered outputs, the playbook's parsed JSON) to
/// template values for each template rendered.
fn context(used: &HashSet<String>, values: &Values) -> Value {
    Value::from_pairs(
        used.iter()
            .filter_map(|name| Some((name.as_str(), values.get(name)?.clone()))),
    )
}

/// The expression of a value that is one `{{ ... }}` and nothing else.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%")).then_some(inner)
}

/// Whether a text is rendered as a template where a variable holds it.
pub(crate) fn is_template(s: &str) -> bool {
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
fn check_defined(
    source: &str,
    used: &HashSet<String>,
    vars: &dyn Lookup,
) -> Result<(), TemplateError> {
    let mut missing: Vec<&String> = used
        .iter()
        .filter(|name| !vars.contains_key(name) && !is_builtin_global(name))
        .filter(|name| !guarded(source, name))
        .collect();
    missing.sort();
    let Some(first) = missing.first() else {
        return Ok(());
    };
    Err(undefined(first, vars))
}

/// Whether every use of `name` in `source` is followed (after any `.attribute`s) by a
/// `default` filter or a `defined`/`undefined` test. `name =` (a `set` or `with` target,
/// a keyword argument) gives a value, it is no use.
fn guarded(source: &str, name: &str) -> bool {
    let mut uses = 0;
    for after in name_uses(source, name) {
        let assigned = after.trim_start().strip_prefix('=');
        if assigned.is_some_and(|r| !r.starts_with('=')) {
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

/// A character of a template's names (minijinja's are ASCII).
pub(crate) fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// What follows each place `name` stands in `text` as a variable: a whole word, not an
/// attribute of something else.
pub(crate) fn name_uses<'t>(text: &'t str, name: &'t str) -> impl Iterator<Item = &'t str> {
    text.match_indices(name).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        let after = &text[at + name.len()..];
        let variable = !before.is_some_and(|c| is_ident(c) || c == '.');
        (variable && !after.starts_with(is_ident)).then_some(after)
    })
}

fn undefined(name: &str, vars: &dyn Lookup) -> TemplateError {
    let mut message = format!("undefined variable `{name}`");
    if let Some(hint) = did_you_mean(name, vars.names()) {
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
fn explain(e: Error, source: &str, blamed: &HashSet<String>, vars: &dyn Lookup) -> TemplateError {
    if e.kind() != ErrorKind::UndefinedError {
        return describe(e);
    }
    // Not one the template may leave undefined (`x | default(...)`): another value, an
    // attribute or an item, is what was missing then.
    let mut missing: Vec<&String> = blamed
        .iter()
        .filter(|name| !vars.contains_key(name) && !is_builtin_global(name))
        .filter(|name| !guarded(source, name))
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

#[cfg(test)]
mod tests;
