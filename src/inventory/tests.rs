//! Unit tests of the inventory, compiled only under #[cfg(test)] (see mod.rs).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::range::expand_host_range;
use super::*;
use crate::diagnostic::Diagnostics;
use crate::yaml::Document;

fn parse(text: &str) -> Result<Inventory, Diagnostics> {
    Inventory::from_document(
        &Document::parse(Path::new("inv.yml"), text).map_err(Diagnostics::from)?,
    )
}

fn select(inv: &Inventory, pattern: &str) -> Vec<String> {
    inv.select(&Pattern::parse(pattern).unwrap()).hosts
}

const NESTED: &str = "\
all:
  vars:
    level: all
    from_all: 1
  hosts:
    lonely:
  children:
    simplelogin:
      vars:
        level: simplelogin
      children:
        staging:
          vars:
            level: staging
          hosts:
            s1:
            s2:
              level: host
        production:
          hosts:
            p1:
              canary: true
            p2:
            p[03:05]:
    eu:
      hosts:
        p1:
        s1:
";

#[test]
fn nested_groups_and_inventory_order() {
    let inv = parse(NESTED).unwrap();
    // Ansible reads a group's children before its own hosts.
    assert_eq!(
        inv.host_names().collect::<Vec<_>>(),
        ["s1", "s2", "p1", "p2", "p03", "p04", "p05", "lonely"]
    );
    assert_eq!(
        select(&inv, "simplelogin"),
        ["s1", "s2", "p1", "p2", "p03", "p04", "p05"]
    );
    assert_eq!(select(&inv, "ungrouped"), ["lonely"]);
}

#[test]
fn precedence_all_parent_child_host() {
    let inv = parse(NESTED).unwrap();
    assert_eq!(inv.host_vars("s1")["level"], json!("staging"));
    assert_eq!(inv.host_vars("s2")["level"], json!("host"));
    assert_eq!(inv.host_vars("p1")["level"], json!("simplelogin"));
    assert_eq!(inv.host_vars("lonely")["level"], json!("all"));
    assert_eq!(inv.host_vars("p2")["from_all"], json!(1));
    assert_eq!(inv.host_vars("p1")["canary"], json!(true));
    assert_eq!(inv.host_vars("p1")["inventory_hostname"], json!("p1"));
    assert_eq!(
        inv.host_vars("p1")["group_names"],
        json!(["eu", "production", "simplelogin"])
    );
    assert_eq!(inv.host_vars("lonely")["group_names"], json!(["ungrouped"]));
}

#[test]
fn deeper_group_wins_over_shallower_sibling_and_priority_breaks_ties() {
    let inv = parse(
        "\
a:
  vars: {x: a, y: a}
  hosts: {h: }
b:
  vars: {x: b, y: b, ansible_group_priority: 10}
  hosts: {h: }
  children:
    c:
      vars: {x: c}
      hosts: {h: }
",
    )
    .unwrap();
    let vars = inv.host_vars("h");
    assert_eq!(vars["x"], json!("c"), "child group beats parents");
    assert_eq!(
        vars["y"],
        json!("b"),
        "higher ansible_group_priority wins at equal depth"
    );
}

#[test]
fn patterns() {
    let inv = parse(NESTED).unwrap();
    assert_eq!(select(&inv, "all").len(), 8);
    assert_eq!(select(&inv, "*").len(), 8);
    assert_eq!(select(&inv, "p0*"), ["p03", "p04", "p05"]);
    assert_eq!(select(&inv, "staging:p1"), ["s1", "s2", "p1"]);
    assert_eq!(select(&inv, "simplelogin:&eu"), ["s1", "p1"]);
    assert_eq!(
        select(&inv, "simplelogin:!eu"),
        ["s2", "p2", "p03", "p04", "p05"]
    );
    // Exclusions apply last, whatever their place in the pattern.
    assert_eq!(select(&inv, "!eu:production"), ["p2", "p03", "p04", "p05"]);
    assert_eq!(select(&inv, "staging,production,&eu"), ["s1", "p1"]);
    // With a comma, Ansible splits on commas only: `production:&eu` is one (unknown) name.
    assert_eq!(select(&inv, "staging,production:&eu"), ["s1", "s2"]);
    assert_eq!(select(&inv, "!simplelogin"), ["lonely"]);
    assert_eq!(select(&inv, "prod*:!p0?"), ["p1", "p2"]);
    let sel = inv.select(&Pattern::parse("production:nosuch").unwrap());
    assert_eq!(sel.unmatched, ["nosuch"]);
    assert!(Pattern::parse("web::db")
        .unwrap_err()
        .contains("empty part"));
}

#[test]
fn subscripts_regexes_and_classes_as_ansible_reads_them() {
    // What `ansible -i INV PATTERN --list-hosts` answers for this inventory.
    let inv = super::parse_ini(
        Path::new("p.ini"),
        "[prod]\nsl-prod-0[1:5]\n[web]\nw3\nw1\nw2\n[a]\nw2\n",
    )
    .unwrap();
    for (pattern, want) in [
        (
            "sl-prod-0[!13]",
            &["sl-prod-02", "sl-prod-04", "sl-prod-05"][..],
        ),
        ("prod[0]", &["sl-prod-01"]),
        ("prod[1:3]", &["sl-prod-02", "sl-prod-03", "sl-prod-04"]),
        ("prod[-1]", &["sl-prod-05"]),
        ("prod[3:]", &["sl-prod-04", "sl-prod-05"]),
        ("prod[0:0]", &["sl-prod-01"]),
        ("prod[2:0]", &["sl-prod-03"]),
        ("prod[9]", &[]),
        ("sl-prod-0[13]", &[]),
        ("~sl-prod-0[24]", &["sl-prod-02", "sl-prod-04"]),
        ("~w", &["w3", "w1", "w2"]),
        ("web[0]", &["w3"]),
        ("web:!w1", &["w3", "w2"]),
        ("web[0:1]:prod[4]", &["sl-prod-05", "w3", "w1"]),
    ] {
        let mut got = select(&inv, pattern);
        let mut want = want.to_vec();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{pattern}");
    }
    let e = Pattern::parse("sl-prod-0[1-3]").unwrap_err();
    assert!(e.contains("write `sl-prod-0[1:3]`"), "{e}");
    assert!(Pattern::parse("~web(")
        .unwrap_err()
        .contains("not a valid regular expression"));
}

#[test]
fn host_ranges_as_ansible_expands_them() {
    // What `ansible-inventory` makes of `h[:2]`, `h[x:B]` and `h[01:3]`.
    assert_eq!(
        expand_host_range("h[:2]", MAX_HOSTS).unwrap(),
        ["h0", "h1", "h2"]
    );
    assert_eq!(
        expand_host_range("h[x:B]", MAX_HOSTS).unwrap(),
        ["hx", "hy", "hz", "hA", "hB"]
    );
    assert!(expand_host_range("h[01:3]", MAX_HOSTS)
        .unwrap_err()
        .contains("same length"));
    assert!(expand_host_range("h[c:a]", MAX_HOSTS).is_err());
}

#[test]
fn host_ranges() {
    assert_eq!(
        expand_host_range("web[1:3]", MAX_HOSTS).unwrap(),
        ["web1", "web2", "web3"]
    );
    assert_eq!(
        expand_host_range("db-[a:c].x", MAX_HOSTS).unwrap(),
        ["db-a.x", "db-b.x", "db-c.x"]
    );
    assert_eq!(
        expand_host_range("n[00:10:5]", MAX_HOSTS).unwrap(),
        ["n00", "n05", "n10"]
    );
    assert!(expand_host_range("web[1:", MAX_HOSTS).is_err());
    assert!(expand_host_range("web[3:1]", MAX_HOSTS)
        .unwrap_err()
        .contains("empty"));
}

#[test]
fn errors_name_line_column_and_field() {
    let err = parse("all:\n  hostz:\n    a:\n").unwrap_err().0;
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].field, "all.hostz");
    assert_eq!((err[0].line, err[0].column), (2, 3));
    assert_eq!(err[0].hint.as_deref(), Some("did you mean `hosts`?"));

    let err = parse("all:\n  hosts:\n    a:\n      ansible_port: twenty\n")
        .unwrap_err()
        .0;
    assert_eq!(err[0].field, "all.hosts.a.ansible_port");
    assert_eq!((err[0].line, err[0].column), (4, 21));
    assert!(
        err[0].message.starts_with("must be a port number"),
        "{}",
        err[0].message
    );

    let err = parse("all:\n  hosts:\n    a:\n      canary: yes please\n")
        .unwrap_err()
        .0;
    assert!(
        err[0].message.contains("true or false"),
        "{}",
        err[0].message
    );

    let err = parse("all:\n  hosts:\n    - a\n    - b\n").unwrap_err().0;
    assert_eq!(err[0].line, 3);
    assert!(err[0].message.contains("mapping of host names"));

    let err = parse("all:\n  vars:\n    bad-name: 1\n").unwrap_err().0;
    assert_eq!(err[0].field, "all.vars.bad-name");
    assert_eq!(err[0].line, 3);
}

#[test]
fn cycles_are_refused() {
    let err = parse("a:\n  children:\n    b:\n      children:\n        a:\n").unwrap_err();
    assert!(err.to_string().contains("its own descendant"), "{err}");
}

#[test]
fn ports_as_numbers_or_digit_strings() {
    assert_eq!(parse_port(&json!(2222)), Some(2222));
    assert_eq!(parse_port(&json!("22")), Some(22));
    assert_eq!(parse_port(&json!(0)), None);
    assert_eq!(parse_port(&json!(70000)), None);
}

/// A scratch folder with files, removed at the end of the test.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

#[test]
fn group_vars_and_host_vars_files() {
    let dir = tree(&[
        (
            "inv.yml",
            "all:\n  vars: {x: inline-all, y: inline-all}\n  children:\n    prod:\n      vars: {x: inline-prod}\n      hosts:\n        p1:\n          x: inline-host\n        p2:\n",
        ),
        ("group_vars/all.yml", "x: file-all\ny: file-all\n"),
        ("group_vars/prod/10-first.yml", "x: file-prod-1\nz: 1\n"),
        ("group_vars/prod/20-second.yaml", "z: 2\n"),
        ("host_vars/p1.yml", "w: host-file\n"),
        ("host_vars/p2", "x: host-file-no-extension\n"),
        ("group_vars/prdo.yml", "x: typo\n"),
    ]);
    let inv = load(&[dir.path().join("inv.yml")], &[]).unwrap();
    let p1 = inv.host_vars("p1");
    // Files beat every inline group var; inline host vars beat group files; host files last.
    assert_eq!(p1["x"], json!("inline-host"));
    assert_eq!(p1["y"], json!("file-all"));
    assert_eq!(
        p1["z"],
        json!(2),
        "files of a group folder merge in name order"
    );
    assert_eq!(p1["w"], json!("host-file"));
    assert_eq!(inv.host_vars("p2")["x"], json!("host-file-no-extension"));
    let warning = inv
        .warnings
        .iter()
        .find(|w| w.message.contains("prdo"))
        .unwrap();
    assert_eq!(warning.hint.as_deref(), Some("did you mean `prod`?"));
}

#[test]
fn several_inventories_merge_later_wins() {
    let dir = tree(&[
        (
            "a.yml",
            "all:\n  children:\n    prod:\n      hosts:\n        p1: {x: a}\n        p2:\n",
        ),
        (
            "b.yml",
            "prod:\n  hosts:\n    p1: {x: b}\n    p3:\nstaging:\n  hosts:\n    s1:\n",
        ),
    ]);
    let inv = load(&[dir.path().join("a.yml"), dir.path().join("b.yml")], &[]).unwrap();
    assert_eq!(select(&inv, "prod"), ["p1", "p2", "p3"]);
    assert_eq!(select(&inv, "staging"), ["s1"]);
    assert_eq!(inv.host_vars("p1")["x"], json!("b"));
    // A folder given to -i loads every YAML file in it.
    let inv = load(&[dir.path().to_path_buf()], &[]).unwrap();
    assert_eq!(inv.host_names().count(), 4);
}

#[test]
fn unreadable_and_invalid_files_are_named() {
    let err = load(&[PathBuf::from("/nonexistent/inv.yml")], &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/inv.yml: cannot read"),
        "{err}"
    );
    let dir = tree(&[
        ("inv.yml", "all:\n  hosts: {a: }\n"),
        ("host_vars/a.yml", "x: [1\n"),
    ]);
    let err = load(&[dir.path().join("inv.yml")], &[]).unwrap_err();
    assert!(err.0[0].file.ends_with("host_vars/a.yml"), "{err}");
    assert!(err.0[0].line > 0);
}

#[test]
fn a_bad_window_variable_is_named_at_its_line() {
    let text = "\
all:
  children:
    production:
      vars:
        window: [\"sat 02:00-05:00 Europe/Paris\", \"sun 2-5 UTC\"]
      hosts:
        p1:
          window: \"daily 01:00-03:00 UTC\"
";
    let err = parse(text).unwrap_err().0;
    assert_eq!(err.len(), 1, "{err:?}");
    assert_eq!(err[0].line, 5);
    assert_eq!(err[0].field, "all.children.production.vars.window");
    assert!(
        err[0].message.contains("`2` is not a time of day"),
        "{err:?}"
    );
    assert!(parse(&text.replace("sun 2-5 UTC", "sun 02:00-05:00 UTC")).is_ok());
}

#[test]
fn dotted_host_names_keep_their_variables() {
    // Found by the fuzzer: the variables of `web.example.com` were looked up again by a
    // path, `all.hosts.web.example.com`, whose dots read as three steps.
    let inv =
        parse("all:\n  hosts:\n    web.example.com:\n      ansible_host: 192.0.2.1\n").unwrap();
    assert_eq!(
        inv.host_vars("web.example.com")["ansible_host"],
        "192.0.2.1"
    );
}

#[test]
fn host_ranges_cannot_expand_without_bound() {
    for text in [
        "a:\n  hosts:\n    h[0:99999999999]:\n",
        "a:\n  hosts:\n    h[0:999][0:999][0:999]:\n",
    ] {
        let errors = parse(text).unwrap_err().0;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .message
                .contains("more hosts than an inventory may hold"),
            "{}",
            errors[0].message
        );
    }
    // Up to the limit is fine, and the limit counts every host of the file.
    let errors = parse("a:\n  hosts:\n    h[1:99999]:\n    x[1:2]:\n    y[1:2]:\n")
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1, "said once: {errors:?}");
    assert!(
        errors[0].message.starts_with("`x[1:2]`"),
        "{}",
        errors[0].message
    );
}

#[test]
fn deep_and_lattice_group_graphs_are_linear_not_exponential() {
    // A chain of 3000 groups, and 30 levels of two groups that both contain the next two
    // (2^30 paths from the top): found as timeouts by the fuzzer.
    let mut chain = String::from("g0: {children: {g1: }, vars: {deep: no}}\n");
    for i in 1..3000 {
        chain.push_str(&format!("g{i}: {{children: {{g{}: }}}}\n", i + 1));
    }
    chain.push_str("g3000: {hosts: {h: }, vars: {deep: yes}}\n");
    let mut lattice = String::new();
    for i in 0..30 {
        for side in ["a", "b"] {
            lattice.push_str(&format!(
                "{side}{i}: {{children: {{a{n}: , b{n}: }}}}\n",
                n = i + 1
            ));
        }
    }
    lattice.push_str("a30: {hosts: {h: }}\n");
    for (text, top) in [(chain, "g0"), (lattice, "a0")] {
        let started = std::time::Instant::now();
        let inv = parse(&text).unwrap();
        let vars = inv.host_vars("h");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(vars["group_names"].as_array().unwrap().len() > 30);
        assert_eq!(inv.group_hosts(top).len(), 1);
        if top == "g0" {
            // The deepest group's variable wins, however long the chain.
            assert_eq!(vars["deep"], true, "an unquoted yes is YAML 1.1's true");
        }
    }
}

#[test]
fn an_explicit_ungrouped_group_selects_its_hosts() {
    // As Ansible's docs and every `ansible-inventory --yaml` export write it.
    let inv = parse(
        "all:\n  children:\n    ungrouped:\n      hosts:\n        lone:\n        both:\n    web:\n      hosts:\n        both:\n        w1:\n",
    )
    .unwrap();
    assert_eq!(select(&inv, "ungrouped"), ["lone"]);
    assert_eq!(inv.host_vars("lone")["group_names"], json!(["ungrouped"]));
    assert_eq!(inv.host_vars("both")["group_names"], json!(["web"]));
}

#[test]
fn mappings_with_non_string_keys_keep_them_as_strings() {
    let inv = parse("all:\n  hosts:\n    h1:\n      ports: {80: http, 443: https}\n").unwrap();
    assert_eq!(
        inv.host_vars("h1")["ports"],
        json!({"80": "http", "443": "https"})
    );
}

#[test]
fn deeply_nested_flow_collections_are_refused_before_yaml_scans_them() {
    // libyaml's scan of `a: [a: [...` is quadratic in its depth: 64 KiB took seconds.
    let text = "a: [".repeat(16 * 1024);
    let e = parse(&text).unwrap_err();
    assert!(
        e.0[0].message.contains("nested more than 128 levels"),
        "{e}"
    );
    assert_eq!((e.0[0].line, e.0[0].column), (1, 516));
    // Brackets in quotes, comments and words do not count.
    let b = "[".repeat(200);
    let fine = format!("all:\n  vars:\n    h: {{x: '{b}', y: \"{b}\"}} # {b}\n    z: don't{b}\n");
    if let Err(e) = parse(&fine) {
        panic!("{e}");
    }
}

#[test]
fn vault_values_are_opened_in_place_and_checked_once_readable() {
    use crate::vault::{tests::VALUE, VaultSecret};
    let indented = VALUE.replace('\n', "\n          ");
    let text = format!(
        "all:\n  hosts:\n    h1:\n      token: !vault |\n          {indented}\n      list: [1, !vault \"{}\"]\n      ansible_port: !vault |\n          {indented}\n",
        VALUE.replace('\n', "\\n")
    );
    let mut inv = parse(&text).unwrap();
    let errors = inv.open_vaults(&[VaultSecret::new("default", "hunter2")]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        errors[0].to_string(),
        "inv.yml:13:11: ansible_port: must be a port number from 1 to 65535, found \"tiny\""
    );
    let h1 = inv.host_vars("h1");
    assert_eq!(h1["token"], json!("tiny"));
    assert_eq!(h1["list"], json!([1, "tiny"]));
    assert!(inv.secret_values().contains(&"tiny".to_string()));
    let mut locked = parse(&text).unwrap();
    let errors = locked.open_vaults(&[VaultSecret::new("default", "wrong")]);
    assert_eq!(errors.len(), 3);
    assert!(
        errors[0]
            .to_string()
            .starts_with("inv.yml:5:11: token: vault-encrypted value: no vault password"),
        "{}",
        errors[0]
    );
}
