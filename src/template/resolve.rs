//! The values one render sees. Variables may be templates themselves
//! (`backup_dir: "{{ app_path }}/backups"`), as in Ansible, where they are rendered when
//! used: those a template reads are rendered, dependencies first; a variable that needs
//! itself through others is an error. A rendered value may hold braces of its own (a
//! docker --format in a shell snippet): it is rendered once, never again.
//!
//! First every variable reached gets its id (see [`super::memo`]), which takes no
//! rendering; then the values are taken from those kept, and only the missing ones are
//! rendered.
//!
//! A cycle that goes through a read only minijinja lists ([`Need::maybe`]: the definition
//! gives that name a value itself before reading it) is no cycle: the variable read that
//! way is not handed to the definition, which never reads it, and the rest resolves as if
//! the read were not there. Jinja, and so Ansible, render such a definition.

use std::collections::HashSet;
use std::sync::Arc;

use minijinja::value::{Serde, Value};

use super::memo::{approx_result_bytes, Derivation, Need};
use super::{in_variable, FastMap, Scope, TemplateError, Templates, Values};
use crate::vars::{Derived, Lookup, NameSet, Note};

pub(super) struct Resolver<'t> {
    templates: &'t Templates,
    vars: &'t dyn Lookup,
    ids: FastMap<String, u64>,
    /// Of each variable that is a template: the variables it reads that are defined.
    derived: FastMap<String, Vec<String>>,
    /// Of each variable that is a template: what it reads, directly or through others;
    /// None when its value may not be kept (it reads `lookup`, or one that does).
    reads: FastMap<String, Option<NameSet>>,
    /// The variables that are templates whose id the host's notes gave, with the id of
    /// their definition: what they read is worked out only if their value must be.
    noted: FastMap<String, u64>,
    /// The variables whose ids are being worked out, each waiting for those it reads, and
    /// whether the one before it reads it only maybe.
    in_progress: Vec<(String, bool)>,
    /// Where a cycle just found is broken: the depth in `in_progress` of the variable read
    /// only maybe, which the one before it is to do without.
    breaking: Option<usize>,
    values: Values,
}

impl<'t> Resolver<'t> {
    pub fn new(templates: &'t Templates, vars: &'t dyn Lookup) -> Self {
        Resolver {
            templates,
            vars,
            ids: FastMap::default(),
            derived: FastMap::default(),
            reads: FastMap::default(),
            noted: FastMap::default(),
            in_progress: Vec::new(),
            breaking: None,
            values: Values::default(),
        }
    }

    /// The values of those of `names` that are defined, among those worked out so far.
    pub fn values(&mut self, names: &HashSet<String>) -> Result<&Values, TemplateError> {
        // An error of an earlier template may have left a variable half worked out.
        self.in_progress.clear();
        self.breaking = None;
        for name in names {
            self.id(name, false)?;
        }
        for name in names {
            if self.vars.contains_key(name) {
                self.value(name)?;
            }
        }
        Ok(&self.values)
    }

    /// The id of `name`'s value (None when it is not defined); `maybe`: whether the
    /// variable being worked out reads it only maybe.
    fn id(&mut self, name: &str, maybe: bool) -> Result<Option<u64>, TemplateError> {
        if let Some(id) = self.ids.get(name) {
            return Ok(Some(*id));
        }
        let Some(definition) = self.vars.get(name) else {
            return Ok(None);
        };
        // Ids stand for content forever, so a note on a value that has not changed holds
        // even after the memo forgot the content.
        let intern = || {
            let (id, template) = self.templates.memo().intern(definition);
            Note {
                owner: self.templates.owner,
                id,
                template,
            }
        };
        let Note {
            id: own, template, ..
        } = match self.vars.notes(name) {
            Some(notes) => notes.get_or(self.templates.owner, name, intern),
            None => intern(),
        };
        let template = template && !self.vars.registered(name);
        let id = if !template {
            own
        } else if let Some(derived) = self.vars.derived(self.templates.owner, name) {
            // Nothing it reads has changed since the host's notes were made.
            self.reads.insert(name.to_string(), Some(derived.reads));
            self.noted.insert(name.to_string(), own);
            derived.id
        } else {
            self.derivation(name, definition, own, maybe)?
        };
        self.ids.insert(name.to_string(), id);
        Ok(Some(id))
    }

    /// What a variable that reads `needs` reads in all, if its value may be kept.
    fn reads_through(&self, needs: &[Need]) -> Option<NameSet> {
        let mut all = NameSet::default();
        for Need { name: need, .. } in needs {
            all = all.with(NameSet::of(need));
            if let Some(through) = self.reads.get(need.as_str()) {
                all = all.with((*through)?);
            }
        }
        Some(all)
    }

    fn derivation(
        &mut self,
        name: &str,
        definition: &serde_json::Value,
        own: u64,
        maybe: bool,
    ) -> Result<u64, TemplateError> {
        // Only a variable still waiting for its own needs closes a cycle.
        if let Some(at) = self.in_progress.iter().position(|(n, _)| n == name) {
            return Err(self.cycle(at, name, maybe));
        }
        let needs = self.needs(name, definition, own)?;
        // `lookup` reads the environment and files, which may change between renders.
        let pure = !needs.iter().any(|n| n.name == "lookup") || self.vars.contains_key("lookup");
        self.in_progress.push((name.to_string(), maybe));
        let mut inputs = Vec::with_capacity(needs.len());
        let mut defined = Vec::with_capacity(needs.len());
        for need in needs.iter() {
            // A variable that reads itself sees its own definition, unrendered.
            let id = if need.name == name {
                Some(own)
            } else {
                self.input(need)?
            };
            inputs.push(id.unwrap_or(0));
            if id.is_some() {
                defined.push(need.name.clone());
            }
        }
        self.in_progress.pop();
        self.derived.insert(name.to_string(), defined);
        let reads = self.reads_through(&needs).filter(|_| pure);
        self.reads.insert(name.to_string(), reads);
        let Some(reads) = reads else {
            return Ok(self.templates.memo().fresh_id());
        };
        let id = self.templates.memo().derivation(Derivation {
            name: name.to_string(),
            definition: own,
            inputs,
        });
        let owner = self.templates.owner;
        self.vars.keep_derived(name, Derived { owner, id, reads });
        Ok(id)
    }

    /// What `name`'s definition reads, sorted.
    fn needs(
        &mut self,
        name: &str,
        definition: &serde_json::Value,
        own: u64,
    ) -> Result<Arc<[Need]>, TemplateError> {
        if let Some(needs) = self.templates.memo().needs(own) {
            return Ok(needs);
        }
        let needs: Arc<[Need]> = self
            .templates
            .needs_in(definition)
            .map_err(|e| in_variable(name, e))?
            .into_iter()
            .map(|(name, maybe)| Need { name, maybe })
            .collect();
        self.templates.memo().read_by(own, needs.clone());
        Ok(needs)
    }

    /// The id of what the variable being worked out reads as `need`; None when it is not
    /// defined, or is read only maybe and closes a cycle: either way it is not handed.
    fn input(&mut self, need: &Need) -> Result<Option<u64>, TemplateError> {
        let depth = self.in_progress.len();
        match self.id(&need.name, need.maybe) {
            Err(_) if self.breaking == Some(depth) => {
                self.breaking = None;
                self.in_progress.truncate(depth);
                Ok(None)
            }
            id => id,
        }
    }

    /// The error of a cycle closed by reading `name` (at `at` in `in_progress`) again,
    /// `maybe` or not; where a read on the cycle is only maybe, it is broken there instead.
    fn cycle(&mut self, at: usize, name: &str, maybe: bool) -> TemplateError {
        let depth = self.in_progress.len();
        self.breaking = if maybe {
            Some(depth)
        } else {
            self.in_progress[at + 1..]
                .iter()
                .rposition(|(_, maybe)| *maybe)
                .map(|k| at + 1 + k)
        };
        let by = self.in_progress.last().map_or(name, |(n, _)| n.as_str());
        TemplateError {
            message: format!("variables `{by}` and `{name}` refer to each other"),
            undefined: false,
        }
    }

    /// The value of `name`, defined and with its id worked out.
    fn value(&mut self, name: &str) -> Result<Value, TemplateError> {
        if let Some(value) = self.values.get(name) {
            return Ok(value.clone());
        }
        let vars = self.vars;
        let Some(definition) = vars.get(name) else {
            return Err(super::undefined(name, vars));
        };
        if let Some(&own) = self.noted.get(name) {
            // A kept error stays noted: it is the same error the next time.
            if let Some(kept) = self.templates.memo().value(self.ids[name]) {
                let value = kept?;
                self.values.insert(name.to_string(), value.clone());
                return Ok(value);
            }
            // The memo forgot the value: what it reads is needed to render it.
            let id = self.derivation(name, definition, own, false)?;
            self.noted.remove(name);
            self.ids.insert(name.to_string(), id);
        }
        let value = match self.derived.get(name).cloned() {
            None => Value::from(Serde(definition)),
            Some(needs) => {
                let id = self.ids[name];
                let pure = matches!(self.reads.get(name), Some(Some(_)));
                let kept = if pure {
                    self.templates.memo().value(id)
                } else {
                    None
                };
                match kept {
                    Some(kept) => kept?,
                    None => self.render(name, definition, &needs, pure.then_some(id))?,
                }
            }
        };
        self.values.insert(name.to_string(), value.clone());
        Ok(value)
    }

    /// Renders `name`'s definition; keeps the outcome under `keep_as`, an error too (its
    /// own or that of a variable it reads): the same inputs give the same error.
    fn render(
        &mut self,
        name: &str,
        definition: &serde_json::Value,
        needs: &[String],
        keep_as: Option<u64>,
    ) -> Result<Value, TemplateError> {
        let rendered = self.render_with_needs(name, definition, needs);
        if let Some(id) = keep_as {
            let bytes = approx_result_bytes(&rendered);
            self.templates.memo().keep(id, rendered.clone(), bytes);
        }
        rendered
    }

    fn render_with_needs(
        &mut self,
        name: &str,
        definition: &serde_json::Value,
        needs: &[String],
    ) -> Result<Value, TemplateError> {
        let mut values = Values::with_capacity_and_hasher(needs.len(), Default::default());
        for need in needs {
            let value = if need == name {
                Value::from(Serde(definition))
            } else {
                self.value(need)?
            };
            values.insert(need.clone(), value);
        }
        let scope = Scope {
            vars: self.vars,
            values: &values,
        };
        self.templates
            .render_value(definition, &scope)
            .map_err(|e| in_variable(name, e))
    }
}
