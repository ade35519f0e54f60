use std::cell::RefCell;
use std::path::Path;

use super::*;
use crate::ssh::ssh_config;

fn items(text: &str) -> Vec<Item> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config");
    std::fs::write(&path, text).expect("write");
    ssh_config::load(&path, dir.path()).expect("parse")
}

fn eval_with(text: &str, host: &str, exec: &dyn Fn(&str) -> bool) -> Result<HostConfig, EvalError> {
    let q = Query {
        host,
        local_user: "me",
        local_hostname: "ctl.example.com",
        home: "/home/me",
        uid: 1000,
        exec,
    };
    evaluate(&items(text), &q)
}

fn eval(text: &str, host: &str) -> HostConfig {
    eval_with(text, host, &|_| false).expect("evaluate")
}

#[test]
fn options_under_match_never_leak_into_the_host_block_before() {
    let text = "Host a\n  HostName 10.0.0.1\nMatch host never-this-host\n  User nobody\n";
    let c = eval(text, "a");
    assert_eq!(c.hostname.as_deref(), Some("10.0.0.1"));
    assert_eq!(c.user, None);
    assert_eq!(
        eval(text, "never-this-host").user.as_deref(),
        Some("nobody")
    );
}

#[test]
fn first_value_wins_and_lists_add_up() {
    let text = "Host web*\n  User first\n  IdentityFile ~/.ssh/a\n  Port 2200\nHost *\n  User second\n  IdentityFile ~/.ssh/b\n  Port 22\n  ProxyJump none\n";
    let c = eval(text, "web1");
    assert_eq!(c.user.as_deref(), Some("first"));
    assert_eq!(c.port, Some(2200));
    assert_eq!(c.identity_files, ["~/.ssh/a", "~/.ssh/b"]);
    assert_eq!(c.proxy_jump.as_deref(), Some("none"));
    assert_eq!(eval(text, "db1").user.as_deref(), Some("second"));
}

#[test]
fn host_negation() {
    let text = "Host * !bastion\n  ProxyJump bastion\n";
    assert_eq!(eval(text, "web1").proxy_jump.as_deref(), Some("bastion"));
    assert_eq!(eval(text, "bastion").proxy_jump, None);
}

#[test]
fn match_criteria() {
    let text = "Host a\n  HostName 10.0.0.1\n  User deploy\n\
                Match host 10.0.0.* user deploy\n  Port 2201\n\
                Match originalhost a !localuser root\n  IdentityAgent none\n\
                Match localuser me,!root\n  ConnectTimeout 1m30s\n";
    let c = eval(text, "a");
    assert_eq!(c.port, Some(2201));
    assert_eq!(c.identity_agent.as_deref(), Some("none"));
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(90)));
    let c = eval(text, "b");
    assert_eq!((c.port, c.identity_agent), (None, None));
}

#[test]
fn exec_runs_with_tokens_and_only_while_the_line_holds() {
    let ran = RefCell::new(Vec::new());
    let exec = |cmd: &str| {
        ran.borrow_mut().push(cmd.to_string());
        cmd.contains("yes")
    };
    let text = "Host a\n  HostName 10.0.0.1\n  Port 2222\n\
                Match exec \"test yes %h %p %r %n %u %L %% %C\"\n  User viaexec\n\
                Match host nomatch exec \"never run\"\n  User never\n";
    let c = eval_with(text, "a", &exec).expect("evaluate");
    assert_eq!(c.user.as_deref(), Some("viaexec"));
    let ran = ran.into_inner();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(
        ran[0].starts_with("test yes 10.0.0.1 2222 me a me ctl % "),
        "{ran:?}"
    );
    assert_eq!(
        ran[0].len(),
        "test yes 10.0.0.1 2222 me a me ctl % ".len() + 40
    );
}

#[test]
fn final_and_canonical_match_in_the_final_pass_only() {
    let text = "Match final host 10.0.0.1\n  User finaluser\n\
                Match !final\n  Port 2000\n\
                Match canonical\n  IdentityAgent none\n\
                Host a\n  HostName 10.0.0.1\n";
    let c = eval(text, "a");
    assert_eq!(c.user.as_deref(), Some("finaluser"));
    assert_eq!(c.port, Some(2000));
    assert_eq!(c.identity_agent.as_deref(), Some("none"));
    // Without a `Match final`, there is no final pass.
    let c = eval("Match canonical\n  User c\n", "a");
    assert_eq!(c.user, None);
}

#[test]
fn errors_name_the_file_and_line_when_reached() {
    let text = "Host a\n  User x\nMatch host b localnetwork 10.0.0.0/8\n  User y\n";
    let err = eval_with(text, "a", &|_| false).unwrap_err();
    assert_eq!(err.at.line, 3);
    assert!(err.detail.contains("localnetwork"), "{err}");
    assert!(err.to_string().contains("config line 3"), "{err}");
    let err = eval_with("Match all host a\n", "a", &|_| false).unwrap_err();
    assert!(err.detail.contains("'all'"), "{err}");
    let err = eval_with("Match exec\n", "a", &|_| false).unwrap_err();
    assert!(err.detail.contains("without its argument"), "{err}");
    let err = eval_with("Match exec \"x %z\"\n", "a", &|_| false).unwrap_err();
    assert!(err.detail.contains("%z"), "{err}");
    assert!(eval_with("Host a\n  Port x\n", "a", &|_| false).is_err());
    assert!(eval_with("Host b\n  Port x\n", "a", &|_| false).is_ok());
}

#[test]
fn match_all_and_include_under_an_inactive_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inc = dir.path().join("inc.conf");
    std::fs::write(&inc, "User included\nHost *\n  Port 2022\n").expect("write");
    let text = format!(
        "Host other\n  Include {}\nMatch all\n  IdentityAgent SSH_AUTH_SOCK\n",
        inc.display()
    );
    let c = eval(&text, "a");
    // The included file's own `Host *` never matches under an inactive block.
    assert_eq!((c.user, c.port), (None, None));
    assert_eq!(c.identity_agent.as_deref(), Some("SSH_AUTH_SOCK"));
    let c = eval(&text, "other");
    assert_eq!(c.user.as_deref(), Some("included"));
    assert_eq!(c.port, Some(2022));
    assert!(Path::new(&*inc).exists());
}
