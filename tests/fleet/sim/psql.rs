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

/// Where psql says an error or notice came from: `psql:<stdin>:LINE: ` for a script,
/// nothing for -c.
fn prefix(src: &Option<String>, line: usize) -> String {
    src.as_ref()
        .map(|s| format!("psql:{s}:{line}: "))
        .unwrap_or_default()
}

fn report(o: &mut Outcome, src: &Option<String>, line: usize, e: &SqlErr, context: Option<String>) {
    let _ = writeln!(o.err, "{}ERROR:  {}", prefix(src, line), e.msg);
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
        let single = self.single;
        let mut r = Runner {
            o: Outcome {
                out: String::new(),
                err: String::new(),
                rc: 0,
            },
            src: self.source.clone(),
            stop: self.on_error_stop,
            fmt: self.fmt,
            c: Conn {
                cl: self.cl,
                db: self.db,
                tx: None,
                aborted: false,
                qualified: false,
                notices: Vec::new(),
            },
            copy: None,
            last: String::new(),
            failed: false,
        };
        if single {
            let _ = r.c.exec(&[sql::Tok::Word("BEGIN".into())]);
        }
        let mut buf = String::new();
        // At the end of input psql sends what is left in its query buffer.
        let input = format!("{input}\n;");
        for (ln, line) in input.lines().enumerate() {
            let n = ln + 1;
            let go_on = if r.copy.is_some() {
                r.copy_line(line, n)
            } else if buf.trim().is_empty() && line.trim_start().starts_with('\\') {
                meta(&mut r.c, line.trim(), &r.fmt, &mut r.o, &r.src, n)
            } else {
                split(&mut buf, line)
                    .iter()
                    .all(|stmt| r.statement(stmt, n))
            };
            if !go_on {
                break;
            }
        }
        r.finish(single)
    }
}

/// A script being run: what psql keeps from one input line to the next.
struct Runner<'a> {
    o: Outcome,
    src: Option<String>,
    stop: bool,
    fmt: Fmt,
    c: Conn<'a>,
    copy: Option<CopyState>,
    /// The last result, all that -c prints.
    last: String,
    failed: bool,
}

impl Runner<'_> {
    /// A line of COPY data, up to `\.`; false ends the script (ON_ERROR_STOP).
    fn copy_line(&mut self, line: &str, n: usize) -> bool {
        let Some((t, cols, ok, k, snap)) = self.copy.as_mut() else {
            return true;
        };
        if line == "\\." {
            if *ok && !self.fmt.quiet {
                let _ = writeln!(self.o.out, "COPY {k}");
            }
            self.copy = None;
            return true;
        }
        if *ok {
            *k += 1;
            if let Err(e) = crate::sqlq::copy_row(&mut self.c, t, cols, line) {
                report(
                    &mut self.o,
                    &self.src,
                    n,
                    &e,
                    Some(format!("COPY {t}, line {k}")),
                );
                *ok = false;
                self.failed = true;
                // A failed COPY loads nothing: outside a block it is undone at once.
                if self.c.tx.is_some() {
                    self.c.aborted = true;
                } else if let Some(s) = snap.take() {
                    *self.c.db() = s;
                }
                if self.stop {
                    return false;
                }
            }
        }
        true
    }

    /// One statement; false ends the script (ON_ERROR_STOP, or any error of -c).
    fn statement(&mut self, stmt: &str, n: usize) -> bool {
        let toks = match sql::tokenize(stmt) {
            Ok(t) if t.is_empty() => return true,
            Ok(t) => t,
            Err(m) => {
                report(&mut self.o, &self.src, n, &sql::err(m), None);
                self.failed = true;
                return !self.stop;
            }
        };
        let snap = if self.c.tx.is_none() {
            Some(self.c.db().clone())
        } else {
            None
        };
        let r = self.c.exec(&toks);
        for note in self.c.notices.drain(..) {
            let _ = writeln!(self.o.err, "{}{note}", prefix(&self.src, n));
        }
        match r {
            Ok(Res::Tag(t)) => self.show_result(if self.fmt.quiet {
                String::new()
            } else {
                format!("{t}\n")
            }),
            Ok(Res::Rows { cols, rows, right }) => {
                self.show_result(format_rows(&cols, &rows, &right, &self.fmt, None))
            }
            Ok(Res::CopyIn { table, cols }) => self.copy = Some((table, cols, true, 0, snap)),
            Err(e) => {
                report(&mut self.o, &self.src, n, &e, None);
                self.failed = true;
                return !(self.stop || self.src.is_none());
            }
        }
        true
    }

    /// A script prints every result as it comes; -c only the last one, at the end.
    fn show_result(&mut self, text: String) {
        self.last = text;
        if self.src.is_some() {
            self.o.out.push_str(&self.last);
        }
    }

    fn finish(mut self, single: bool) -> Outcome {
        if self.src.is_none() {
            self.o.out.push_str(&self.last);
        }
        let stopped = self.failed && (self.stop || self.src.is_none());
        if self.c.tx.is_some() {
            // End of input: -1 commits; a stop, or a block left open, rolls back.
            let commit = single && !stopped && !self.c.aborted;
            let _ = self.c.exec(&[sql::Tok::Word(
                if commit { "COMMIT" } else { "ROLLBACK" }.into(),
            )]);
        }
        self.o.rc = match (stopped, self.src.is_some()) {
            (true, true) => 3,
            (true, false) => 1,
            _ => 0,
        };
        self.o
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
                    let _ = writeln!(
                        o.err,
                        "{}\\connect: FATAL:  database \"{d}\" does not exist",
                        prefix(src, n)
                    );
                }
            }
        }
        "\\." | "\\set" | "\\unset" | "\\pset" | "\\restrict" | "\\unrestrict" | "\\encoding"
        | "\\timing" => {}
        _ => {
            let _ = writeln!(
                o.err,
                "{}invalid command {cmd}\nTry \\? for help.",
                prefix(src, n)
            );
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
