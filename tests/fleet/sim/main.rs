//! fleet-sim: the test fleet's simulated SimpleLogin hosts. One multi-call binary:
//! called as `docker`, `docker-compose` or `curl` (symlinks in the fleet's bin/) it is the
//! shim; as `fleet-sim CMD` it is the launcher (up, down, fault, ...) or sshd's
//! ForceCommand (session). See tests/fleet/README.md.

mod app;
mod compose;
mod composefile;
mod composeps;
mod curl;
mod dexec;
mod dnet;
mod docker;
mod faults;
mod fleetctl;
mod fleetinfo;
mod format;
mod health;
mod hostconfig;
mod images;
mod inspect;
mod install;
mod launcher;
mod layouts;
mod log;
mod mounts;
mod opts;
mod pg;
mod pgdump;
mod psql;
mod releases;
mod run;
mod session;
mod sql;
mod sqlddl;
mod sqlq;
mod state;
mod supervisor;
mod util;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "fleet-sim",
    about = "Simulated SimpleLogin hosts behind real OpenSSH servers"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start a fleet; returns when every sshd accepts connections.
    Up {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        spec: PathBuf,
        /// Kill the fleet when this process dies (default: the caller).
        #[arg(long)]
        owner: Option<i32>,
    },
    /// Stop a fleet (idempotent).
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
    /// The supervisor (started by `up`).
    Watch {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        owner: i32,
    },
    /// Make one host (with its own sshd) stop answering for good.
    StopHost {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: String,
    },
    /// Add a fault rule to a host (or all hosts): the next commands whose command line
    /// contains --match fail, hang, run slowly or lose their connection.
    #[command(
        after_help = "Example: the next `docker pull` on sl-prod-02 fails once with rc 1:\n  fleet-sim fault --dir FLEET --host sl-prod-02 --match 'docker pull' --action fail --rc 1 --stderr 'manifest unknown' --times 1"
    )]
    Fault {
        /// The fleet's directory (as given to `up`).
        #[arg(long)]
        dir: PathBuf,
        /// The host whose commands fail (default: every host of the fleet).
        #[arg(long)]
        host: Option<String>,
        /// A substring of the command line the rule applies to (the SSH command, or a
        /// simulated tool's arguments joined by spaces).
        #[arg(long = "match", value_name = "TEXT")]
        pattern: String,
        /// `fail` (exit with --rc, print --stdout/--stderr), `hang` (until signalled),
        /// `slow` (wait --seconds, then run), `drop` (cut the SSH connection).
        #[arg(long, value_name = "fail|hang|slow|drop")]
        action: String,
        /// Exit code of a `fail` (default 1).
        #[arg(long)]
        rc: Option<i32>,
        /// What a `fail` prints on stderr (default: `fleet-sim: injected failure`).
        #[arg(long)]
        stderr: Option<String>,
        /// What a `fail` prints on stdout first.
        #[arg(long)]
        stdout: Option<String>,
        /// How long a `slow` command waits before it runs (needed by `slow`).
        #[arg(long)]
        seconds: Option<f64>,
        /// How many matching commands the rule applies to (default: every one).
        #[arg(long)]
        times: Option<u32>,
        /// Where the rule is checked: `session` (the SSH command), `shim` (a simulated
        /// tool such as docker or psql), or `any` (default).
        #[arg(long, value_name = "session|shim|any")]
        scope: Option<String>,
        /// Only while sl-app serves this version (e.g. `v4.66.0`).
        #[arg(long, value_name = "VERSION")]
        serving: Option<String>,
    },
    /// Remove fault rules of a host (or all hosts).
    ClearFaults {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: Option<String>,
    },
    /// Run SQL against a host's database (tuples only, unaligned), e.g. an INSERT or a count.
    Sql {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: String,
        sql: String,
    },
    /// Print a host's simulated docker/db state as JSON.
    State {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        host: String,
    },
}

fn shim(kind: &str, args: &[String]) -> i32 {
    let Ok(hd) = std::env::var("FLEET_HOST_DIR") else {
        // Outside a fleet session there is no host: answer as the real tools would with
        // no daemon or server.
        return match kind {
            "curl" => {
                eprintln!("curl: (7) Failed to connect: Couldn't connect to server");
                7
            }
            _ => {
                eprintln!("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?");
                1
            }
        };
    };
    let host_dir = Path::new(&hd);
    let mut cmdline = kind.to_string();
    for a in args {
        cmdline.push(' ');
        cmdline.push_str(a);
    }
    // The terminating signals wait from before the start is logged until any fault has taken
    // them, so that a command killed at once still logs how it ended.
    faults::block(&faults::TERMINATING);
    let entry = log::start(host_dir, kind, &cmdline);
    if let Some(rule) = faults::take(host_dir, "shim", &cmdline) {
        // A slow `docker run`: the container's command is what takes the time (in the
        // daemon, so it goes on when the client is killed).
        if rule.action == "slow"
            && kind == "docker"
            && args.first().map(String::as_str) == Some("run")
        {
            std::env::set_var(
                "FLEET_CONTAINER_DELAY",
                rule.seconds.unwrap_or(1.0).to_string(),
            );
        } else {
            faults::apply(&rule, &entry);
        }
    }
    faults::let_signals_in(&entry);
    let rc = match kind {
        "curl" => curl::main(host_dir, args),
        "docker-compose" => compose::main(host_dir, args, "docker-compose"),
        _ => docker::main(host_dir, args),
    };
    entry.end_rc(rc);
    rc
}

fn main() {
    // Shims are used in pipelines (`docker exec sl-db pg_dump | gzip`): die on a closed
    // pipe like the real tools instead of failing writes.
    // SAFETY: setting a signal disposition at start-up.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().collect();
    let argv0 = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let (kind, rest) = match argv0.as_str() {
        "docker" | "docker-compose" | "curl" => (argv0.clone(), &args[1..]),
        _ => match args.get(1).map(String::as_str) {
            Some(k @ ("docker" | "docker-compose" | "curl" | "session")) => {
                (k.to_string(), &args[2..])
            }
            _ => (String::new(), &args[1..]),
        },
    };
    if args.get(1).map(String::as_str) == Some("container-run") {
        std::process::exit(app::container_run(&args[2..]));
    }
    if kind == "session" {
        match session::run(rest) {
            Ok(rc) => std::process::exit(rc),
            Err(e) => {
                eprintln!("fleet-sim session: {e}");
                std::process::exit(1);
            }
        }
    }
    if !kind.is_empty() {
        std::process::exit(shim(&kind, rest));
    }
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Up { dir, spec, owner } => launcher::up(launcher::UpArgs { dir, spec, owner }),
        Cmd::Down { dir } => fleetctl::down(&dir),
        Cmd::Watch { dir, owner } => supervisor::watch(&dir, owner),
        Cmd::StopHost { dir, host } => fleetctl::stop_host(&dir, &host),
        Cmd::Fault {
            dir,
            host,
            pattern,
            action,
            rc,
            stderr,
            stdout,
            seconds,
            times,
            scope,
            serving,
        } => {
            let rule = faults::Rule {
                pattern,
                action,
                rc,
                stderr,
                stdout,
                seconds,
                times,
                scope,
                serving,
            };
            fleetctl::add_fault(&dir, host.as_deref(), rule)
        }
        Cmd::ClearFaults { dir, host } => fleetctl::clear_faults(&dir, host.as_deref()),
        Cmd::State { dir, host } => fleetctl::print_state(&dir, &host),
        Cmd::Sql { dir, host, sql } => fleetctl::sql(&dir, &host, &sql),
    };
    if let Err(e) = res {
        eprintln!("fleet-sim: {e}");
        std::process::exit(1);
    }
}
