//! Unit tests of playbooks, compiled only under #[cfg(test)] (see mod.rs).

use std::path::Path;

use serde_json::json;

use super::*;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::play::{validate, HostInPlay};

fn parse(text: &str) -> Result<Playbook, Diagnostics> {
    Playbook::parse(Path::new("pb.yml"), text)
}

/// The only error of a text, which must fail.
fn only_error(text: &str) -> Diagnostic {
    let errors = parse(text).unwrap_err().0;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.into_iter().next().unwrap()
}

const GOOD: &str = "\
name: demo
hosts: all
vars:
  app: /opt/sl
required_vars: [target]
rollout:
  serial: [1, 5, \"25%\"]
  canary: 1
  max_fail_percentage: 10
  order: sorted
  forks: 20
timeout: 2m
steps:
  - name: read
    shell: cat {{ app | quote }}/.env
    register: current
    changed_when: false
  - name: change
    shell: echo {{ target }} {{ current.stdout }}
    when: current.stdout != target
    point_of_no_return: true
    retries: 2
    delay: 1
    until: result.rc == 0
    timeout: 90
rollback:
  - name: undo
    shell: echo back to {{ current.stdout }}
";

fn host(name: &str, vars: serde_json::Value) -> HostInPlay {
    HostInPlay {
        name: name.into(),
        vars: vars.as_object().cloned().unwrap().into(),
    }
}

#[test]
fn a_good_playbook_parses_with_defaults_filled_in() {
    let pb = parse(GOOD).unwrap();
    assert_eq!(pb.name, "demo");
    assert_eq!(pb.steps.len(), 2);
    assert_eq!(
        pb.steps[0].timeout,
        Duration::from_secs(120),
        "playbook timeout"
    );
    assert_eq!(pb.steps[1].timeout, Duration::from_secs(90));
    assert_eq!(pb.steps[1].retries, 2);
    assert_eq!(pb.steps[1].delay, Duration::from_secs(1));
    assert_eq!(pb.steps[0].changed_when, Some(Condition::Always(false)));
    assert_eq!(pb.point_of_no_return(), Some(1));
    assert_eq!(pb.rollout.forks, Some(Forks(20)));
    assert_eq!(pb.rollout.order, Some(Order::Sorted));
    assert_eq!(pb.rollout.canary, Some(Canary::First(1)));
    let hosts = [host("h1", json!({"app": "/opt/sl", "target": "v2"}))];
    assert!(validate(&pb, &hosts).is_empty());
}

#[test]
fn until_without_retries_tries_three_times() {
    let pb = parse(
        "name: x\nhosts: all\nsteps:\n  - name: a\n    shell: 'true'\n    until: result.rc == 0\n",
    )
    .unwrap();
    assert_eq!(pb.steps[0].retries, 3);
}

#[test]
fn unknown_keys_are_placed_with_suggestions() {
    let e = only_error("name: x\nhosts: all\nsteps:\n  - name: a\n    shel: 'true'\n");
    assert_eq!(e.field, "steps[0].shel");
    assert_eq!((e.line, e.column), (5, 5));
    assert_eq!(e.message, "unknown key");
    assert_eq!(e.hint.as_deref(), Some("did you mean `shell`?"));

    let e = only_error("name: x\nhosts: all\nrolout: {}\nsteps:\n  - {name: a, shell: 'true'}\n");
    assert_eq!(e.field, "rolout");
    assert_eq!(e.line, 3);
    assert_eq!(e.hint.as_deref(), Some("did you mean `rollout`?"));

    let e = only_error("name: x\nhosts: all\nrollout:\n  max_fail_percent: 5\nsteps:\n  - {name: a, shell: 'true'}\n");
    assert_eq!(e.field, "rollout.max_fail_percent");
    assert_eq!(e.line, 4);
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean `max_fail_percentage`?")
    );
}

#[test]
fn wrong_types_are_placed() {
    let e = only_error(
        "name: x\nhosts: all\nsteps:\n  - name: a\n    shell: 'true'\n    retries: many\n",
    );
    assert_eq!(e.field, "steps[0].retries");
    assert_eq!(e.line, 6);
    assert!(e.message.contains("invalid type"), "{}", e.message);

    let e = only_error(
        "name: x\nhosts: all\nsteps:\n  - name: a\n    shell: 'true'\n    timeout: soon\n",
    );
    assert_eq!(e.field, "steps[0].timeout");
    assert_eq!(e.line, 6);
    assert!(e.message.contains("a duration is seconds"), "{}", e.message);

    let e = only_error(
        "name: x\nhosts: all\nrollout: {forks: 0}\nsteps:\n  - {name: a, shell: 'true'}\n",
    );
    assert_eq!(e.field, "rollout.forks");
    assert_eq!(e.line, 3);
    assert!(
        e.message.contains("forks must be 1 or more"),
        "{}",
        e.message
    );

    let e = only_error("name: x\nsteps:\n  - {name: a, shell: 'true'}\n");
    assert!(e.message.contains("missing field `hosts`"), "{}", e.message);
}

#[test]
fn serial_of_zero_or_over_a_hundred_percent() {
    let e = only_error(
        "name: x\nhosts: all\nrollout:\n  serial: [1, 0]\nsteps:\n  - {name: a, shell: 'true'}\n",
    );
    assert_eq!(e.field, "rollout.serial");
    assert_eq!(e.line, 4);
    assert!(
        e.message.contains("serial `0` would never start a host"),
        "{}",
        e.message
    );

    let e = only_error(
        "name: x\nhosts: all\nrollout:\n  serial: \"150%\"\nsteps:\n  - {name: a, shell: 'true'}\n",
    );
    assert_eq!(e.field, "rollout.serial");
    assert!(e.message.contains("at most 100%"), "{}", e.message);
}

#[test]
fn duplicate_step_names() {
    let e = only_error(
        "name: x\nhosts: all\nsteps:\n  - {name: a, shell: 'true', point_of_no_return: true}\nrollback:\n  - name: a\n    shell: 'true'\n",
    );
    assert_eq!(e.field, "rollback[0].name");
    assert_eq!((e.line, e.column), (6, 11));
    assert!(
        e.message.contains("duplicate step name `a`"),
        "{}",
        e.message
    );
}

#[test]
fn rollback_needs_a_point_of_no_return() {
    let e = only_error("name: x\nhosts: all\nsteps:\n  - {name: a, shell: 'true'}\nrollback:\n  - {name: b, shell: 'true'}\n");
    assert_eq!(e.field, "rollback");
    assert_eq!(e.line, 6);
}

#[test]
fn template_syntax_errors_are_found_without_hosts() {
    let e = only_error("name: x\nhosts: all\nsteps:\n  - name: a\n    shell: echo {{ x\n");
    assert_eq!(e.field, "steps[0].shell");
    assert_eq!(e.line, 5);
    assert!(e.message.starts_with("syntax error"), "{}", e.message);

    let e = only_error(
        "name: x\nhosts: all\nsteps:\n  - name: a\n    shell: 'true'\n    when: \"{{ x }}\"\n",
    );
    assert!(e.message.contains("bare expression"), "{}", e.message);
}

#[test]
fn a_list_of_plays_is_explained() {
    let e = only_error("- name: x\n  hosts: all\n");
    assert!(e.message.contains("one play"), "{}", e.message);
}

#[test]
fn undefined_variables_per_host_with_line() {
    let pb = parse(GOOD).unwrap();
    let hosts = [
        host("h1", json!({"app": "/a", "target": "v2"})),
        host("h2", json!({"ap": "/a", "target": "v2"})),
    ];
    let errors = validate(&pb, &hosts);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "steps[0].shell");
    assert_eq!((errors[0].line, errors[0].column), (15, 12));
    assert_eq!(
        errors[0].message,
        "undefined variable `app` (did you mean `ap`?), for host h2"
    );
}

#[test]
fn registers_exist_only_after_their_step() {
    let pb = parse(
        "name: x\nhosts: all\nsteps:\n  - name: early\n    shell: echo {{ later.stdout }}\n  - name: late\n    shell: 'true'\n    register: later\n",
    )
    .unwrap();
    let errors = validate(&pb, &[host("h", json!({}))]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "steps[0].shell");
    assert!(errors[0].message.starts_with("undefined variable `later`"));
}

#[test]
fn missing_required_variable_is_said_once() {
    let pb = parse(GOOD).unwrap();
    let hosts = [
        host("h1", json!({"app": "/a"})),
        host("h2", json!({"app": "/a", "target": ""})),
        host("h3", json!({"app": "/a", "target": "v2"})),
    ];
    let errors = validate(&pb, &hosts);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "required_vars[0]");
    assert_eq!((errors[0].line, errors[0].column), (5, 17));
    assert_eq!(
        errors[0].message,
        "required variable `target` is not set for hosts h1, h2"
    );
    assert_eq!(
        errors[0].hint.as_deref(),
        Some("pass it with -e target=VALUE, or set it in the inventory")
    );
}

#[test]
fn errors_that_depend_on_registered_output_wait_for_the_run() {
    // `int` of the stand-in's empty stdout could fail; the real output decides.
    let pb = parse(
        "name: x\nhosts: all\nsteps:\n  - name: a\n    shell: 'true'\n    register: n\n  - name: b\n    shell: echo {{ (n.stdout | int) + 1 }}\n    failed_when: (result.stdout | int) > 3\n",
    )
    .unwrap();
    assert!(validate(&pb, &[host("h", json!({}))]).is_empty());
}

#[test]
fn preview_renders_with_stand_ins() {
    let pb = parse(GOOD).unwrap();
    let lines = pb.preview(&host("h1", json!({"app": "/opt/a b", "target": "v2"})).vars);
    assert_eq!(lines[0], "read: cat '/opt/a b'/.env");
    assert_eq!(
        lines[1],
        "change: echo v2 <current.stdout>  [when: current.stdout != target]  [point of no return]"
    );
}

#[test]
fn lock_and_audit_sections() {
    let pb = parse(&format!(
        "{GOOD}lock:\n  dir: \"{{{{ app }}}}/.fleetup\"\n  stale_after: 2h\naudit:\n  from: \"{{{{ current.stdout }}}}\"\n  to: \"{{{{ target }}}}\"\n"
    ))
    .unwrap();
    let lock = pb.lock.as_ref().unwrap();
    assert_eq!(lock.dir, "{{ app }}/.fleetup");
    assert_eq!(lock.stale_after.0, Duration::from_secs(7200));
    assert_eq!(pb.audit.to.as_deref(), Some("{{ target }}"));
    let h = host("web1", json!({"app": "/opt/sl", "target": "v2"}));
    assert!(validate(&pb, std::slice::from_ref(&h)).is_empty());

    // The lock is taken before any step: it cannot read what a step registers.
    let early = parse(&format!(
        "{GOOD}lock:\n  dir: \"{{{{ current.stdout }}}}\"\n"
    ))
    .unwrap();
    let errors = validate(&early, &[h]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "lock.dir");
    assert!(
        errors[0].message.contains("current"),
        "{}",
        errors[0].message
    );

    let default = parse(&format!("{GOOD}lock:\n  dir: /var/lib/fleetup\n")).unwrap();
    assert_eq!(
        default.lock.unwrap().stale_after.0,
        Duration::from_secs(6 * 3600)
    );
    let typo = only_error(&format!("{GOOD}lock:\n  dir: /x\n  stale: 1h\n"));
    assert_eq!(typo.field, "lock.stale");
}

#[test]
fn staged_rollout_settings_parse() {
    let text = format!(
        "{GOOD}audit:\n  from: \"{{{{ current.stdout }}}}\"\n  to: \"{{{{ target }}}}\"\n\
         gate:\n  require_staged: staging\n\
         window: [\"sat,sun 02:00-05:00 Europe/Paris\", \"mon-fri 23:00-01:00 UTC\"]\n\
         verify:\n  - name: health\n    shell: curl -fsS http://127.0.0.1:7777/health\n"
    )
    .replace(
        "  forks: 20\n",
        "  forks: 20\n  pause_after_canary: prompt\n  pause_between_batches: 90s\n",
    );
    let pb = parse(&text).unwrap();
    assert_eq!(pb.rollout.pause_after_canary, Some(Pause::Prompt));
    assert_eq!(
        pb.rollout.pause_between_batches,
        Some(Pause::For(Duration::from_secs(90)))
    );
    let gate = pb.gate.unwrap();
    assert_eq!(gate.require_staged, "staging");
    assert_eq!(gate.soak, default_soak());
    assert_eq!(
        pb.windows.to_string(),
        "sat,sun 02:00-05:00 Europe/Paris; mon-fri 23:00-01:00 UTC"
    );
    assert_eq!(pb.verify.len(), 1);
    assert_eq!(pb.verify[0].changed_when, Some(Condition::Always(false)));
}

#[test]
fn a_bad_window_pause_or_gate_is_named_with_its_line() {
    let e = only_error(&format!("{GOOD}window: sat 02:00-05:00 Mars/Olympus\n"));
    assert_eq!(e.field, "window");
    assert_eq!(e.line, 29);
    assert!(
        e.message.contains("`Mars/Olympus` is not a time zone"),
        "{e:?}"
    );
    let e = only_error(&GOOD.replace(
        "  forks: 20\n",
        "  forks: 20\n  pause_between_batches: soon\n",
    ));
    assert!(e.message.contains("`prompt`"), "{e:?}");
    let e = only_error(&format!("{GOOD}gate:\n  require_staged: staging\n"));
    assert_eq!(e.field, "gate");
    assert!(e.message.contains("audit.to"), "{e:?}");
}

#[test]
fn secrets_must_name_variables_not_registers() {
    let e = only_error(
        "name: x\nhosts: all\nsecrets: [out]\nsteps:\n  - name: a\n    shell: 'true'\n    register: out\n",
    );
    assert_eq!(e.field, "secrets[0]");
    assert!(
        e.message.contains("registered by step `a`"),
        "{}",
        e.message
    );
    let pb = parse(
        "name: x\nhosts: all\nsecrets: [db_pasword]\nsteps:\n  - name: a\n    shell: echo {{ db_password | quote }}\n",
    )
    .unwrap();
    assert_eq!(pb.secrets, ["db_pasword"]);
    let errors = validate(&pb, &[host("h", json!({"db_password": "x"}))]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "secrets[0]");
    assert_eq!(
        errors[0].message,
        "secret `db_pasword` is not a variable of any host in play"
    );
    assert!(errors[0].hint.as_deref().unwrap().contains("db_password"));
}
