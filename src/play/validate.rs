//! Everything about the hosts in play that can be checked before any host is contacted.
//!
//! Every template and condition is rendered for every selected host, with the variables
//! that host will have, so a run never stops half-way through a fleet on a typo. Results
//! that earlier steps `register` do not exist yet: they are stood in for by an empty result
//! of the same shape, and only mistakes that no output could fix (an undefined name, a
//! syntax error, an unknown filter) are reported for templates that read them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::alike::Verdicts;
use super::HostInPlay;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::playbook::{Playbook, Step};
use crate::registered::Registered;
use crate::template::{Rendering, TemplateError, Templates};
use crate::vars::{Lookup, Over, Vars};

/// Checks the playbook against the hosts in play: required variables, and every template
/// and condition rendered for every host. Problems shared by many hosts are reported once.
pub fn validate(playbook: &Playbook, hosts: &[HostInPlay]) -> Vec<Diagnostic> {
    let mut errors = unknown_secrets(playbook, hosts);
    let unset = unset_required(playbook, hosts, &mut errors);
    let check = HostCheck::new(playbook);
    // (field, message) -> hosts, to say a problem once for all the hosts that share it.
    let mut problems: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for host in hosts {
        for problem in check.problems_of(&host.vars) {
            problems.entry(problem).or_default().push(&host.name);
        }
    }
    for ((field, message), failing) in problems {
        // A missing required variable was said once already; not again at every use.
        if unset.iter().any(|u| message.starts_with(u.as_str())) {
            continue;
        }
        errors.push(playbook.doc.error(
            &field,
            format!("{message}, for {}", host_list(&failing, hosts.len())),
        ));
    }
    errors.sort_by_key(|d| (d.line, d.column));
    errors
}

/// Secrets that are no host's variable: a misspelt secret would leave the real one in the
/// clear.
fn unknown_secrets(playbook: &Playbook, hosts: &[HostInPlay]) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for (i, name) in playbook.secrets.iter().enumerate() {
        if !hosts.is_empty() && !hosts.iter().any(|h| h.vars.contains_key(name)) {
            let known = hosts.iter().flat_map(|h| h.vars.names());
            let mut d = playbook.doc.error(
                &format!("secrets[{i}]"),
                format!("secret `{name}` is not a variable of any host in play"),
            );
            d.hint = did_you_mean(name, known).or_else(|| {
                Some("define it in the playbook's vars, the inventory or with -e".into())
            });
            errors.push(d);
        }
    }
    errors
}

/// Reports the required variables some host lacks, and returns the start of the message a
/// template that reads each would give.
fn unset_required(
    playbook: &Playbook,
    hosts: &[HostInPlay],
    errors: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let mut unset = Vec::new();
    for (i, name) in playbook.required_vars.iter().enumerate() {
        let missing: Vec<&str> = hosts
            .iter()
            .filter(|h| h.vars.get(name).is_none_or(|v| v.is_null() || v == ""))
            .map(|h| h.name.as_str())
            .collect();
        if !missing.is_empty() {
            unset.push(format!("undefined variable `{name}`"));
            errors.push(
                playbook
                    .doc
                    .error(
                        &format!("required_vars[{i}]"),
                        format!(
                            "required variable `{name}` is not set for {}",
                            host_list(&missing, hosts.len())
                        ),
                    )
                    .hint(format!(
                        "pass it with -e {name}=VALUE, or set it in the inventory"
                    )),
            );
        }
    }
    unset
}

/// Renders a playbook's templates for one host at a time.
struct HostCheck<'p> {
    playbook: &'p Playbook,
    templates: Templates,
    /// An empty result, standing in for what a step will register.
    placeholder: Value,
    /// The report is rendered after the pre-flight: it sees the pre-flight's registers.
    preflight_registers: HashSet<&'p str>,
    all_registers: HashSet<&'p str>,
    /// Each field's verdicts, by its name.
    verdicts: RefCell<HashMap<String, Verdicts<Option<String>>>>,
}

/// A problem: (field, message).
type Problem = (String, String);

impl<'p> HostCheck<'p> {
    fn new(playbook: &'p Playbook) -> Self {
        let registers = |steps: &'p [Step]| -> HashSet<&'p str> {
            steps.iter().filter_map(|s| s.register.as_deref()).collect()
        };
        HostCheck {
            playbook,
            templates: Templates::new(),
            placeholder: Registered::default().into_value(),
            preflight_registers: registers(&playbook.steps[..playbook.preflight_len]),
            all_registers: registers(&playbook.steps),
            verdicts: RefCell::default(),
        }
    }

    /// The problems of one host, from its variables, each field at most once.
    fn problems_of(&self, host: &dyn Lookup) -> Vec<Problem> {
        let playbook = self.playbook;
        let mut found = Vec::new();
        let registered = self.in_order(&playbook.steps, host, &mut found);
        let vars = Over {
            base: host,
            top: Cow::Owned(registered),
            registered: true,
        };
        // A rollback may run after any step failed, so it sees every register; a step that
        // did not run registers `skipped: true` (as in Ansible).
        for step in &playbook.rollback {
            self.step(step, &vars, &self.all_registers, &mut found);
        }
        // Verification runs on its own connection during a pause: the host's variables and
        // its own registers only.
        self.in_order(&playbook.verify, host, &mut found);
        let report_vars = Over {
            base: host,
            top: Cow::Owned(
                self.preflight_registers
                    .iter()
                    .map(|r| (r.to_string(), self.placeholder.clone()))
                    .collect(),
            ),
            registered: true,
        };
        for (column, template) in &playbook.report {
            let field = Field {
                name: format!("report.{column}"),
                source: template,
                is_expr: false,
                registered: &self.preflight_registers,
                own: &None,
            };
            found.extend(self.problem(&report_vars, field));
        }
        let none = HashSet::new();
        for field in playbook.host_templates() {
            // The lock is taken before any step: it sees the host's variables only.
            let (seen, registered): (&dyn Lookup, _) = if field.key == "lock.dir" {
                (host, &none)
            } else {
                (&vars, &self.all_registers)
            };
            let field = Field {
                name: field.key.into(),
                source: field.text,
                is_expr: false,
                registered,
                own: &None,
            };
            found.extend(self.problem(seen, field));
        }
        found
    }

    /// Checks steps that run one after another, each seeing what the earlier ones
    /// registered; returns what they all registered.
    fn in_order(&self, steps: &'p [Step], vars: &dyn Lookup, found: &mut Vec<Problem>) -> Vars {
        let mut top = Vars::new();
        let mut registered: HashSet<&str> = HashSet::new();
        for step in steps {
            let seen = Over {
                base: vars,
                top: Cow::Borrowed(&top),
                registered: true,
            };
            self.step(step, &seen, &registered, found);
            if let Some(r) = &step.register {
                top.insert(r.clone(), self.placeholder.clone());
                registered.insert(r);
            }
        }
        top
    }

    fn step(
        &self,
        step: &Step,
        vars: &dyn Lookup,
        registered: &HashSet<&str>,
        found: &mut Vec<Problem>,
    ) {
        let vars = step.scope(vars);
        let own = step.result_scope(&vars, self.placeholder.clone());
        // As the engine renders them: the fields before the run with the step's variables,
        // the conditions on its result with those and the result.
        for field in step.templates() {
            let seen: &dyn Lookup = match field.key {
                "until" | "changed_when" | "failed_when" => &own,
                _ => &vars,
            };
            let field = Field {
                name: format!("{}.{}", step.field, field.key),
                source: field.text,
                is_expr: field.is_expr,
                registered,
                own: &step.register,
            };
            found.extend(self.problem(seen, field));
        }
    }

    /// The render error of `field` with `vars` that must stop the run, if any. Each field
    /// is judged on its own (a field that fails must not change what the next one finds),
    /// and once for all the hosts whose variables answer it alike.
    fn problem(&self, vars: &dyn Lookup, field: Field<'_>) -> Option<Problem> {
        let mut verdicts = self.verdicts.borrow_mut();
        let verdict = verdicts
            .entry(field.name.clone())
            .or_insert_with(Verdicts::new)
            .of(vars, |asked| {
                let mut rendering = self.templates.with(asked);
                let outcome = if field.is_expr {
                    rendering.eval(field.source).map(drop)
                } else {
                    rendering.render(field.source).map(drop)
                };
                let e = outcome.err()?;
                reportable(&rendering, &e, &field).then_some(e.message)
            });
        verdict.map(|message| (field.name, message))
    }
}

/// A template of the playbook as the validator judges it: where it is, and what it may
/// read besides the host's variables: the results registered so far (stood in for by
/// empty ones), and the step's own.
struct Field<'a> {
    /// Where it is, as diagnostics name it (`steps[3].shell`).
    name: String,
    source: &'a str,
    is_expr: bool,
    registered: &'a HashSet<&'a str>,
    own: &'a Option<String>,
}

/// Whether a render error must stop the run. An undefined name or bad syntax always must;
/// any other error (say `int` of an empty string, or an attribute of `from_json`) only when
/// the template does not read a registered result, directly or through the variables it
/// reads, whose real value will differ from the stand-in.
fn reportable(rendering: &Rendering<'_>, e: &TemplateError, field: &Field<'_>) -> bool {
    if e.undefined {
        return true;
    }
    let Ok(used) = rendering.variables_reached(field.source, field.is_expr) else {
        return true;
    };
    !used.iter().any(|v| {
        field.registered.contains(v.as_str()) || v == "result" || field.own.as_deref() == Some(v)
    })
}

fn host_list(hosts: &[&str], total: usize) -> String {
    if hosts.len() == total && total > 1 {
        return format!("every host ({total})");
    }
    let shown: Vec<&str> = hosts.iter().take(5).copied().collect();
    let more = hosts.len().saturating_sub(shown.len());
    let mut text = format!(
        "host{} {}",
        if hosts.len() == 1 { "" } else { "s" },
        shown.join(", ")
    );
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn problems(steps: &str, vars: serde_json::Value) -> Vec<String> {
        let text = format!("name: t\nhosts: all\nsteps:\n{steps}");
        let playbook = Playbook::parse(Path::new("pb.yml"), &text).unwrap();
        let host = HostInPlay {
            name: "h".into(),
            vars: vars.as_object().cloned().unwrap().into(),
        };
        let mut found: Vec<String> = HostCheck::new(&playbook)
            .problems_of(&host.vars)
            .into_iter()
            .map(|(field, message)| format!("{field}: {message}"))
            .collect();
        found.sort();
        found
    }

    #[test]
    fn hosts_alike_but_for_one_variable_are_told_apart_where_it_is_read() {
        // Four hosts that differ only in `dir`, read by one step's command: the verdict on
        // the other step is found once, the one on the command for each host as it is.
        let text = "name: t\nhosts: all\nsteps:\n  - name: a\n    shell: echo {{ name }}\n  - name: b\n    shell: ls {{ dir | int }}\n";
        let playbook = Playbook::parse(Path::new("pb.yml"), text).unwrap();
        let host = |name: &str, dir: serde_json::Value| HostInPlay {
            name: name.into(),
            vars: serde_json::json!({"name": "x", "dir": dir, "ansible_host": name})
                .as_object()
                .cloned()
                .unwrap()
                .into(),
        };
        let hosts = [
            host("h1", "5".into()),
            host("h2", "/srv".into()),
            host("h3", "6".into()),
            host("h4", "/srv".into()),
        ];
        let found: Vec<String> = validate(&playbook, &hosts)
            .into_iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("steps[1].shell: "), "{found:?}");
        assert!(found[0].ends_with("for hosts h2, h4"), "{found:?}");
    }

    #[test]
    fn each_field_of_a_step_is_judged_on_its_own() {
        // One step's fields share what they work out; a field that fails must not change
        // what the next one finds.
        let found = problems(
            "  - name: s\n    when: a == 1\n    shell: echo {{ missing }} {{ fine }}\n    become_user: '{{ fine }}'\n    failed_when: a == 2\n",
            serde_json::json!({"a": "{{ b }}", "b": "{{ a }}", "fine": "ok"}),
        );
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with("steps[0].failed_when: variables"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("steps[0].shell: undefined variable `missing`"),
            "{found:?}"
        );
        assert!(
            found[2].starts_with("steps[0].when: variables"),
            "{found:?}"
        );
    }
}
