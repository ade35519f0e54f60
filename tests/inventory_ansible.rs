//! fleetup's view of inventories against Ansible's own: for each inventory of a corpus
//! written here in the styles of Ansible's documentation (INI, YAML, JSON, folders that mix
//! them, group_vars/ and host_vars/), `fleetup inventory` and `ansible-inventory` are run
//! on the same files and their outputs must be byte-for-byte the same: `--list` (hosts,
//! groups, every merged variable), `--graph --vars`, and `--list --limit`.
//!
//! Needs `ansible-inventory` (ansible-core, installed by .ci/run) on the PATH.

use std::path::{Path, PathBuf};
use std::process::Command;

const FLEETUP: &str = env!("CARGO_BIN_EXE_fleetup");

/// One inventory: its files, and what `-i` names.
struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    source: &'static str,
}

const CORPUS: &[Case] = &[
    Case {
        name: "ini: the docs' first example",
        files: &[(
            "hosts",
            "mail.example.com\n\n[webservers]\nfoo.example.com\nbar.example.com\n\n[dbservers]\none.example.com\ntwo.example.com\nthree.example.com\n",
        )],
        source: "hosts",
    },
    Case {
        name: "ini: ranges, strides, letters, ports",
        files: &[(
            "hosts.ini",
            "[webservers]\nwww[01:50:10].example.com\nweb[a:c].example.com:2222\n\n[databases]\ndb-[a:f].example.com\n192.0.2.50:5309\n[2001:db8::1]:2200\n2001:db8::2\nbadwolf.example.com:5309 ansible_user=me\n",
        )],
        source: "hosts.ini",
    },
    Case {
        name: "ini: values typed as Ansible types them",
        files: &[(
            "inventory",
            "[atlanta]\nhost1 http_port=80 maxRequestsPerChild=808 f=1.5 t=True n=None s='80' q=\"x y\" l=[1,'a'] d=\"{'k': 1}\" raw={a:1} yes=yes h=0x1f\nhost2 http_port=303 maxRequestsPerChild=909 # trailing comment\n\n[atlanta:vars]\nntp_server=ntp.atlanta.example.com\nproxy=proxy.atlanta.example.com\nport=8080\nenabled=true\nflag=False\nlist=['a', \"b\"]\nquoted=\"it's\"\nwith_comment=12 # twelve\nspaced = some words here\n",
        )],
        source: "inventory",
    },
    Case {
        name: "ini: children named before they are defined",
        files: &[(
            "hosts",
            "[usa:children]\nsoutheast\nnortheast\nsouthwest\nnorthwest\n\n[southeast:children]\natlanta\nraleigh\n\n[southeast:vars]\nsome_server=foo.southeast.example.com\nhalon_system_timeout=30\nself_destruct_countdown=60\nescape_pods=2\n\n[atlanta]\nhost1\nhost2\n\n[raleigh]\nhost2\nhost3\n\n[northeast]\n[southwest]\n[northwest]\nhost4\n",
        )],
        source: "hosts",
    },
    Case {
        name: "ini: all:vars, ungrouped hosts, precedence by depth and priority",
        files: &[(
            "hosts.cfg",
            "; a semicolon comment\nlone1 role=lone\nlone2\n[all:vars]\nrole=all\nansible_user=deploy\n[parent]\np1\n[parent:vars]\nrole=parent\n[child]\np1 role=host\nc1\n[child:vars]\nrole=child\n[parent:children]\nchild\n[a]\nx1\n[b]\nx1\n[a:vars]\nv=a\nansible_group_priority=10\n[b:vars]\nv=b\n",
        )],
        source: "hosts.cfg",
    },
    Case {
        name: "ini: group_vars and host_vars beside it",
        files: &[
            (
                "hosts",
                "[web]\nw1 x=inline-host\nw2\n[web:vars]\nx=inline-group\ny=inline-group\n[db]\nd1\n",
            ),
            ("group_vars/all.yml", "x: file-all\nz: file-all\n"),
            ("group_vars/web/10-a.yml", "y: file-web\nports: {80: http, 443: https}\n"),
            ("group_vars/web/20-b.yaml", "w: 2\n"),
            ("host_vars/w2.yml", "x: file-host\n"),
            ("host_vars/d1", "nested: {a: [1, 2, {b: null}]}\n"),
        ],
        source: "hosts",
    },
    Case {
        name: "ini: a .yml file holding INI",
        files: &[("inventory.yml", "[web]\nw1\nw2 x=1\n")],
        source: "inventory.yml",
    },
    Case {
        name: "ini: unicode, escapes and odd names",
        files: &[(
            "hosts",
            "[mixed-Case_group]\nhöst.example.com greeting='héllo wörld' tab=\"a\\tb\" back=a\\ b\n[a.b]\nh.b\n[all:vars]\nmsg=\"line1\\nline2\"\n",
        )],
        source: "hosts",
    },
    Case {
        name: "yaml: the docs' example",
        files: &[(
            "hosts.yml",
            "all:\n  hosts:\n    mail.example.com:\n  children:\n    webservers:\n      hosts:\n        foo.example.com:\n        bar.example.com:\n    dbservers:\n      hosts:\n        one.example.com:\n        two.example.com:\n        three.example.com:\n",
        )],
        source: "hosts.yml",
    },
    Case {
        name: "yaml: explicit ungrouped group, as exports write it",
        files: &[(
            "inv.yaml",
            "all:\n  children:\n    ungrouped:\n      hosts:\n        lone:\n          x: 1\n        both:\n    web:\n      hosts:\n        both:\n        w1:\n      vars:\n        http_port: 80\n",
        )],
        source: "inv.yaml",
    },
    Case {
        name: "yaml: nested groups, ranges, typed values, merge keys",
        files: &[(
            "prod.yml",
            "all:\n  vars:\n    ntp: ntp.example.com\n    defaults: &defaults\n      timeout: 30\n      retries: 3\n  children:\n    simplelogin:\n      vars:\n        level: sl\n        settings:\n          <<: *defaults\n          retries: 5\n      children:\n        staging:\n          hosts:\n            sl-staging-[1:2]:\n              canary: true\n        production:\n          vars:\n            level: prod\n            ports: {80: http, 443: https}\n            when: 2024-01-01\n            ratio: 0.25\n            empty:\n          hosts:\n            sl-prod-[01:05]:\n            sl-prod-06:\n              ansible_host: 10.0.0.6\n              ansible_port: 2222\n    eu:\n      hosts:\n        sl-prod-01:\n        sl-staging-1:\n",
        )],
        source: "prod.yml",
    },
    Case {
        name: "json: the YAML form written as JSON",
        files: &[(
            "inv.json",
            r#"{"all": {"vars": {"a": 1}, "children": {"web": {"hosts": {"w1": {"x": [1, 2]}, "w2": null}}, "db": {"hosts": {"d1": {}}, "vars": {"b": true}}}}}"#,
        )],
        source: "inv.json",
    },
    Case {
        name: "folder: YAML, INI and ignored files, in name order, with group_vars",
        files: &[
            ("inv/01-web.yml", "web:\n  hosts:\n    w1:\n    w2:\n  vars:\n    tier: web\n"),
            ("inv/02-db", "[db]\nd1 tier=db\n[web]\nw3\n"),
            ("inv/03-extra.ini", "[web:vars]\ntier=overridden\n[web]\n"),
            ("inv/README.md", "# not an inventory\n"),
            ("inv/notes.txt", "nothing here\n"),
            ("inv/old.yml~", "[junk]\nj1\n"),
            ("inv/ansible.cfg", "[defaults]\n"),
            ("inv/.hidden", "[hidden]\nh1\n"),
            ("inv/sub/04-more.yaml", "all:\n  hosts:\n    extra1:\n"),
            ("inv/group_vars/web.yml", "from_folder_vars: yes\n"),
            ("inv/host_vars/d1.yml", "d1_file: 1\n"),
        ],
        source: "inv",
    },
    Case {
        name: "script: --list with _meta",
        files: &[(
            "inventory.sh",
            "#!/bin/sh\n[ \"$1\" = --list ] || exit 1\ncat <<'EOF'\n{\"web\": {\"hosts\": [\"w1\", \"w2\"], \"vars\": {\"http_port\": 80}, \"children\": [\"edge\"]},\n \"edge\": [\"e1\"], \"all\": {\"children\": [\"web\"], \"vars\": {\"x\": true}},\n \"_meta\": {\"hostvars\": {\"w1\": {\"a\": [1, {\"b\": null}]}, \"e1\": {\"ansible_port\": 2222}, \"stray\": {\"s\": 1}}}}\nEOF\n",
        )],
        source: "inventory.sh",
    },
    Case {
        name: "script: no _meta, so --host for each host",
        files: &[(
            "hosts.py",
            "#!/usr/bin/env python3\nimport json, sys\nif sys.argv[1] == '--list':\n    print(json.dumps({'web': {'hosts': ['w1', 'w2'], 'vars': {'v': 1}}, 'db': {'hosts': ['d1']}}))\nelse:\n    print(json.dumps({'w1': {'who': 'w1', 'v': 2}, 'd1': {}}.get(sys.argv[2], {})) if sys.argv[2] != 'w2' else '')\n",
        )],
        source: "hosts.py",
    },
    Case {
        name: "folder: a script, YAML and INI together",
        files: &[
            (
                "inv/00-script",
                "#!/bin/sh\necho '{\"_meta\": {\"hostvars\": {\"s1\": {\"from\": \"script\"}}}, \"web\": [\"s1\"]}'\n",
            ),
            ("inv/10-static.yml", "web:\n  hosts:\n    w1:\n      from: yaml\n"),
            ("inv/20-more.ini", "[web:vars]\nlevel=2\n[web]\n[db]\ns1\n"),
        ],
        source: "inv",
    },
];

/// Writes a case's files; a file that starts with `#!` is made executable (a script).
fn write_case(dir: &Path, case: &Case) {
    use std::os::unix::fs::PermissionsExt;
    for (path, text) in case.files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        if text.starts_with("#!") {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

fn output(program: &str, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        // No ansible.cfg of the machine's or user's may change what Ansible reads.
        .env("ANSIBLE_CONFIG", dir.join("no-such-ansible.cfg"))
        .env("ANSIBLE_HOME", dir.join(".ansible"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (is ansible-core installed?): {e}"));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Warnings differ in wording; a failure must show why.
    if !out.status.success() {
        text += &format!(
            "exit {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    text
}

/// Runs both tools on the cases with `args` (after `-i SOURCE`); returns the diffs.
fn compare<'a>(cases: impl IntoIterator<Item = &'a Case>, args: &[&str]) -> Vec<String> {
    let jobs: Vec<(&Case, Vec<&str>)> = cases.into_iter().map(|c| (c, args.to_vec())).collect();
    let diffs = compare_jobs(&jobs);
    eprintln!(
        "{}: {} inventories compared, {} agree",
        args.join(" "),
        jobs.len(),
        jobs.len() - diffs.len()
    );
    diffs
}

/// Runs both tools on each (case, args); returns the diffs. Ansible's side runs through
/// tests/ansible/inventory_batch.py: `ansible-inventory` itself, one fork per job after a
/// single import of Ansible (half a second saved per job).
fn compare_jobs(jobs: &[(&Case, Vec<&str>)]) -> Vec<String> {
    let root = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = (0..jobs.len())
        .map(|i| root.path().join(i.to_string()))
        .collect();
    let mut batch = Vec::new();
    for ((case, args), dir) in jobs.iter().zip(&dirs) {
        write_case(dir, case);
        let mut full = vec!["-i", case.source];
        full.extend_from_slice(args);
        batch.push(serde_json::json!({"cwd": dir, "args": full, "out": dir.join("ansible.out")}));
    }
    let list = root.path().join("jobs.json");
    std::fs::write(&list, serde_json::to_string(&batch).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ansible/inventory_batch.py");
    let ansible = std::thread::spawn({
        let root = root.path().to_path_buf();
        move || {
            output(
                "python3",
                &root,
                &[script.to_str().unwrap(), list.to_str().unwrap()],
            )
        }
    });
    let ours: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .zip(&dirs)
            .map(|((case, args), dir)| {
                s.spawn(move || {
                    let mut full = vec!["inventory", "-i", case.source];
                    full.extend_from_slice(args);
                    output(FLEETUP, dir, &full)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let batch_errors = ansible.join().unwrap();
    assert!(
        batch_errors.is_empty(),
        "inventory_batch.py: {batch_errors}"
    );
    let mut diffs = Vec::new();
    for (((case, args), dir), ours) in jobs.iter().zip(&dirs).zip(ours) {
        let mut theirs = std::fs::read_to_string(dir.join("ansible.out")).unwrap_or_default();
        let status = std::fs::read_to_string(dir.join("ansible.out.status")).unwrap_or_default();
        if status.trim() != "0" {
            theirs += &format!("exit {status}");
        }
        if ours != theirs {
            diffs.push(format!(
                "{} ({}):\n--- fleetup\n{ours}\n--- ansible-inventory\n{theirs}",
                case.name,
                args.join(" ")
            ));
        }
    }
    diffs
}

/// Host patterns (subscripts, regexes, fnmatch classes, `&` and `!`) select the hosts
/// Ansible selects: `--list --limit PATTERN` of both tools.
#[test]
fn patterns_select_what_ansible_selects() {
    const PATTERNS: Case = Case {
        name: "patterns",
        files: &[(
            "hosts",
            "[prod]\nsl-prod-0[1:5]\n[web]\nw3\nw1\nw2\n[a]\nw2\nsl-prod-03\n[eu:children]\nweb\nprod\n",
        )],
        source: "hosts",
    };
    let patterns = [
        "sl-prod-0[!13]",
        "prod[1:3]",
        "prod[-1]:web[0]",
        "eu[2:]",
        "~sl-prod-0[24]",
        "~w[12]:&a",
        "eu:!a",
        "sl-prod-0?,w*",
        "*prod*:!prod[0]",
    ];
    let jobs: Vec<(&Case, Vec<&str>)> = patterns
        .iter()
        .map(|p| (&PATTERNS, vec!["--list", "--limit", p]))
        .collect();
    let diffs = compare_jobs(&jobs);
    eprintln!(
        "patterns: {} compared, {} agree",
        jobs.len(),
        jobs.len() - diffs.len()
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// `group_vars/` and `host_vars/` beside the playbook (`--playbook-dir`, as
/// `ansible-playbook` reads them) against those beside the inventory: each variable is
/// set where two levels of Ansible's precedence meet.
#[test]
fn playbook_vars_take_ansibles_place_in_the_precedence() {
    const LAYERS: Case = Case {
        name: "group_vars and host_vars beside the playbook",
        files: &[
            ("inv/hosts", "[parent:children]\nchild\n[child]\nw1 d=inline-host\nw2\n[child:vars]\nf=inline-child\n"),
            ("inv/group_vars/all.yml", "a: inv-all\nf: inv-all\n"),
            ("inv/group_vars/parent.yml", "b: inv-parent\n"),
            ("inv/group_vars/child.yml", "c: inv-child\n"),
            ("inv/host_vars/w1.yml", "e: inv-host\n"),
            ("play/group_vars/all.yml", "a: play-all\nb: play-all\n"),
            ("play/group_vars/parent.yml", "c: play-parent\n"),
            ("play/group_vars/child.yml", "d: play-child\n"),
            ("play/host_vars/w1.yml", "e: play-host\n"),
        ],
        source: "inv/hosts",
    };
    let jobs = [
        (&LAYERS, vec!["--list", "--playbook-dir", "play"]),
        (&LAYERS, vec!["--host", "w1", "--playbook-dir", "play"]),
    ];
    let diffs = compare_jobs(&jobs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

#[test]
fn list_agrees_with_ansible_inventory() {
    let diffs = compare(CORPUS, &["--list"]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// `--list --export`: each group's and host's own variables, where they were set.
#[test]
fn export_agrees_with_ansible_inventory() {
    let diffs = compare(CORPUS, &["--list", "--export"]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// `--graph --vars` prints values as Python prints them, which shows two differences that
/// are not in the variables themselves: a mapping's non-string keys (`{80: 'http'}`:
/// fleetup keeps keys as the strings JSON makes of them), and the order of the keys a
/// `<<:` merge brings in (serde_yaml puts them after the mapping's own). The cases that
/// hold either are compared by `--list` only.
#[test]
fn graph_with_vars_agrees_with_ansible_inventory() {
    let cases: Vec<&Case> = CORPUS
        .iter()
        .filter(|c| {
            !c.files
                .iter()
                .any(|(_, t)| t.contains("<<:") || t.contains("80: http"))
        })
        .collect();
    let diffs = compare(cases, &["--graph", "--vars"]);
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}

/// A `--list` export kept as a file: Ansible reads that form only from a script, so
/// fleetup reading the file is compared with Ansible running a script that prints it.
#[test]
fn list_export_file_reads_as_ansible_reads_the_same_json_from_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let source = Case {
        name: "a --list export",
        files: &[(
            "src.ini",
            "lone x=1\n[web]\nw1 a=[1,2]\nw2\n[web:vars]\nv=True\n[eu:children]\nweb\n",
        )],
        source: "src.ini",
    };
    write_case(dir.path(), &source);
    let export = output(
        "ansible-inventory",
        dir.path(),
        &["-i", "src.ini", "--list"],
    );
    std::fs::write(dir.path().join("export.json"), &export).unwrap();
    let script = Case {
        name: "cat",
        files: &[(
            "cat.sh",
            "#!/bin/sh\ncat \"$(dirname \"$0\")/export.json\"\n",
        )],
        source: "cat.sh",
    };
    write_case(dir.path(), &script);
    let ours = output(
        FLEETUP,
        dir.path(),
        &["inventory", "-i", "export.json", "--list"],
    );
    let theirs = output("ansible-inventory", dir.path(), &["-i", "cat.sh", "--list"]);
    assert_eq!(ours, theirs);
    assert_eq!(ours, export, "a round trip changes nothing");
}

#[test]
fn limited_list_agrees_with_ansible_inventory() {
    let diffs = compare(
        &CORPUS[CORPUS.len() - 7..],
        &["--list", "--limit", "web*:db*:!w2:ungrouped"],
    );
    assert!(diffs.is_empty(), "{}", diffs.join("\n\n"));
}
