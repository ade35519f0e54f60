//! A scripted fleet for the engine's tests: hosts that answer each command by the first
//! rule whose text it contains, that can be unreachable, hang until their command is
//! terminated, or lose their connection. What each host ran is kept, in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::mutex::lock;
use crate::transport::kept::Kept;
use crate::transport::{
    ConnectTarget, Connection, Connector, ExecRequest, ExitStatus, OutputSink, OutputStream,
    TransportError,
};

/// How a host answers a command.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Exits with this code, after writing this to stdout.
    Exit(u32, &'static str),
    /// Exits 0 after this long, unless it is terminated first.
    After(std::time::Duration),
    /// Runs until it is terminated (its request's cancel token).
    Hang,
    /// The connection drops while the command runs.
    Lose,
}

#[derive(Debug, Clone, Default)]
struct Host {
    rules: Vec<(&'static str, Reply)>,
    /// Connections after the first are refused (the host went down).
    stays_down: bool,
    unreachable: bool,
}

/// The fleet: hosts not scripted answer every command with exit 0.
#[derive(Debug, Clone, Default)]
pub struct Scripted {
    /// Shared by every connection: a test may change a host while it waits for its turn.
    hosts: Arc<Mutex<HashMap<String, Host>>>,
    ran: Arc<Mutex<Vec<(String, String)>>>,
    connects: Arc<Mutex<HashMap<String, u32>>>,
    kept: Arc<Kept<ScriptedConnection>>,
    /// Every connection opened, by host: what `kill` reaches.
    opened: Arc<Mutex<Vec<Opened>>>,
}

/// A connection opened to a host.
type Opened = (String, Arc<Link>);

/// The state of one scripted connection.
#[derive(Debug, Default)]
struct Link {
    /// Commands fail: the connection is gone.
    lost: AtomicBool,
    /// The controller knows it (as keepalives tell it); a silent loss is found out by the
    /// next command.
    noticed: AtomicBool,
}

impl Scripted {
    fn change(&self, host: &str, f: impl FnOnce(&mut Host)) {
        let mut hosts = lock(&self.hosts);
        f(hosts.entry(host.into()).or_default());
    }

    /// `host` answers commands containing `text` with `reply`.
    pub fn on(self, host: &str, text: &'static str, reply: Reply) -> Self {
        self.answer(host, text, reply);
        self
    }

    /// From now on, `host` answers commands containing `text` with `reply` (before its
    /// earlier rules).
    pub fn answer(&self, host: &str, text: &'static str, reply: Reply) {
        self.change(host, |h| h.rules.insert(0, (text, reply)));
    }

    pub fn unreachable(self, host: &str) -> Self {
        self.change(host, |h| h.unreachable = true);
        self
    }

    /// Once its connection is lost, the host refuses every new one.
    pub fn stays_down(self, host: &str) -> Self {
        self.change(host, |h| h.stays_down = true);
        self
    }

    /// The commands `host` ran, in order.
    pub fn ran(&self, host: &str) -> Vec<String> {
        let ran = lock(&self.ran);
        ran.iter()
            .filter(|(h, _)| h == host)
            .map(|(_, c)| c.clone())
            .collect()
    }

    pub fn connections(&self, host: &str) -> u32 {
        let connects = lock(&self.connects);
        connects.get(host).copied().unwrap_or(0)
    }

    /// Every open connection to `host` dies now; `silently`: the controller is not told.
    pub fn kill(&self, host: &str, silently: bool) {
        let opened = lock(&self.opened);
        for (_, link) in opened.iter().filter(|(h, _)| h == host) {
            link.lost.store(true, Ordering::SeqCst);
            link.noticed.store(!silently, Ordering::SeqCst);
        }
    }

    fn reply(&self, host: &str, command: &str) -> Reply {
        let hosts = lock(&self.hosts);
        hosts
            .get(host)
            .and_then(|h| h.rules.iter().find(|(text, _)| command.contains(text)))
            .map_or(Reply::Exit(0, ""), |(_, reply)| reply.clone())
    }
}

impl Connector for Scripted {
    type Connection = ScriptedConnection;

    async fn connect(&self, target: &ConnectTarget) -> Result<ScriptedConnection, TransportError> {
        let name = target.name.clone();
        let count = {
            let mut connects = lock(&self.connects);
            let count = connects.entry(name.clone()).or_default();
            *count += 1;
            *count
        };
        let host = {
            let hosts = lock(&self.hosts);
            hosts.get(&name).cloned().unwrap_or_default()
        };
        if host.unreachable || (host.stays_down && count > 1) {
            return Err(TransportError::Refused {
                host: name,
                addr: "scripted:22".into(),
            });
        }
        let link = Arc::new(Link::default());
        let mut opened = lock(&self.opened);
        opened.push((name.clone(), link.clone()));
        Ok(ScriptedConnection {
            name,
            fleet: self.clone(),
            link,
        })
    }

    fn kept(&self) -> &Kept<ScriptedConnection> {
        &self.kept
    }
}

pub struct ScriptedConnection {
    name: String,
    fleet: Scripted,
    link: Arc<Link>,
}

impl Connection for ScriptedConnection {
    fn host(&self) -> &str {
        &self.name
    }

    async fn exec(
        &self,
        request: &ExecRequest<'_>,
        sink: &mut OutputSink<'_>,
    ) -> Result<ExitStatus, TransportError> {
        if self.link.lost.load(Ordering::SeqCst) {
            return Err(self.lose(false));
        }
        if let Some(guard) = Guard::of(request.command) {
            return self.guard(&guard, request, sink).await;
        }
        if let Some((step, nonce)) = riding(request.command) {
            return Ok(self.ride(&step, &nonce, sink));
        }
        lock(&self.fleet.ran).push((self.name.clone(), request.command.to_string()));
        match self.fleet.reply(&self.name, request.command) {
            Reply::Exit(code, stdout) => {
                sink(OutputStream::Stdout, stdout.as_bytes());
                Ok(ExitStatus::Code(code))
            }
            Reply::After(took) => {
                let cancelled = async {
                    match &request.cancel {
                        Some(token) => token.cancelled().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(took) => Ok(ExitStatus::Code(0)),
                    _ = cancelled => Err(TransportError::Cancelled { host: self.name.clone() }),
                }
            }
            Reply::Hang => {
                match &request.cancel {
                    Some(token) => token.cancelled().await,
                    None => std::future::pending().await,
                }
                Err(TransportError::Cancelled {
                    host: self.name.clone(),
                })
            }
            Reply::Lose => Err(self.lose(true)),
        }
    }

    fn is_alive(&self) -> bool {
        !self.link.noticed.load(Ordering::SeqCst)
    }

    async fn close(&self) {
        self.link.lost.store(true, Ordering::SeqCst);
        self.link.noticed.store(true, Ordering::SeqCst);
    }
}

/// A guarded command (see `guard`), read back into its parts: the scripted host answers
/// each part by its rules, as the shell would run them.
struct Guard {
    lock: Option<String>,
    probe: String,
    sum: String,
    step: Option<String>,
    nonce: String,
}

impl Guard {
    fn of(script: &str) -> Option<Guard> {
        let words = shell_words::split(script).ok()?;
        // The probe's shell starts inside `o=$(`.
        let own = |w: &[String]| w[0].ends_with("${SHELL:-/bin/sh}") && w[1] == "-c";
        let commands: Vec<String> = words
            .windows(3)
            .filter(|w| own(w))
            .map(|w| w[2].clone())
            .collect();
        let sum = words.windows(3).find(|w| w[0] == "$1 $2" && w[1] == "!=")?[2].clone();
        let nonce = words
            .windows(3)
            .find(|w| w[0] == "printf" && w[1] == "%s changed\\n")?[2]
            .trim_end_matches(';')
            .to_string();
        let lock = script
            .split_once("l=$( ( ")
            .and_then(|(_, rest)| rest.split_once("\n) </dev/null )"))
            .map(|(take, _)| take.to_string());
        Some(Guard {
            lock,
            probe: commands.first()?.clone(),
            sum,
            step: commands.get(1).cloned(),
            nonce,
        })
    }
}

impl ScriptedConnection {
    /// Answers a guarded command: the lock, the probe compared, and the step only if both
    /// hold. Each part the host runs is kept as a command of its own, marked `guard: `,
    /// all of them one exec.
    async fn guard(
        &self,
        guard: &Guard,
        request: &ExecRequest<'_>,
        sink: &mut OutputSink<'_>,
    ) -> Result<ExitStatus, TransportError> {
        let mut parts = Vec::new();
        let mut line = |word: &str| {
            sink(
                OutputStream::Stdout,
                format!("{} {word}\n", guard.nonce).as_bytes(),
            )
        };
        let verdict = 'v: {
            if let Some(take) = &guard.lock {
                parts.push("lock".to_string());
                if !matches!(self.fleet.reply(&self.name, take), Reply::Exit(0, out) if out.trim() == "taken")
                {
                    break 'v "held";
                }
            }
            parts.push(guard.probe.clone());
            match self.fleet.reply(&self.name, &guard.probe) {
                Reply::Exit(0, out)
                    if crate::cksum::Cksum::of(out.trim_end_matches('\n').as_bytes()).line()
                        == guard.sum =>
                {
                    "stood"
                }
                _ => "changed",
            }
        };
        let step = guard.step.as_ref().filter(|_| verdict == "stood");
        let step = step.map(|step| (step, self.fleet.reply(&self.name, step)));
        // A connection lost under the step takes the verdict's line with it.
        if !matches!(step, Some((_, Reply::Lose))) {
            line(verdict);
        }
        // As the shell: the step waits for the controller's go-ahead, and without it runs
        // nothing.
        if let Some((step, _)) = step.as_ref().filter(|(_, r)| !matches!(r, Reply::Lose)) {
            if request.input().await != super::guard::go(&guard.nonce) {
                parts.push(format!("no go-ahead for {step}"));
                self.keep(&parts);
                sink(OutputStream::Stderr, b"no go-ahead: the step did not run\n");
                return Ok(ExitStatus::Code(1));
            }
        }
        let exit = match step {
            Some((step, Reply::Exit(code, out))) => {
                parts.push(step.clone());
                sink(OutputStream::Stdout, out.as_bytes());
                Ok(ExitStatus::Code(code))
            }
            // The step started, and the connection dropped before anything came back.
            Some((step, Reply::Lose)) => {
                parts.push(step.clone());
                Err(self.lose(true))
            }
            _ => Ok(ExitStatus::Code(0)),
        };
        self.keep(&parts);
        exit
    }

    /// The connection is lost (and known so), before a command was sent (its channel would
    /// not open) or while it ran.
    fn lose(&self, sent: bool) -> TransportError {
        self.link.lost.store(true, Ordering::SeqCst);
        self.link.noticed.store(true, Ordering::SeqCst);
        TransportError::ConnectionLost {
            host: self.name.clone(),
            detail: "scripted".into(),
            sent,
        }
    }

    /// Keeps a guarded command's parts as the one command the host ran.
    fn keep(&self, parts: &[String]) {
        lock(&self.fleet.ran).push((self.name.clone(), format!("guard: {}", parts.join(" + "))));
    }
}

/// A last step with the lock's release riding after it: the step, and the nonce of the
/// release's line.
fn riding(script: &str) -> Option<(String, String)> {
    let words = shell_words::split(script).ok()?;
    let nonce = words
        .windows(3)
        .find(|w| w[0] == "printf" && w[1] == "%s released\\n")?[2]
        .clone();
    let step = words.get(2).filter(|_| words[0] == "${SHELL:-/bin/sh}")?;
    Some((step.clone(), nonce))
}

impl ScriptedConnection {
    /// Answers the last step with the release riding: the release runs (and says so on
    /// stderr) only when the step exits 0.
    fn ride(&self, step: &str, nonce: &str, sink: &mut OutputSink<'_>) -> ExitStatus {
        let (code, out) = match self.fleet.reply(&self.name, step) {
            Reply::Exit(code, out) => (code, out),
            _ => (0, ""),
        };
        sink(OutputStream::Stdout, out.as_bytes());
        let release = if code == 0 { " + release" } else { "" };
        if code == 0 {
            sink(
                OutputStream::Stderr,
                format!("{nonce} released\n").as_bytes(),
            );
        }
        lock(&self.fleet.ran).push((self.name.clone(), format!("ride: {step}{release}")));
        ExitStatus::Code(code)
    }
}
