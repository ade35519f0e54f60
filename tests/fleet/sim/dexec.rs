//! `docker exec`: psql, pg_dump and pg_isready in the postgres container.

use crate::docker::{daemon_err, usage_err};
use crate::opts;
use crate::pgdump;
use crate::psql::{self, Script};
use crate::state;
use std::io::{Read, Write};
use std::path::Path;

pub fn exec(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = match opts::parse(
        a,
        &[
            "-e",
            "--env",
            "-u",
            "--user",
            "-w",
            "--workdir",
            "--env-file",
        ],
        false,
    ) {
        Ok(o) => o,
        Err(e) => return Ok(usage_err("exec", &e)),
    };
    if o.pos.len() < 2 {
        return Ok(usage_err(
            "exec",
            "\"docker exec\" requires at least 2 arguments.",
        ));
    }
    let name = &o.pos[0];
    let cmd: Vec<String> = o.pos[1..].to_vec();
    let stdin = o.has(&["-i", "--interactive"]);
    let st = state::load(h)?;
    let Some(c) = st.container(name).cloned() else {
        return Ok(daemon_err(&format!("No such container: {name}")));
    };
    if st.crashing(&c) {
        return Ok(daemon_err(&format!(
            "Container {} is restarting, wait until the container is running",
            c.id
        )));
    }
    if c.status != "running" {
        return Ok(daemon_err(&format!("container {} is not running", c.id)));
    }
    let prog = cmd[0].as_str();
    match (prog, c.is_postgres()) {
        ("pg_dump", true) => pg_dump(&st, &cmd[1..]),
        ("psql", true) => psql(h, &cmd[1..], stdin),
        ("pg_isready", true) => {
            println!("/var/run/postgresql:5432 - accepting connections");
            Ok(0)
        }
        ("true", _) => Ok(0),
        ("echo", _) => {
            println!("{}", cmd[1..].join(" "));
            Ok(0)
        }
        ("env", _) | ("printenv", _) => {
            for e in &c.env {
                println!("{e}");
            }
            Ok(0)
        }
        _ => {
            eprintln!("OCI runtime exec failed: exec failed: unable to start container process: exec: \"{prog}\": executable file not found in $PATH: unknown");
            Ok(126)
        }
    }
}

fn pg_dump(st: &state::HostState, a: &[String]) -> Result<i32, String> {
    let (o, db) = match psql::target("pg_dump", a, &st.pg) {
        Ok(x) => x,
        Err((m, rc)) => {
            eprintln!("{m}");
            return Ok(rc);
        }
    };
    if o.get(&["-F", "--format"])
        .map(|f| !f.starts_with('p'))
        .unwrap_or(false)
    {
        eprintln!("pg_dump: error: fleet-sim only produces plain-format dumps");
        return Ok(1);
    }
    let s = pgdump::dump(&st.pg, &db, &o);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
    Ok(0)
}

fn psql(h: &Path, a: &[String], stdin: bool) -> Result<i32, String> {
    // Without -i docker exec does not connect stdin: psql reads nothing, as for real.
    let mut input = String::new();
    let st = state::load(h)?;
    let (o, _) = match psql::target("psql", a, &st.pg) {
        Ok(x) => x,
        Err((m, rc)) => {
            eprintln!("{m}");
            return Ok(rc);
        }
    };
    let command = o.get(&["-c", "--command"]);
    if command.is_none() && stdin {
        std::io::stdin()
            .read_to_string(&mut input)
            .map_err(|e| format!("reading stdin: {e}"))?;
    }
    let outcome = state::with_state(h, |st| {
        let (_, db) = match psql::target("psql", a, &st.pg) {
            Ok(x) => x,
            Err((m, rc)) => {
                return psql::Outcome {
                    out: String::new(),
                    err: m + "\n",
                    rc,
                }
            }
        };
        let script = Script {
            cl: &mut st.pg,
            db,
            on_error_stop: psql::on_error_stop(&o),
            single: o.has(&["-1", "--single-transaction"]),
            fmt: psql::fmt_of(&o),
            source: if command.is_some() {
                None
            } else {
                Some("<stdin>".into())
            },
        };
        script.run(command.as_deref().unwrap_or(&input))
    })?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.out.as_bytes());
    let _ = out.flush();
    eprint!("{}", outcome.err);
    Ok(outcome.rc)
}

/// `fleet-sim sql --dir D --host H SQL`: a statement against the host's database.
pub fn sql_cli(host_dir: &Path, sql: &str) -> Result<String, String> {
    let o = state::with_state(host_dir, |st| {
        let db = st.app_db_name();
        Script {
            cl: &mut st.pg,
            db,
            on_error_stop: true,
            single: false,
            fmt: psql::Fmt {
                tuples: true,
                unaligned: true,
                quiet: false,
            },
            source: None,
        }
        .run(sql)
    })?;
    if o.rc != 0 {
        return Err(o.err);
    }
    Ok(o.out)
}
