//! What runs inside a container of the SimpleLogin image: alembic, init_app.py, the job
//! runner's crash; and `fleet-sim container-run`, the daemon's process for a one-shot
//! container.

use crate::log;
use crate::pg::{self, Database};
use crate::releases::{self, ImageRef};
use crate::run::{argv, out_dir};
use crate::state::{self, Container, HostState};
use crate::util;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Default)]
pub struct Out {
    pub out: String,
    pub err: String,
}

const BG_OPERATIONAL: &str = "(Background on this error at: https://sqlalche.me/e/14/e3q8)";

/// The database an app container reaches through DB_URI (env or the mounted /code/.env).
pub fn connect(st: &HostState, c: &Container) -> Result<String, String> {
    let uri = c.env_get("DB_URI").or_else(|| {
        let m = c
            .mounts
            .iter()
            .find(|m| m.target == "/code/.env" && m.kind == "bind")?;
        let s = std::fs::read_to_string(&m.source).ok()?;
        s.lines()
            .find_map(|l| l.trim().strip_prefix("DB_URI="))
            .map(|v| v.trim_matches('"').to_string())
    });
    let (user, pass, host, db) = match uri.as_deref().and_then(parse_uri) {
        Some(p) => p,
        None => (
            st.pg.user.clone(),
            st.pg.password.clone(),
            "sl-db".to_string(),
            st.app_db_name(),
        ),
    };
    let reach = st.containers.iter().any(|d| {
        d.is_postgres()
            && d.status == "running"
            && d.endpoints.iter().any(|e| {
                c.on_network(&e.network)
                    && e.network != "bridge"
                    && (d.name == host || e.aliases.contains(&host))
            })
    });
    if !reach {
        return Err(format!("sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) could not translate host name \"{host}\" to address: Name or service not known\n\n{BG_OPERATIONAL}"));
    }
    if user != st.pg.user || pass != st.pg.password {
        return Err(format!("sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at \"{host}\" (172.18.0.2), port 5432 failed: FATAL:  password authentication failed for user \"{user}\"\n\n{BG_OPERATIONAL}"));
    }
    if !st.pg.databases.contains_key(&db) {
        return Err(format!("sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at \"{host}\" (172.18.0.2), port 5432 failed: FATAL:  database \"{db}\" does not exist\n\n{BG_OPERATIONAL}"));
    }
    Ok(db)
}

/// postgresql://user:pass@host:port/db → (user, pass, host, db).
pub fn parse_uri(u: &str) -> Option<(String, String, String, String)> {
    let rest = u.split_once("://")?.1;
    let (cred, hostdb) = rest.rsplit_once('@')?;
    let (user, pass) = cred.split_once(':').unwrap_or((cred, ""));
    let (hostport, db) = hostdb.split_once('/')?;
    let host = hostport.split(':').next()?;
    Some((
        user.into(),
        pass.into(),
        host.into(),
        db.split('?').next()?.into(),
    ))
}

fn traceback(o: &mut Out, file: &str, e: &str) -> i32 {
    let _ = writeln!(o.err, "Traceback (most recent call last):\n  File \"/code/{file}\", line 1, in <module>\n  File \"/code/.venv/lib/python3.10/site-packages/sqlalchemy/engine/base.py\", line 1900, in _execute_context\n    self.dialect.do_execute(\n{e}");
    1
}

/// Run a one-shot command of container `c` against the host state.
pub fn run_oneshot(st: &mut HostState, c: &Container, o: &mut Out) -> i32 {
    let args = argv(c);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let version = ImageRef::parse(&c.image).ok().and_then(|r| r.app_version());
    match (a.as_slice(), version) {
        (["echo", rest @ ..], _) => {
            let _ = writeln!(o.out, "{}", rest.join(" "));
            0
        }
        (["true"], _) | (["sleep", _], _) => 0,
        (["false"], _) => 1,
        (["alembic", "heads"], Some(v)) => {
            let _ = writeln!(o.out, "{} (head)", releases::head_of(&v).unwrap_or(""));
            0
        }
        (["alembic", "upgrade", "head" | "heads"], Some(v)) => upgrade(st, c, &v, o),
        (["alembic", "show", rev], Some(v)) => show(&v, rev, o),
        (["alembic", "current"], Some(v)) => match connect(st, c) {
            Err(e) => traceback(o, "migrations/env.py", &e),
            Ok(db) => {
                let _ = writeln!(o.err, "INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\nINFO  [alembic.runtime.migration] Will assume transactional DDL.");
                if let Some(r) = st.pg.databases.get(&db).and_then(Database::revision) {
                    let head = releases::head_of(&v).unwrap_or("");
                    let _ = writeln!(o.out, "{r}{}", if r == head { " (head)" } else { "" });
                }
                0
            }
        },
        (["python" | "python3", "init_app.py"], Some(v)) => init(st, c, &v, o),
        (["flask", "db", "upgrade"], Some(_)) => {
            o.err.push_str("Usage: flask [OPTIONS] COMMAND [ARGS]...\nTry 'flask --help' for help.\n\nError: No such command 'db'.\n");
            2
        }
        ([exe, ..], _) => {
            let _ = writeln!(o.err, "docker: Error response from daemon: failed to create task for container: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"{exe}\": executable file not found in $PATH: unknown.");
            127
        }
        ([], _) => 0,
    }
}

/// `alembic show REV`: a revision the image's migrations know, read from the image alone.
fn show(version: &str, rev: &str, o: &mut Out) -> i32 {
    let known = releases::migrations_of(version);
    let Some(i) = known.iter().position(|m| m.rev == rev) else {
        let _ = writeln!(o.err, "ERROR [alembic.util.messaging] Can't locate revision identified by '{rev}'\n  FAILED: Can't locate revision identified by '{rev}'");
        return 255;
    };
    let head = if i + 1 == known.len() { " (head)" } else { "" };
    let parent = i.checked_sub(1).map_or("<base>", |p| known[p].rev);
    let _ = writeln!(
        o.out,
        "Rev: {rev}{head}\nParent: {parent}\nPath: /code/migrations/versions/{rev}_.py\n\n    {}\n",
        known[i].message
    );
    0
}

fn upgrade(st: &mut HostState, c: &Container, version: &str, o: &mut Out) -> i32 {
    let db = match connect(st, c) {
        Ok(d) => d,
        Err(e) => return traceback(o, "migrations/env.py", &e),
    };
    o.err.push_str("INFO  [alembic.runtime.migration] Context impl PostgresqlImpl.\nINFO  [alembic.runtime.migration] Will assume transactional DDL.\n");
    let known = releases::migrations_of(version);
    let Some(database) = st.pg.databases.get(&db) else {
        return 1;
    };
    let cur = database.revision();
    let start = match &cur {
        None => 0,
        Some(r) => match known.iter().position(|m| m.rev == r) {
            Some(i) => i + 1,
            None => {
                let _ = writeln!(o.err, "ERROR [alembic.util.messaging] Can't locate revision identified by '{r}'\n  FAILED: Can't locate revision identified by '{r}'");
                return 255;
            }
        },
    };
    // One transaction for the whole upgrade (transactional DDL): a failure leaves nothing.
    let mut work = database.clone();
    let mut prev = cur.clone().unwrap_or_default();
    for m in &known[start..] {
        let _ = writeln!(
            o.err,
            "INFO  [alembic.runtime.migration] Running upgrade {prev} -> {}, {}",
            m.rev, m.message
        );
        if let Err(e) = pg::apply_migration(&mut work, m) {
            let _ = writeln!(o.err, "Traceback (most recent call last):\n  File \"/code/.venv/bin/alembic\", line 8, in <module>\n    sys.exit(main())\n  File \"/code/migrations/versions/{}.py\", line 21, in upgrade\n  File \"/code/.venv/lib/python3.10/site-packages/sqlalchemy/engine/default.py\", line 736, in do_execute\n    cursor.execute(statement, parameters)\npsycopg2.errors.{c}: {msg}\n\n\nThe above exception was the direct cause of the following exception:\n\nsqlalchemy.exc.ProgrammingError: (psycopg2.errors.{c}) {msg}\n\n[SQL: {sql}]\n(Background on this error at: https://sqlalche.me/e/14/f405)", m.rev, c = e.class, msg = e.message, sql = e.sql);
            return 1;
        }
        prev = m.rev.to_string();
    }
    st.pg.databases.insert(db, work);
    0
}

fn init(st: &mut HostState, c: &Container, version: &str, o: &mut Out) -> i32 {
    let db = match connect(st, c) {
        Ok(d) => d,
        Err(e) => return traceback(o, "init_app.py", &e),
    };
    let Some(database) = st.pg.databases.get_mut(&db) else {
        return 1;
    };
    if let Some((class, msg)) = pg::missing_for(database, version) {
        let _ = writeln!(o.err, "Traceback (most recent call last):\n  File \"/code/init_app.py\", line 54, in <module>\n    add_sl_domains()\n  File \"/code/init_app.py\", line 31, in add_sl_domains\n    if SLDomain.get_by(domain=alias_domain):\nsqlalchemy.exc.ProgrammingError: (psycopg2.errors.{class}) {msg}\n\n(Background on this error at: https://sqlalche.me/e/14/f405)");
        return 1;
    }
    pg::init_app(database);
    let _ = writeln!(
        o.out,
        "{} - SL - INFO - init_app: sl domains and monitoring done",
        util::rfc3339(util::now())
    );
    st.init = database.revision();
    0
}

/// The log lines a service container shows.
pub fn service_logs(st: &HostState, c: &Container) -> Out {
    let mut o = Out::default();
    if c.is_postgres() {
        o.err.push_str("PostgreSQL Database directory appears to contain a database; Skipping initialization\n\nLOG:  database system is ready to accept connections\n");
        return o;
    }
    let Some(v) = c.app_version() else { return o };
    if c.runs("job_runner.py") {
        if let Some((class, msg)) = st.schema_problem(&v) {
            let n = c.restart_count().clamp(1, 20);
            for _ in 0..n {
                let _ = writeln!(o.err, "Traceback (most recent call last):\n  File \"/code/job_runner.py\", line 330, in <module>\n    for job in get_jobs_to_run():\n  File \"/code/job_runner.py\", line 280, in get_jobs_to_run\n    .all()\nsqlalchemy.exc.ProgrammingError: (psycopg2.errors.{class}) {msg}\nLINE 1: ...job.state AS job_state, job.priority AS job_priority...\n\n[SQL: SELECT job.id AS job_id FROM job WHERE job.state = %(state_1)s]\n(Background on this error at: https://sqlalche.me/e/14/f405)");
            }
            return o;
        }
        let _ = writeln!(
            o.out,
            "{} - SL - INFO - job_runner: Take job",
            util::rfc3339(c.started)
        );
    } else if c.runs("email_handler.py") {
        let _ = writeln!(
            o.out,
            "{} - SL - INFO - email_handler: Listen for port 20381",
            util::rfc3339(c.started)
        );
    } else {
        let _ = writeln!(o.err, "[{}] [1] [INFO] Starting gunicorn 20.0.4\n[{}] [1] [INFO] Listening at: http://0.0.0.0:7777 (1)", util::rfc3339(c.started), util::rfc3339(c.started));
    }
    o
}

/// `fleet-sim container-run HOST_DIR ID`: the daemon's process for a one-shot container.
pub fn container_run(args: &[String]) -> i32 {
    let (Some(hd), Some(id)) = (args.first(), args.get(1)) else {
        return 2;
    };
    let host_dir = Path::new(hd);
    // Under the lock: the client that started us saves the container when it lets go.
    let found = state::with_state(host_dir, |st| {
        st.containers.iter().find(|c| &c.id == id).cloned()
    });
    let Ok(Some(c)) = found else {
        return 1;
    };
    let entry = log::start(host_dir, "container", &argv(&c).join(" "));
    let a = argv(&c);
    let mut wait = c.delay;
    if let (Some("sleep"), Some(n)) = (a.first().map(String::as_str), a.get(1)) {
        wait += n.parse::<f64>().unwrap_or(0.0);
    }
    let mut o = Out::default();
    let rc = match crate::faults::wait_signal(Some(wait)) {
        Some(sig) => 128 + sig,
        None => state::with_state(host_dir, |st| run_oneshot(st, &c, &mut o)).unwrap_or(1),
    };
    finish(host_dir, &c, &o, rc);
    entry.end_rc(rc);
    rc
}

fn finish(host_dir: &Path, c: &Container, o: &Out, rc: i32) {
    let dir = out_dir(host_dir, &c.id);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("stdout"), &o.out);
    let _ = std::fs::write(dir.join("stderr"), &o.err);
    let _ = util::write_atomic(&dir.join("exit"), rc.to_string().as_bytes());
    let _ = state::with_state(host_dir, |st| {
        if let Some(i) = st.containers.iter().position(|x| x.id == c.id) {
            if st.containers[i].auto_remove {
                st.containers.remove(i);
            } else {
                let x = &mut st.containers[i];
                x.status = "exited".into();
                x.exit_code = rc;
                x.finished = util::now();
                x.job_pid = None;
            }
        }
    });
}

/// The mail sl-email (or a request sl-app) was handling when it was stopped: written first.
pub fn write_in_flight(st: &mut HostState, idx: usize) {
    let c = st.containers[idx].clone();
    let Some(v) = c.app_version() else { return };
    if c.status != "running"
        || !(c.runs("email_handler.py") || c.runs("gunicorn"))
        || st.schema_problem(&v).is_some()
    {
        return;
    }
    let Ok(db) = connect(st, &c) else { return };
    if let Some(d) = st.pg.databases.get_mut(&db) {
        d.insert(
            "email_log",
            &[("user_id", "1".into()), ("alias_id", "1".into())],
        );
    }
}
