//! Everything that can be checked before any host is contacted.
//!
//! Every template and condition is rendered for every selected host, with the variables
//! that host will have, so a run never stops half-way through a fleet on a typo. Results
//! that earlier steps `register` do not exist yet: they are stood in for by an empty result
//! of the same shape, and only mistakes that no output could fix (an undefined name, a
//! syntax error, an unknown filter) are reported for templates that read them.

use std::collections::{BTreeMap, HashSet};

use super::{Condition, Playbook, Step};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::registered::Registered;
use crate::template::{TemplateError, Templates};
use crate::vars::{check_name, Vars};

/// A host selected for the play, with every variable it will see.
#[derive(Debug, Clone)]
pub struct HostInPlay {
    pub name: String,
    pub vars: Vars,
}

/// Checks of the playbook alone (no inventory needed).
pub(super) fn check_structure(playbook: &Playbook) -> Vec<Diagnostic> {
    let doc = &playbook.doc;
    let mut errors = Vec::new();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for step in playbook
        .steps
        .iter()
        .chain(&playbook.rollback)
        .chain(&playbook.verify)
    {
        let field = format!("{}.name", step.field);
        if step.name.trim().is_empty() {
            errors.push(doc.error(&field, "a step needs a name"));
        } else if let Some(first) = seen.insert(&step.name, &step.field) {
            errors.push(
                doc.error(&field, format!("duplicate step name `{}`", step.name))
                    .hint(format!(
                        "{first} has the same name; names identify steps in reports and logs"
                    )),
            );
        }
        if let Some(register) = &step.register {
            if let Err(m) = check_name(register) {
                errors.push(doc.error(&format!("{}.register", step.field), m));
            }
        }
    }
    for (i, name) in playbook.secrets.iter().enumerate() {
        let registered_by = playbook
            .steps
            .iter()
            .chain(&playbook.rollback)
            .chain(&playbook.verify)
            .find(|s| s.register.as_ref() == Some(name));
        if let Some(step) = registered_by {
            errors.push(
                doc.error(
                    &format!("secrets[{i}]"),
                    format!(
                        "`{name}` is registered by step `{}`: a secret is a variable given to fleetup, known before the run, not a result a host prints",
                        step.name
                    ),
                )
                .hint("make the value the host needs a secret variable (e.g. with lookup('env', ...)); its echoes in any output are then hidden too"),
            );
        }
    }
    if playbook.gate.is_some() {
        if let Some(missing) = gate_needs(&playbook.audit) {
            errors.push(doc.error("gate", missing));
        }
    }
    if !playbook.rollback.is_empty() && playbook.point_of_no_return().is_none() {
        errors.push(
            doc.error(
                "rollback",
                "rollback steps are given but no step is marked `point_of_no_return: true`",
            )
            .hint(
                "mark the first step that changes the host, e.g. the one that stops the containers",
            ),
        );
    }
    for step in playbook.steps[..playbook.preflight_len]
        .iter()
        .chain(&playbook.rollback)
        .chain(&playbook.verify)
        .filter(|s| s.point_of_no_return)
    {
        errors.push(doc.error(
            &format!("{}.point_of_no_return", step.field),
            "point_of_no_return belongs on an upgrade step, not on a pre-flight or rollback step",
        ));
    }
    // Syntax once per template, so errors show even when no host is selected.
    let templates = Templates::new();
    for (field, template) in host_templates(playbook) {
        if let Err(e) = templates.variables_of_template(template) {
            errors.push(doc.error(field, e.message));
        }
    }
    for (column, template) in &playbook.report {
        if let Err(e) = templates.variables_of_template(template) {
            errors.push(doc.error(&format!("report.{column}"), e.message));
        }
    }
    for step in playbook
        .steps
        .iter()
        .chain(&playbook.rollback)
        .chain(&playbook.verify)
    {
        for (key, source, is_expr) in sources(step) {
            let checked = if is_expr {
                templates.variables_of_expression(source)
            } else {
                templates.variables_of_template(source)
            };
            if let Err(e) = checked {
                errors.push(doc.error(&format!("{}.{key}", step.field), e.message));
            }
        }
    }
    errors
}

/// What a promotion gate lacks to compare versions, if anything: it reads the staged hosts'
/// version now (`audit.from`, after the pre-flight) and the version a run goes to
/// (`audit.to`).
pub fn gate_needs(audit: &super::AuditSection) -> Option<&'static str> {
    match (&audit.from, &audit.to) {
        (Some(_), Some(_)) => None,
        _ => Some(
            "a promotion gate compares versions: the playbook needs `audit.from` (a host's version, read by its pre-flight) and `audit.to` (the version it goes to)",
        ),
    }
}

/// Checks the playbook against the hosts in play: required variables, and every template
/// and condition rendered for every host. Problems shared by many hosts are reported once.
pub fn validate(playbook: &Playbook, hosts: &[HostInPlay]) -> Vec<Diagnostic> {
    let doc = &playbook.doc;
    let templates = Templates::new();
    let mut errors = Vec::new();
    let mut unset = Vec::new();
    for (i, name) in playbook.secrets.iter().enumerate() {
        // A misspelt secret would leave the real one in the clear.
        if !hosts.is_empty() && !hosts.iter().any(|h| h.vars.contains_key(name)) {
            let known = hosts.iter().flat_map(|h| h.vars.keys().map(String::as_str));
            let mut d = doc.error(
                &format!("secrets[{i}]"),
                format!("secret `{name}` is not a variable of any host in play"),
            );
            d.hint = did_you_mean(name, known).or_else(|| {
                Some("define it in the playbook's vars, the inventory or with -e".into())
            });
            errors.push(d);
        }
    }
    for (i, name) in playbook.required_vars.iter().enumerate() {
        let missing: Vec<&str> = hosts
            .iter()
            .filter(|h| h.vars.get(name).is_none_or(|v| v.is_null() || v == ""))
            .map(|h| h.name.as_str())
            .collect();
        if !missing.is_empty() {
            unset.push(format!("undefined variable `{name}`"));
            errors.push(
                doc.error(
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
    // The report is rendered after the pre-flight: it sees the pre-flight's registers.
    let preflight_registers: HashSet<&str> = playbook.steps[..playbook.preflight_len]
        .iter()
        .filter_map(|s| s.register.as_deref())
        .collect();
    let all_registers: HashSet<&str> = playbook
        .steps
        .iter()
        .filter_map(|s| s.register.as_deref())
        .collect();
    // (field, message) -> hosts, to say a problem once for all the hosts that share it.
    let mut problems: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for host in hosts {
        let placeholder = Registered::default().to_value();
        let mut vars = host.vars.clone();
        let mut registered: HashSet<&str> = HashSet::new();
        let mut check = |step: &Step, vars: &mut Vars, registered: &HashSet<&str>| {
            let vars = step.scope(vars);
            // A step's own checks see its result as `result` and under its register name.
            let mut own = vars.as_ref().clone();
            own.insert("result".into(), placeholder.clone());
            if let Some(r) = &step.register {
                own.insert(r.clone(), placeholder.clone());
            }
            for (key, source, is_expr) in sources(step) {
                let scope = if matches!(key, "until" | "changed_when" | "failed_when") {
                    &own
                } else {
                    &*vars
                };
                let outcome = if is_expr {
                    templates.eval(source, scope).map(drop)
                } else {
                    templates.render(source, scope).map(drop)
                };
                if let Err(e) = outcome {
                    let reads = Reads {
                        registered,
                        own: &step.register,
                        vars: scope,
                    };
                    if reportable(&templates, &e, source, is_expr, &reads) {
                        let field = format!("{}.{key}", step.field);
                        problems
                            .entry((field, e.message))
                            .or_default()
                            .push(&host.name);
                    }
                }
            }
        };
        for step in &playbook.steps {
            check(step, &mut vars, &registered);
            if let Some(r) = &step.register {
                vars.insert(r.clone(), placeholder.clone());
                registered.insert(r);
            }
        }
        // A rollback may run after any step failed, so it sees every register; a step that
        // did not run registers `skipped: true` (as in Ansible).
        for step in &playbook.rollback {
            check(step, &mut vars, &all_registers);
        }
        // Verification runs on its own connection during a pause: the host's variables and
        // its own registers only.
        let mut verify_vars = host.vars.clone();
        let mut verify_registered: HashSet<&str> = HashSet::new();
        for step in &playbook.verify {
            check(step, &mut verify_vars, &verify_registered);
            if let Some(r) = &step.register {
                verify_vars.insert(r.clone(), placeholder.clone());
                verify_registered.insert(r);
            }
        }
        let mut report_vars = host.vars.clone();
        for r in &preflight_registers {
            report_vars.insert(r.to_string(), placeholder.clone());
        }
        for (column, template) in &playbook.report {
            if let Err(e) = templates.render(template, &report_vars) {
                let reads = Reads {
                    registered: &preflight_registers,
                    own: &None,
                    vars: &report_vars,
                };
                if reportable(&templates, &e, template, false, &reads) {
                    problems
                        .entry((format!("report.{column}"), e.message))
                        .or_default()
                        .push(&host.name);
                }
            }
        }
        for (field, template) in host_templates(playbook) {
            // The lock is taken before any step: it sees the host's variables only.
            let (scope, registers) = if field == "lock.dir" {
                (&host.vars, &HashSet::new())
            } else {
                (&vars, &all_registers)
            };
            if let Err(e) = templates.render(template, scope) {
                let reads = Reads {
                    registered: registers,
                    own: &None,
                    vars: scope,
                };
                if reportable(&templates, &e, template, false, &reads) {
                    problems
                        .entry((field.into(), e.message))
                        .or_default()
                        .push(&host.name);
                }
            }
        }
    }
    for ((field, message), failing) in problems {
        // A missing required variable was said once already; not again at every use.
        if unset.iter().any(|u| message.starts_with(u.as_str())) {
            continue;
        }
        errors.push(doc.error(
            &field,
            format!("{message}, for {}", host_list(&failing, hosts.len())),
        ));
    }
    errors.sort_by_key(|d| (d.line, d.column));
    errors
}

/// The playbook's templates about a whole host rather than one step, by field.
fn host_templates(playbook: &Playbook) -> Vec<(&'static str, &str)> {
    [
        ("failure_note", playbook.failure_note.as_deref()),
        ("lock.dir", playbook.lock.as_ref().map(|l| l.dir.as_str())),
        ("audit.from", playbook.audit.from.as_deref()),
        ("audit.to", playbook.audit.to.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, t)| t.map(|t| (field, t)))
    .collect()
}

/// What a template may read besides the host's variables: the results registered so far
/// (stood in for by empty ones), and the step's own.
struct Reads<'a> {
    registered: &'a HashSet<&'a str>,
    own: &'a Option<String>,
    vars: &'a Vars,
}

/// Whether a render error must stop the run. An undefined name or bad syntax always must;
/// any other error (say `int` of an empty string, or an attribute of `from_json`) only when
/// the template does not read a registered result, directly or through the variables it
/// reads, whose real value will differ from the stand-in.
fn reportable(
    templates: &Templates,
    e: &TemplateError,
    source: &str,
    is_expr: bool,
    reads: &Reads<'_>,
) -> bool {
    if e.undefined {
        return true;
    }
    let Ok(used) = templates.variables_reached(source, is_expr, reads.vars) else {
        return true;
    };
    !used.iter().any(|v| {
        reads.registered.contains(v.as_str()) || v == "result" || reads.own.as_deref() == Some(v)
    })
}

/// The templates of a step: (key, text, is a bare expression).
fn sources(step: &Step) -> Vec<(&'static str, &str, bool)> {
    let mut out = vec![("shell", step.shell.as_str(), false)];
    for (key, cond) in [
        ("when", &step.when),
        ("until", &step.until),
        ("changed_when", &step.changed_when),
        ("failed_when", &step.failed_when),
    ] {
        if let Some(Condition::Expr(e)) = cond {
            out.push((key, e.as_str(), true));
        }
    }
    if let Some(user) = &step.become_user {
        out.push(("become_user", user.as_str(), false));
    }
    out
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
