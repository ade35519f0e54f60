//! `psql` and `pg_dump` as `docker exec` runs them in the postgres container: PostgreSQL
//! 12's command lines, output formats, exit codes and restore semantics.

use crate::opts::{self, Opts};
use crate::pg::Cluster;
use crate::sql::{self, Conn, Res, SqlErr};
use std::fmt::Write as _;

const VALUED: &[&str] = &[
    "-U",
    "--username",
    "-d",
    "--dbname",
    "-h",
    "--host",
    "-p",
    "--port",
    "-F",
    "--format",
    "-f",
    "--file",
    "-c",
    "--command",
    "-v",
    "--set",
    "--variable",
    "-n",
    "--schema",
    "-t",
    "--table",
    "-P",
    "--pset",
    "-o",
    "--output",
];

/// The connection psql/pg_dump would make, or the error (and its exit code) they print.
pub fn target(tool: &str, a: &[String], cl: &Cluster) -> Result<(Opts, String), (String, i32)> {
    // pg_dump's -t is a table; psql's -t is tuples-only (a flag).
    let valued: Vec<&str> = VALUED
        .iter()
        .copied()
        .filter(|f| tool == "pg_dump" || (*f != "-t" && *f != "--table"))
        .collect();
    let o = opts::parse(a, &valued, true).map_err(|e| {
        (
            format!("{tool}: error: {e}\nTry \"{tool} --help\" for more information."),
            1,
        )
    })?;
    let user = o
        .get(&["-U", "--username"])
        .unwrap_or_else(|| "root".into());
    let db = o
        .get(&["-d", "--dbname"])
        .or_else(|| o.pos.first().cloned())
        .unwrap_or_else(|| user.clone());
    let fatal = if user != cl.user {
        Some(format!("FATAL:  role \"{user}\" does not exist"))
    } else if !cl.databases.contains_key(&db) {
        Some(format!("FATAL:  database \"{db}\" does not exist"))
    } else {
        None
    };
    match (fatal, tool) {
        (Some(f), "pg_dump") => Err((
            format!("pg_dump: error: connection to database \"{db}\" failed: {f}"),
            1,
        )),
        (Some(f), _) => Err((format!("psql: error: could not connect to server: {f}"), 2)),
        (None, _) => Ok((o, db)),
    }
}

pub struct Fmt {
    pub tuples: bool,
    pub unaligned: bool,
    pub quiet: bool,
}

fn center(s: &str, w: usize) -> String {
    let pad = w.saturating_sub(s.chars().count());
    format!("{}{s}{}", " ".repeat(pad / 2), " ".repeat(pad - pad / 2))
}

/// psql's aligned (or -A unaligned) table, with -t tuples only.
pub fn format_rows(
    cols: &[String],
    rows: &[Vec<String>],
    right: &[bool],
    f: &Fmt,
    title: Option<&str>,
) -> String {
    let mut s = String::new();
    if f.unaligned {
        if !f.tuples {
            let _ = writeln!(s, "{}", cols.join("|"));
        }
        for r in rows {
            let _ = writeln!(s, "{}", r.join("|"));
        }
        if !f.tuples {
            let _ = writeln!(
                s,
                "({} row{})",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
        }
        return s;
    }
    let w: Vec<usize> = (0..cols.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([cols[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    if !f.tuples {
        let total: usize = w.iter().map(|x| x + 3).sum::<usize>().saturating_sub(1);
        if let Some(t) = title {
            let _ = writeln!(s, "{}", center(t, total).trim_end());
        }
        let h: Vec<String> = cols
            .iter()
            .zip(&w)
            .map(|(c, w)| format!(" {} ", center(c, *w)))
            .collect();
        let _ = writeln!(s, "{}", h.join("|"));
        let d: Vec<String> = w.iter().map(|w| "-".repeat(w + 2)).collect();
        let _ = writeln!(s, "{}", d.join("+"));
    }
    for r in rows {
        let n = r.len();
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let pad = " ".repeat(w[i] - v.chars().count());
                match (right.get(i).copied().unwrap_or(false), i + 1 == n) {
                    (true, true) => format!(" {pad}{v}"),
                    (true, false) => format!(" {pad}{v} "),
                    (false, true) => format!(" {v}"),
                    (false, false) => format!(" {v}{pad} "),
                }
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("|"));
    }
    if !f.tuples {
        let _ = writeln!(
            s,
            "({} row{})\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        );
    } else {
        s.push('\n');
    }
    s
}

/// A COPY in progress: table, columns, still ok, rows so far, the database before it.
type CopyState = (
    String,
    Vec<String>,
    bool,
    usize,
    Option<crate::pg::Database>,
);

pub struct Script<'a> {
    pub cl: &'a mut Cluster,
    pub db: String,
    pub on_error_stop: bool,
    pub single: bool,
    pub fmt: Fmt,
    /// `<stdin>` for a script, None for -c.
    pub source: Option<String>,
}

pub struct Outcome {
    pub out: String,
    pub err: String,
    pub rc: i32,
}

fn report(o: &mut Outcome, src: &Option<String>, line: usize, e: &SqlErr, context: Option<String>) {
    let prefix = match src {
        Some(s) => format!("psql:{s}:{line}: "),
        None => String::new(),
    };
    let _ = writeln!(o.err, "{prefix}ERROR:  {}", e.msg);
    if let Some(d) = &e.detail {
        let _ = writeln!(o.err, "DETAIL:  {d}");
    }
    if let Some(h) = &e.hint {
        let _ = writeln!(o.err, "HINT:  {h}");
    }
    if let Some(c) = context {
        let _ = writeln!(o.err, "CONTEXT:  {c}");
    }
}

/// Split a line into finished statements (text up to `;` outside quotes) and the rest.
fn split(buf: &mut String, line: &str) -> Vec<String> {
    let mut done = Vec::new();
    let (mut sq, mut dq) = (false, false);
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if !sq && !dq && c == '-' && chars.get(i + 1) == Some(&'-') {
            break;
        }
        match c {
            '\'' if !dq => sq = !sq,
            '"' if !sq => dq = !dq,
            ';' if !sq && !dq => {
                done.push(std::mem::take(buf));
                i += 1;
                continue;
            }
            _ => {}
        }
        buf.push(c);
        i += 1;
    }
    buf.push('\n');
    done
}

impl Script<'_> {
    pub fn run(self, input: &str) -> Outcome {
        let mut o = Outcome {
            out: String::new(),
            err: String::new(),
            rc: 0,
        };
        let (src, stop, single, fmt) = (
            self.source.clone(),
            self.on_error_stop,
            self.single,
            self.fmt,
        );
        let mut c = Conn {
            cl: self.cl,
            db: self.db,
            tx: None,
            aborted: false,
            qualified: false,
            notices: Vec::new(),
        };
        if single {
            let _ = c.exec(&[sql::Tok::Word("BEGIN".into())]);
        }
        let mut buf = String::new();
        let mut copy: Option<CopyState> = None;
        let mut last = String::new();
        let mut failed = false;
        // At the end of input psql sends what is left in its query buffer.
        let input = format!("{input}\n;");
        'lines: for (ln, line) in input.lines().enumerate() {
            let n = ln + 1;
            if let Some((t, cols, ok, k, snap)) = copy.as_mut() {
                if line == "\\." {
                    if *ok && !fmt.quiet {
                        let _ = writeln!(o.out, "COPY {k}");
                    }
                    copy = None;
                    continue;
                }
                if *ok {
                    *k += 1;
                    if let Err(e) = crate::sqlq::copy_row(&mut c, t, cols, line) {
                        report(&mut o, &src, n, &e, Some(format!("COPY {t}, line {k}")));
                        *ok = false;
                        failed = true;
                        if c.tx.is_some() {
                            c.aborted = true;
                        } else if let Some(s) = snap.take() {
                            *c.db() = s;
                        }
                        if stop {
                            break 'lines;
                        }
                    }
                }
                continue;
            }
            if buf.trim().is_empty() && line.trim_start().starts_with('\\') {
                if !meta(&mut c, line.trim(), &fmt, &mut o, &src, n) {
                    break;
                }
                continue;
            }
            for stmt in split(&mut buf, line) {
                let toks = match sql::tokenize(&stmt) {
                    Ok(t) if t.is_empty() => continue,
                    Ok(t) => t,
                    Err(m) => {
                        report(&mut o, &src, n, &sql::err(m), None);
                        failed = true;
                        if stop {
                            break 'lines;
                        }
                        continue;
                    }
                };
                let snap = if c.tx.is_none() {
                    Some(c.db().clone())
                } else {
                    None
                };
                let r = c.exec(&toks);
                for note in c.notices.drain(..) {
                    let p = src
                        .as_ref()
                        .map(|s| format!("psql:{s}:{n}: "))
                        .unwrap_or_default();
                    let _ = writeln!(o.err, "{p}{note}");
                }
                match r {
                    Ok(Res::Tag(t)) => {
                        last = if fmt.quiet {
                            String::new()
                        } else {
                            format!("{t}\n")
                        };
                        if src.is_some() {
                            o.out.push_str(&last);
                        }
                    }
                    Ok(Res::Rows { cols, rows, right }) => {
                        last = format_rows(&cols, &rows, &right, &fmt, None);
                        if src.is_some() {
                            o.out.push_str(&last);
                        }
                    }
                    Ok(Res::CopyIn { table, cols }) => copy = Some((table, cols, true, 0, snap)),
                    Err(e) => {
                        report(&mut o, &src, n, &e, None);
                        failed = true;
                        if stop || src.is_none() {
                            break 'lines;
                        }
                    }
                }
            }
        }
        if src.is_none() {
            o.out.push_str(&last);
        }
        let stopped = failed && (stop || src.is_none());
        if c.tx.is_some() {
            // End of input: -1 commits; a stop, or a block left open, rolls back.
            let commit = single && !stopped && !c.aborted;
            let _ = c.exec(&[sql::Tok::Word(
                if commit { "COMMIT" } else { "ROLLBACK" }.into(),
            )]);
        }
        o.rc = match (stopped, src.is_some()) {
            (true, true) => 3,
            (true, false) => 1,
            _ => 0,
        };
        o
    }
}

/// A backslash command; false ends the script (\q).
fn meta(
    c: &mut Conn,
    line: &str,
    fmt: &Fmt,
    o: &mut Outcome,
    src: &Option<String>,
    n: usize,
) -> bool {
    let mut w = line.split_whitespace();
    let cmd = w.next().unwrap_or("");
    match cmd {
        "\\q" => return false,
        "\\dt" | "\\dt+" | "\\d" => {
            let owner = c.db().owner.clone();
            let rows: Vec<Vec<String>> = if c.db().public {
                c.db()
                    .tables
                    .keys()
                    .map(|t| vec!["public".into(), t.clone(), "table".into(), owner.clone()])
                    .collect()
            } else {
                Vec::new()
            };
            if rows.is_empty() {
                o.err.push_str("Did not find any relations.\n");
            } else {
                let cols = ["Schema", "Name", "Type", "Owner"].map(String::from);
                o.out.push_str(&format_rows(
                    &cols,
                    &rows,
                    &[false; 4],
                    fmt,
                    Some("List of relations"),
                ));
            }
        }
        "\\c" | "\\connect" => {
            if let Some(d) = w.next() {
                if c.cl.databases.contains_key(d) {
                    c.db = d.to_string();
                    if !fmt.quiet {
                        let _ = writeln!(
                            o.out,
                            "You are now connected to database \"{d}\" as user \"{}\".",
                            c.cl.user
                        );
                    }
                } else {
                    let p = src
                        .as_ref()
                        .map(|s| format!("psql:{s}:{n}: "))
                        .unwrap_or_default();
                    let _ = writeln!(
                        o.err,
                        "{p}\\connect: FATAL:  database \"{d}\" does not exist"
                    );
                }
            }
        }
        "\\." | "\\set" | "\\unset" | "\\pset" | "\\restrict" | "\\unrestrict" | "\\encoding"
        | "\\timing" => {}
        _ => {
            let p = src
                .as_ref()
                .map(|s| format!("psql:{s}:{n}: "))
                .unwrap_or_default();
            let _ = writeln!(o.err, "{p}invalid command {cmd}\nTry \\? for help.");
        }
    }
    true
}

/// Whether `-v ON_ERROR_STOP=...` (or --set / --variable) is on.
pub fn on_error_stop(o: &Opts) -> bool {
    o.all(&["-v", "--set", "--variable"]).iter().any(|v| {
        let (k, val) = v.split_once('=').unwrap_or((v, "on"));
        k.eq_ignore_ascii_case("ON_ERROR_STOP")
            && !["0", "off", "false", "no"].contains(&val.to_lowercase().as_str())
    })
}

pub fn fmt_of(o: &Opts) -> Fmt {
    let has = |n: &str| o.flags.iter().any(|(f, _)| f == n);
    Fmt {
        tuples: has("-t") || has("--tuples-only"),
        unaligned: has("-A") || has("--no-align"),
        quiet: has("-q") || has("--quiet"),
    }
}

/// pg_dump's plain-format output for the database.
pub fn dump(cl: &Cluster, db: &str, o: &Opts) -> String {
    let clean = o.has(&["-c", "--clean"]);
    let ie = o.has(&["--if-exists"]);
    let schema_only = o.has(&["-s", "--schema-only"]);
    let data_only = o.has(&["-a", "--data-only"]);
    let only: Vec<String> = o
        .all(&["-t", "--table"])
        .iter()
        .map(|t| t.trim_start_matches("public.").to_string())
        .collect();
    let owner = &cl.user;
    let mut s = String::from("--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 12.1 (Debian 12.1-1.pgdg100+1)\n-- Dumped by pg_dump version 12.1 (Debian 12.1-1.pgdg100+1)\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\nSET xmloption = content;\nSET client_min_messages = warning;\nSET row_security = off;\n\n");
    let Some(d) = cl.databases.get(db) else {
        return s;
    };
    let tables: Vec<(&String, &crate::pg::Table)> = d
        .tables
        .iter()
        .filter(|(n, _)| only.is_empty() || only.contains(n))
        .collect();
    // Constraints in pg_dump's order: primary keys, then foreign keys, by table and name.
    let mut cons: Vec<(&str, &crate::pg::Constraint)> = Vec::new();
    for kind in ["p", "f"] {
        for (n, t) in &tables {
            let mut cs: Vec<&crate::pg::Constraint> =
                t.constraints.iter().filter(|c| c.kind == kind).collect();
            cs.sort_by(|a, b| a.name.cmp(&b.name));
            cons.extend(cs.into_iter().map(|c| (n.as_str(), c)));
        }
    }
    if clean && !data_only {
        let (ife, ifx) = if ie {
            ("IF EXISTS ", "IF EXISTS ")
        } else {
            ("", "")
        };
        for (t, c) in cons.iter().rev() {
            let _ = writeln!(
                s,
                "ALTER TABLE {ife}ONLY public.{t} DROP CONSTRAINT {ifx}{};",
                c.name
            );
        }
        for (t, _) in tables.iter().rev() {
            let _ = writeln!(s, "DROP TABLE {ifx}public.{t};");
        }
        s.push('\n');
    }
    if !data_only {
        s.push_str("SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n");
        for (n, t) in &tables {
            let _ = write!(s, "--\n-- Name: {n}; Type: TABLE; Schema: public; Owner: {owner}\n--\n\nCREATE TABLE public.{n} (\n");
            let cols: Vec<String> = t
                .columns
                .iter()
                .map(|(c, ty)| format!("    {c} {ty}"))
                .collect();
            let _ = write!(
                s,
                "{}\n);\n\n\nALTER TABLE public.{n} OWNER TO {owner};\n\n",
                cols.join(",\n")
            );
        }
    }
    if !schema_only {
        for (n, t) in &tables {
            let names: Vec<&str> = t.columns.iter().map(|c| c.0.as_str()).collect();
            let _ = write!(s, "--\n-- Data for Name: {n}; Type: TABLE DATA; Schema: public; Owner: {owner}\n--\n\nCOPY public.{n} ({}) FROM stdin;\n", names.join(", "));
            for r in &t.rows {
                let v: Vec<String> = r
                    .iter()
                    .map(|x| x.clone().unwrap_or_else(|| "\\N".into()))
                    .collect();
                let _ = writeln!(s, "{}", v.join("\t"));
            }
            s.push_str("\\.\n\n\n");
        }
    }
    if !data_only {
        for (t, c) in &cons {
            let (ty, body) = match &c.ref_table {
                Some(rt) => (
                    "FK CONSTRAINT",
                    format!(
                        "FOREIGN KEY ({}) REFERENCES public.{rt}({})",
                        c.cols.join(", "),
                        c.ref_cols.join(", ")
                    ),
                ),
                None => ("CONSTRAINT", format!("PRIMARY KEY ({})", c.cols.join(", "))),
            };
            let _ = write!(s, "--\n-- Name: {t} {}; Type: {ty}; Schema: public; Owner: {owner}\n--\n\nALTER TABLE ONLY public.{t}\n    ADD CONSTRAINT {} {body};\n\n\n", c.name, c.name);
        }
    }
    s.push_str("--\n-- PostgreSQL database dump complete\n--\n\n");
    s
}
