//! Unit tests of the INI reader. What Ansible makes of the same files is checked in
//! tests/inventory_ansible.rs, against `ansible-inventory` itself.

use std::path::Path;

use serde_json::json;

use super::*;

fn ini(text: &str) -> Inventory {
    parse_ini(Path::new("hosts.ini"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match parse_ini(Path::new("hosts.ini"), text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(d) => d.0.iter().map(ToString::to_string).collect(),
    }
}

const DOCS_STYLE: &str = "\
# an Ansible INI inventory
lonely ansible_port=2222 x=1.5 y=yes z=\"quoted str\" w=[1,2] v={'a':1}
[web]
web[01:03].example.com:2200 role=front
db-[a:c]
[web:vars]
http_port=80
flag=true ; not a comment here
[prod:children]
web
later
[later]
h[0:6:2]
";

#[test]
fn groups_hosts_ports_ranges_and_typed_values() {
    let inv = ini(DOCS_STYLE);
    assert_eq!(
        inv.host_names().collect::<Vec<_>>(),
        [
            "lonely",
            "web01.example.com",
            "web02.example.com",
            "web03.example.com",
            "db-a",
            "db-b",
            "db-c",
            "h0",
            "h2",
            "h4",
            "h6"
        ]
    );
    let lonely = inv.host_vars("lonely");
    assert_eq!(lonely["ansible_port"], json!(2222));
    assert_eq!(lonely["x"], json!(1.5));
    assert_eq!(lonely["y"], json!("yes"));
    assert_eq!(lonely["z"], json!("quoted str"));
    assert_eq!(lonely["w"], json!([1, 2]));
    assert_eq!(lonely["v"], json!("{a:1}"));
    assert_eq!(lonely["group_names"], json!(["ungrouped"]));
    let web = inv.host_vars("web02.example.com");
    assert_eq!(web["ansible_port"], json!(2200));
    assert_eq!(web["http_port"], json!(80));
    assert_eq!(web["flag"], json!("true ; not a comment here"));
    assert_eq!(web["group_names"], json!(["prod", "web"]));
    assert_eq!(inv.group_hosts("prod").len(), 10);
}

#[test]
fn children_may_be_named_before_they_are_defined() {
    let inv = ini("[eu:children]\nprod\n[eu:vars]\nregion=eu\n[prod]\np1\n");
    assert_eq!(inv.host_vars("p1")["region"], json!("eu"));
    assert_eq!(
        inv.group_hosts("eu").into_iter().collect::<Vec<_>>(),
        ["p1"]
    );
}

#[test]
fn ports_split_off_only_where_ansible_splits_them() {
    assert_eq!(split_port("web1:2200"), ("web1", Some(2200)));
    assert_eq!(split_port("[::1]:22"), ("::1", Some(22)));
    assert_eq!(split_port("::1"), ("::1", None));
    assert_eq!(split_port("web[01:03]:22"), ("web[01:03]", Some(22)));
    assert_eq!(split_port("web[01:03]"), ("web[01:03]", None));
}

#[test]
fn every_bad_line_is_reported_at_its_line() {
    let e = errors(
        "[web]\nw1 novalue\n[web:bogus]\nw2\n[bad name]\n[ghost:vars]\nx=1\n[web:children]\nnowhere\n[web]\nw3 ansible_port=http\n",
    );
    let want = [
        "hosts.ini:2:1: expected key=value after the host, found `novalue`",
        "hosts.ini:3:1: section [web:bogus] has an unknown type `bogus`",
        "hosts.ini:5:1: invalid section `[bad name]`",
        "hosts.ini:11:1: variable `ansible_port`: must be a port number from 1 to 65535, found \"http\"",
        "hosts.ini:6:1: section [ghost:vars] is for a group defined nowhere",
        "hosts.ini:9:1: section [web:children] names group `nowhere`, defined nowhere",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\nwanted {want}");
    }
}

#[test]
fn a_range_too_large_is_refused() {
    let e = errors("[web]\nw[0:99999999]\n");
    assert!(e[0].contains(TOO_MANY), "{e:?}");
}
