//! The shipped check that a database dump is whole (`sl_dump_complete` in
//! `playbooks/simplelogin-facts.yml`), run by `sh` on the ends of dumps as pg_dump writes
//! them: the upgrade keeps no dump it cannot restore whole, and the rollback restores none.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

/// The end of a plain dump by PostgreSQL 12.1's pg_dump (the test fleet's `sl-db`).
const PG_12_END: &str =
    "SET row_security = off;\n\n--\n-- PostgreSQL database dump complete\n--\n\n";

/// The end of a plain dump by pg_dump 15.18 (Debian 15.18-0+deb12u1), as it printed it on
/// this machine; every release since August 2025 (springcomp runs 17.7) ends so: the
/// comment, then `\unrestrict` with the dump's own key, then a blank line.
const PG_15_18_END: &str = "SET row_security = off;\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict RfTmWr2CD5aXveoW5CLjaJ8enRryFvFwRTDsQuYaHdnF1Ov65CYOg60bFJo64IM\n\n";

/// Whether the shipped `sl_dump_complete` takes `dump` as whole.
fn complete(dump: &str) -> bool {
    let facts = Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks/simplelogin-facts.yml");
    let facts = std::fs::read_to_string(facts).expect("the facts playbook");
    let function = facts
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sl_dump_complete()"))
        .expect("sl_dump_complete is defined on one line");
    let mut sh = Command::new("sh")
        .arg("-c")
        .arg(format!("{function}\nsl_dump_complete"))
        .stdin(Stdio::piped())
        .spawn()
        .expect("sh runs");
    let mut stdin = sh.stdin.take().expect("stdin");
    stdin
        .write_all(dump.as_bytes())
        .expect("the dump is written");
    drop(stdin);
    sh.wait().expect("sh ends").success()
}

/// Rows of a table, as a dump holds them between its start and its end.
fn rows() -> String {
    (0..200)
        .map(|i| format!("{i}\tuser{i}@example.com\t2026-12-07 21:52:58\n"))
        .collect()
}

#[test]
fn a_whole_dump_is_told_by_its_closing_comment_before_or_after_unrestrict() {
    assert!(complete(&(rows() + PG_12_END)), "PostgreSQL 12");
    assert!(complete(&(rows() + PG_15_18_END)), "pg_dump 15.18");
}

#[test]
fn a_dump_cut_short_is_not_whole_even_when_its_rows_hold_the_words() {
    assert!(!complete(&rows()), "cut in the rows");
    let cut = PG_15_18_END
        .split_once("--\n-- PostgreSQL")
        .expect("the comment")
        .0;
    assert!(!complete(&(rows() + cut)), "cut before the comment");
    // An alias's note may say anything; only the dump's last lines count.
    let quoting = "42\t-- PostgreSQL database dump complete\n".to_string() + &rows();
    assert!(!complete(&quoting), "the words in a row, then cut");
}
