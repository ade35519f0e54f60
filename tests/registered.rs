//! What a step registers, read back by every kind of template a run renders: through the
//! built `fleetup run` against the test fleet, proven from what the host itself ran.
//!
//! A registered result carries Ansible's line lists (`stdout_lines`, `stderr_lines`): the
//! output split at its line ends, its final newline gone, an empty output no line at all.
//! Whoever reads them, a later step, the step's own conditions, a variable, the pre-flight's
//! findings at the host's turn, the rollback, the failure note, the audit line, or a
//! template that takes the whole result (`tojson`, `.get`, a subscript, an alias), sees
//! exactly those lists; and a playbook that reads only `stdout` and `rc` runs as before.
//! Each playbook is written so that a result missing its lists would run something else.

mod fleet;
mod fleetup_cli;

use std::path::{Path, PathBuf};

use fleet::{Fleet, Spec};
use fleetup_cli::{audit, cli, s, since, spawn_run, strings, Finished};
use serde_json::Value;

const HOST: &str = "p-01";

fn one_host() -> Fleet {
    Fleet::start(Spec::new().group("prod", "p", 1, "v4.65.0"))
}

/// Writes `text` as `<tmp>/play/<name>.yml` (beside it, `host_vars/` and `vars_files`).
fn playbook(fleet: &Fleet, name: &str, text: &str) -> PathBuf {
    let dir = fleet.tmp().join("play");
    std::fs::create_dir_all(&dir).expect("the playbook's folder");
    let path = dir.join(format!("{name}.yml"));
    std::fs::write(&path, text).expect("write the playbook");
    path
}

/// The commands the host ran in its sessions from `t` on, as fleetup rendered them: each
/// session's first line is fleetup's own (the process group's report), the rest the step's.
fn ran_since(fleet: &Fleet, t: f64) -> Vec<String> {
    since(fleet, HOST, t)
        .into_iter()
        .filter(|c| c.kind == "session" && c.ev == "start")
        .map(|c| match c.cmd.split_once('\n') {
            Some((_, step)) => step.to_string(),
            None => c.cmd,
        })
        .collect()
}

fn ran(fleet: &Fleet) -> Vec<String> {
    ran_since(fleet, 0.0)
}

/// Runs `playbook` (with extra arguments) to its end, which must be `code`.
fn run(fleet: &Fleet, playbook: &Path, extra: &[&str], code: i32) -> Finished {
    let finished = spawn_run(fleet, playbook, extra).wait();
    finished.assert_exit(code);
    finished
}

/// Each finished step of the host: (name, status, attempts).
fn steps(finished: &Finished) -> Vec<(String, String, u64)> {
    let of_host = finished.of("step_finished").into_iter();
    let of_host = of_host.filter(|e| e["host"] == HOST);
    of_host
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            let attempts = e["attempts"].as_u64().unwrap_or_default();
            (text(&e["name"]), text(&e["status"]), attempts)
        })
        .collect()
}

fn step(name: &str, status: &str, attempts: u64) -> (String, String, u64) {
    (name.to_string(), status.to_string(), attempts)
}

/// A shell line that counts its runs in "$FLEET_HOST_DIR/<file>" and prints as many
/// lines as it has run times (`<file><run>-<i>`), as a step's YAML block.
fn growing(file: &str) -> String {
    format!(
        "|\n      n=$(cat \"$FLEET_HOST_DIR/{file}\" 2>/dev/null || echo 0); n=$((n + 1))\n      \
         echo $n > \"$FLEET_HOST_DIR/{file}\"\n      \
         i=1; while [ $i -le $n ]; do echo {file}$n-$i; i=$((i + 1)); done"
    )
}

#[test]
fn a_later_step_reads_the_stdout_and_stderr_lines_as_ansible_splits_them() {
    let fleet = one_host();
    let pb = playbook(
        &fleet,
        "lines",
        r#"
name: t
hosts: all
steps:
  - name: three lines
    shell: printf 'a\nb\nc\n'
    register: out
  - name: to stderr
    shell: printf 'x\n\ny\n' >&2
    register: err
  - name: crlf and no final newline
    shell: printf 'p\r\nq'
    register: crlf
  - name: nothing
    shell: 'true'
    register: empty
  - name: count and index
    shell: echo {{ out.stdout_lines | length }} {{ out.stdout_lines[1] }}
  - name: stderr lines
    shell: echo {{ err.stderr_lines | length }} {{ err.stderr_lines | join('+') }} {{ err.stdout_lines | length }}
  - name: loop
    shell: echo {% for line in out.stdout_lines %}{{ loop.index }}={{ line }},{% endfor %}
  - name: negative index and last
    shell: echo {{ out.stdout_lines[-1] }} {{ out.stdout_lines | last }} {{ out.stdout_lines | first }}
  - name: odd outputs
    shell: echo {{ crlf.stdout_lines | join('+') }} {{ empty.stdout_lines | length }} {{ empty.stderr_lines | length }}
  - name: in a test
    shell: echo {{ 'b' in out.stdout_lines }} {{ 'x' in err.stderr_lines }} {{ '' in err.stderr_lines }}
"#,
    );
    run(&fleet, &pb, &[], 0);
    assert_eq!(
        ran(&fleet),
        [
            r"printf 'a\nb\nc\n'",
            r"printf 'x\n\ny\n' >&2",
            r"printf 'p\r\nq'",
            "true",
            "echo 3 b",
            "echo 3 x++y 0",
            "echo 1=a,2=b,3=c,",
            "echo c c a",
            "echo p+q 0 0",
            "echo True True True",
        ]
    );
}

#[test]
fn a_steps_own_conditions_read_its_lines() {
    let fleet = one_host();
    let text = format!(
        r#"
name: t
hosts: all
steps:
  - name: tolerated
    shell: printf 'a\nb\n'; exit 3
    register: tol
    failed_when: result.stdout_lines[0] != 'a' or tol.stdout_lines | length != 2
  - name: grow
    shell: {grow}
    register: grown
    retries: 5
    delay: 0
    until: result.stdout_lines | length == 2
  - name: one line
    shell: echo one
    changed_when: result.stdout_lines | length > 1
  - name: two lines
    shell: printf 'one\ntwo\n'
    changed_when: result.stdout_lines | length > 1
  - name: runs
    when: tol.stdout_lines | length == 2
    shell: echo runs
  - name: skipped
    when: tol.stdout_lines | length != 2
    shell: echo skipped
  - name: after
    shell: echo {{{{ tol.rc }}}} {{{{ tol.failed }}}} {{{{ grown.attempts }}}} {{{{ grown.stdout_lines | join(',') }}}}
"#,
        grow = growing("grow")
    );
    let pb = playbook(&fleet, "conditions", &text);
    let finished = run(&fleet, &pb, &[], 0);
    let ran = ran(&fleet);
    assert_eq!(ran[0], r"printf 'a\nb\n'; exit 3");
    assert!(ran[1].contains("while [ $i -le $n ]"), "{ran:?}");
    assert_eq!(ran[1], ran[2], "grow ran twice, until it printed two lines");
    assert_eq!(
        ran[3..],
        [
            "echo one",
            r"printf 'one\ntwo\n'",
            "echo runs",
            "echo 3 False 2 grow2-1,grow2-2"
        ]
    );
    assert_eq!(
        steps(&finished),
        [
            step("tolerated", "changed", 1),
            step("grow", "changed", 2),
            step("one line", "ok", 1),
            step("two lines", "changed", 1),
            step("runs", "changed", 1),
            step("skipped", "skipped", 0),
            step("after", "changed", 1),
        ]
    );
}

#[test]
fn a_condition_that_reads_the_lines_fails_the_host() {
    let fleet = one_host();
    let failed_when = playbook(
        &fleet,
        "failed_when",
        r#"
name: t
hosts: all
steps:
  - name: exits zero
    shell: printf 'ok\nbad\n'
    failed_when: "'bad' in result.stdout_lines"
  - name: never
    shell: echo never
"#,
    );
    let t = fleetup_cli::now();
    let finished = run(&fleet, &failed_when, &[], 2);
    assert_eq!(finished.outcome(HOST), "failed");
    assert_eq!(finished.host_finished(HOST)["failed_step"], "exits zero");
    assert_eq!(ran_since(&fleet, t), [r"printf 'ok\nbad\n'"]);

    // An `until` that no result with its one line meets: every retry, then the failure.
    let until = playbook(
        &fleet,
        "until",
        r#"
name: t
hosts: all
steps:
  - name: one line
    shell: echo only
    retries: 2
    delay: 0
    until: result.stdout_lines | length == 0
  - name: never
    shell: echo never
"#,
    );
    let t = fleetup_cli::now();
    let finished = run(&fleet, &until, &[], 2);
    assert_eq!(finished.outcome(HOST), "failed");
    assert_eq!(steps(&finished), [step("one line", "failed", 3)]);
    assert_eq!(ran_since(&fleet, t), ["echo only"; 3]);
}

#[test]
fn the_whole_result_reads_as_ansibles_mapping_with_its_lines() {
    let fleet = one_host();
    let pb = playbook(
        &fleet,
        "whole",
        r#"
name: t
hosts: all
steps:
  - name: lines
    shell: printf 'a\nb\nc\n'; printf 'w\n' >&2
    register: out
  - name: tojson
    shell: printf %s {{ out | tojson | quote }}
  - name: printed bare
    shell: printf %s {{ out | string | quote }}
  - name: get and subscript
    shell: echo {{ out.get('stdout_lines') | join(',') }} {{ out['stdout_lines'][1] }} {{ out.get('stderr_lines')[0] }} {{ out['stderr_lines'] | length }}
  - name: computed key and attr
    shell: echo {{ out['stdout' ~ '_lines'] | length }} {{ (out | attr('stdout_lines'))[2] }}
  - name: keys and length
    shell: echo {{ out | length }} {{ out.keys() | join(',') }}
  - name: items
    shell: echo {% for k, v in out.items() %}{% if k.endswith('_lines') %}{{ k }}={{ v | join('+') }};{% endif %}{% endfor %}
  - name: alias
    shell: echo {% set o = out %}{{ o.stdout_lines[0] }} {% set l = out.stdout_lines %}{{ l[2] }}
  - name: macro
    shell: '{% macro second(r) %}{{ r.stdout_lines[1] }}{% endmacro %}echo {{ second(out) }}'
  - name: map attribute
    shell: echo {{ [out] | map(attribute='stdout_lines') | first | join('') }}
"#,
    );
    run(&fleet, &pb, &[], 0);
    // Templates see a mapping's keys in name order (minijinja's maps are sorted), and
    // Python's spellings when it is printed bare.
    let json = concat!(
        r#"{"attempts": 1, "changed": true, "failed": false, "rc": 0, "skipped": false, "#,
        r#""stderr": "w", "stderr_lines": ["w"], "stdout": "a\nb\nc", "#,
        r#""stdout_lines": ["a", "b", "c"]}"#,
    );
    let bare = concat!(
        r"{'attempts': 1, 'changed': True, 'failed': False, 'rc': 0, 'skipped': False, ",
        r"'stderr': 'w', 'stderr_lines': ['w'], 'stdout': 'a\nb\nc', ",
        r"'stdout_lines': ['a', 'b', 'c']}",
    );
    assert_eq!(
        ran(&fleet)[1..],
        [
            format!("printf %s {}", fleet::sh_quote(json)),
            format!("printf %s {}", fleet::sh_quote(bare)),
            "echo a,b,c b w 1".into(),
            "echo 3 c".into(),
            "echo 9 attempts,changed,failed,rc,skipped,stderr,stderr_lines,stdout,stdout_lines"
                .into(),
            "echo stderr_lines=w;stdout_lines=a+b+c;".into(),
            "echo a c".into(),
            "echo b".into(),
            "echo abc".into(),
        ]
    );
}

#[test]
fn variables_whose_templates_read_the_lines_see_them() {
    let fleet = one_host();
    let dir = fleet.tmp().join("play");
    std::fs::create_dir_all(dir.join("host_vars")).expect("host_vars");
    std::fs::write(
        dir.join("host_vars").join(format!("{HOST}.yml")),
        "h: \"{{ out.stdout_lines[0] }}\"\n",
    )
    .expect("host vars");
    std::fs::write(
        dir.join("more.yml"),
        "f: \"{{ out.stderr_lines | join('+') }}\"\n",
    )
    .expect("vars file");
    let pb = playbook(
        &fleet,
        "vars",
        r#"
name: t
hosts: all
vars_files: [more.yml]
vars:
  n: "{{ out.stdout_lines | length }}"
  kept: "{{ out.stdout_lines }}"
  alias: "{{ out }}"
steps:
  - name: lines
    shell: printf 'a\nb\nc\n'; printf 'v\nw\n' >&2
    register: out
  - name: playbook vars
    shell: echo {{ n }} {{ kept[1] }} {{ kept | length }} {{ alias.stdout_lines[2] }} {{ alias['stderr_lines'][0] }}
  - name: step vars
    vars:
      second: "{{ out.stdout_lines[1] }}"
      both: "{{ out.stdout_lines + out.stderr_lines }}"
    shell: echo {{ second }} {{ both | join('') }}
  - name: inventory, vars file and -e
    shell: echo {{ h }} {{ f }} {{ m }}
"#,
    );
    run(
        &fleet,
        &pb,
        &["-e", r#"{"m": "{{ out.stdout_lines[2] }}"}"#],
        0,
    );
    assert_eq!(
        ran(&fleet)[1..],
        ["echo 3 b 3 c v", "echo b abcvw", "echo a v+w c"]
    );
}

#[test]
fn what_the_preflight_found_is_read_at_the_hosts_turn() {
    let fleet = one_host();
    let text = |recheck: &str| {
        format!(
            r#"
name: t
hosts: all
preflight:
  - name: probe
    shell: echo same
  - name: found
    register: found
    shell: {found}
{recheck}
report:
  lines: "{{{{ found.stdout_lines | join('/') }}}}"
steps:
  - name: use
    shell: echo {{{{ found.stdout_lines | length }}}} {{{{ found.stdout_lines | last }}}} {{{{ found.stderr_lines | join('+') }}}}
"#,
            found = growing("found") + "\n      printf 'warn\\nmore\\n' >&2",
        )
    };
    let found_runs = |t: f64| {
        let runs = ran_since(&fleet, t).into_iter();
        runs.filter(|c| c.contains("found$n")).count()
    };

    // With `recheck`, only the probe runs again at the host's turn: the pre-flight's own
    // findings, kept since, are what the step reads.
    let kept = playbook(
        &fleet,
        "kept",
        &text("recheck:\n  step: probe\n  within: 10m"),
    );
    run(&fleet, &kept, &[], 0);
    assert_eq!(found_runs(0.0), 1, "{:?}", ran(&fleet));
    // The probe rides in the step's command, which runs after it (`-c 'STEP'`).
    let last = ran(&fleet).pop().expect("the step ran");
    assert!(last.contains("'echo 1 found1-1 warn+more'"), "{last}");

    // Without it the whole pre-flight runs again at the turn, and the step reads that.
    let t = fleetup_cli::now();
    let again = playbook(&fleet, "again", &text(""));
    run(&fleet, &again, &[], 0);
    assert_eq!(found_runs(t), 2, "{:?}", ran_since(&fleet, t));
    let last = ran(&fleet).pop().expect("the step ran");
    assert_eq!(last, "echo 3 found3-3 warn+more");

    // `fleetup status` shows the report's columns, which read the pre-flight's lines.
    let mut args = strings(&["status", "-i"]);
    args.push(s(&fleet.inventory_path()));
    args.push("--playbook".into());
    args.push(s(&kept));
    args.push("--known-hosts".into());
    args.push(s(&fleet.known_hosts_path()));
    let status = cli(&args);
    let printed = fleet::stdout(&status);
    assert!(
        status.status.success(),
        "{printed}{}",
        fleet::stderr(&status)
    );
    assert!(
        printed.contains("found4-1/found4-2/found4-3/found4-4"),
        "{printed}"
    );
}

#[test]
fn the_rollback_the_failure_note_and_the_audit_line_read_the_lines() {
    let fleet = one_host();
    let pb = playbook(
        &fleet,
        "rollback",
        r#"
name: t
hosts: all
lock:
  dir: "{{ fleetup_dir }}"
audit:
  from: "{{ out.stdout_lines[0] }}"
  to: "{{ out.stdout_lines | length }}-{{ out.stderr_lines | join('+') }}"
failure_note: "note {{ out.stdout_lines[2] }}"
steps:
  - name: lines
    shell: printf 'a\nb\nc\n'; printf 'v\nw\n' >&2
    register: out
  - name: break
    point_of_no_return: true
    shell: exit 1
rollback:
  - name: undo
    shell: echo undo {{ out.stdout_lines | join('+') }} {{ out.stderr_lines[1] }}
"#,
    );
    let finished = run(&fleet, &pb, &[], 2);
    let ran = ran(&fleet);
    assert!(
        ran.iter().any(|c| c.ends_with("echo undo a+b+c w")),
        "{ran:?}"
    );
    let message = finished.host_finished(HOST)["message"].to_string();
    assert!(message.contains("note c"), "{message}");
    let audit = audit(&fleet, HOST);
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert!(audit[0].contains(" from=a to=3-v+w "), "{audit:?}");
}

#[test]
fn a_playbook_that_reads_only_stdout_and_rc_runs_as_before() {
    let fleet = one_host();
    let pb = playbook(
        &fleet,
        "texts",
        r#"
name: t
hosts: all
vars:
  first: "{{ out.stdout.split('\n')[0] }}"
steps:
  - name: lines
    shell: printf 'a\nb\nc\n'; printf 'w\n' >&2
    register: out
  - name: texts
    shell: echo {{ out.stdout | quote }} {{ out.rc }} {{ out.stderr }} {{ first }}
  - name: methods
    when: out.rc == 0 and out.stdout.startswith('a')
    shell: echo {{ out.stdout.split('\n')[1] }} {{ out.stdout.splitlines() | length }}
  - name: four
    shell: printf 'x\n'; exit 4
    register: four
    failed_when: result.rc != 4 or result.stdout != 'x'
  - name: not run
    when: four.rc == 0
    shell: echo not run
  - name: after
    shell: echo {{ four.rc }} {{ four.stdout }} {{ four.stderr | length }}
"#,
    );
    let finished = run(&fleet, &pb, &[], 0);
    assert_eq!(
        ran(&fleet),
        [
            r"printf 'a\nb\nc\n'; printf 'w\n' >&2",
            // The output itself, its newlines quoted for the shell.
            "echo 'a\nb\nc' 0 w a",
            "echo b 3",
            r"printf 'x\n'; exit 4",
            "echo 4 x 0",
        ]
    );
    let statuses: Vec<String> = steps(&finished).into_iter().map(|s| s.1).collect();
    assert_eq!(
        statuses,
        ["changed", "changed", "changed", "changed", "skipped", "changed"]
    );
}

/// Reads minijinja's own list of a template's variables skips: the value a slice is taken
/// of (alone, as a playbook writes it), a set block's body, a filter block's arguments.
/// The name reaches the template, and the lists are there for it.
#[test]
fn lines_read_through_a_slice_a_set_block_or_a_filter_block_are_there() {
    let fleet = one_host();
    let pb = playbook(
        &fleet,
        "unlisted",
        r#"
name: t
hosts: all
steps:
  - name: lines
    shell: printf 'a\nb\nOK\n'
    register: out
  - name: slice
    shell: echo {{ out.stdout_lines[-1:] | join(',') }}
  - name: set block
    shell: "echo {{ out.rc }} {% set joined %}{{ out.stdout_lines | join('+') }}{% endset %}{{ joined }}"
  - name: filter block
    shell: "echo {% filter replace('@', out.stdout_lines | first) %}@{% endfilter %} {{ out.rc }}"
  - name: health
    shell: 'true'
    failed_when: result.rc != 0 or out.rc != 0 or out.stdout_lines[-1:] != ['OK']
"#,
    );
    let finished = run(&fleet, &pb, &[], 0);
    assert_eq!(
        ran(&fleet),
        [
            r"printf 'a\nb\nOK\n'",
            "echo OK",
            "echo 0 a+b+OK",
            "echo a 0",
            "true",
        ]
    );
    let statuses: Vec<String> = steps(&finished).into_iter().map(|s| s.1).collect();
    assert_eq!(statuses, ["changed"; 5]);
}
