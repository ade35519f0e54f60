//! Which ssh_config options apply to one connection, decided as OpenSSH's `readconf.c`
//! decides: blocks in file order, the first value of an option wins (`IdentityFile` and
//! `CertificateFile` add up), `Host` patterns with `!`, `Match` criteria (`all`,
//! `canonical`, `final`, `host`, `originalhost`, `user`, `localuser`, `exec`) ANDed, each
//! negatable, `exec` skipped once a criterion before it failed, and a second, final pass
//! when a `Match final` asks for one. Pure: `exec` commands run through the caller.

use std::time::Duration;

use sha1::{Digest, Sha1};

use super::host_pattern::{self, ListMatch};
use super::ssh_config::{At, Item};

/// What the evaluation needs to know about the connection and the controller.
pub(crate) struct Query<'a> {
    /// The name given (ssh's command-line host): the inventory's address, else its name.
    pub(crate) host: &'a str,
    pub(crate) local_user: &'a str,
    /// `%l`, `%d`, `%i` of `Match exec`.
    pub(crate) local_hostname: &'a str,
    pub(crate) home: &'a str,
    pub(crate) uid: u32,
    /// Runs a `Match exec` command (after %-expansion) with the user's shell: whether it
    /// exited 0.
    pub(crate) exec: &'a dyn Fn(&str) -> bool,
}

/// The options fleetup uses, as the config sets them for a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HostConfig {
    pub(crate) hostname: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
    pub(crate) identity_files: Vec<String>,
    pub(crate) certificate_files: Vec<String>,
    pub(crate) proxy_jump: Option<String>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) server_alive_interval: Option<Duration>,
    pub(crate) identity_agent: Option<String>,
}

/// A line the evaluation cannot take, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {detail}")]
pub(crate) struct EvalError {
    pub(crate) at: At,
    pub(crate) detail: String,
}

struct Pass<'a> {
    q: &'a Query<'a>,
    /// The final pass (`Match final` / `canonical` match only there).
    last: bool,
    want_final: bool,
    opts: HostConfig,
}

pub(crate) fn evaluate(items: &[Item], q: &Query<'_>) -> Result<HostConfig, EvalError> {
    let mut pass = Pass {
        q,
        last: false,
        want_final: false,
        opts: HostConfig::default(),
    };
    pass.walk(items, false, &mut true)?;
    if pass.want_final {
        pass.last = true;
        pass.walk(items, false, &mut true)?;
    }
    Ok(pass.opts)
}

impl Pass<'_> {
    fn walk(&mut self, items: &[Item], never: bool, active: &mut bool) -> Result<(), EvalError> {
        for item in items {
            match item {
                Item::Host { patterns } => {
                    *active = !never && host_line_matches(patterns, &self.host_for_host_lines());
                }
                Item::Match { at, args } => {
                    let matched = self.match_line(at, args)?;
                    *active = !never && matched;
                }
                Item::Option { at, keyword, args } if *active => self.set(at, keyword, args)?,
                Item::Option { .. } => {}
                Item::Include { files } => {
                    let outer = *active;
                    for file in files {
                        self.walk(file, never || !outer, active)?;
                    }
                    *active = outer;
                }
            }
        }
        Ok(())
    }

    /// `Host` lines match the name given; in the final pass, the HostName found.
    fn host_for_host_lines(&self) -> String {
        match (&self.opts.hostname, self.last) {
            (Some(h), true) => h.clone(),
            _ => self.q.host.to_string(),
        }
    }

    /// `Match host` sees the HostName set so far (with `%h`), else the name given.
    fn target_host(&self) -> String {
        match &self.opts.hostname {
            Some(h) => h.replace("%h", self.q.host),
            None => self.q.host.to_string(),
        }
    }

    fn match_line(&mut self, at: &At, args: &[String]) -> Result<bool, EvalError> {
        let err = |detail: String| EvalError {
            at: at.clone(),
            detail,
        };
        if args.is_empty() {
            return Err(err("Match without criteria".into()));
        }
        let mut result = true;
        let mut i = 0;
        while i < args.len() {
            let (negate, name) = match args[i].strip_prefix('!') {
                Some(n) => (true, n.to_lowercase()),
                None => (false, args[i].to_lowercase()),
            };
            i += 1;
            let matched = match name.as_str() {
                "all"
                    if args
                        .iter()
                        .any(|a| !is_pass_criterion(a) && !a.eq_ignore_ascii_case("all")) =>
                {
                    return Err(err(
                        "'all' cannot be combined with other Match criteria".into()
                    ))
                }
                "all" => true,
                "canonical" | "final" => {
                    self.want_final |= name == "final" && !negate;
                    self.last
                }
                "host" | "originalhost" | "user" | "localuser" | "exec" => {
                    let Some(arg) = args.get(i) else {
                        return Err(err(format!("Match {name} without its argument")));
                    };
                    i += 1;
                    if name == "exec" && !result {
                        continue; // OpenSSH does not run it once the line has failed
                    }
                    self.criterion(&name, arg).map_err(err)?
                }
                other => return Err(err(format!("unsupported Match criterion {other:?}"))),
            };
            if matched == negate {
                result = false;
            }
        }
        Ok(result)
    }

    fn criterion(&self, name: &str, arg: &str) -> Result<bool, String> {
        let positive =
            |s: &str, lower: bool| host_pattern::list(s, arg, lower) == ListMatch::Positive;
        Ok(match name {
            "host" => positive(&self.target_host().to_lowercase(), true),
            "originalhost" => positive(&self.q.host.to_lowercase(), true),
            "user" => positive(self.remote_user(), false),
            "localuser" => positive(self.q.local_user, false),
            _ => (self.q.exec)(&self.expand(arg)?),
        })
    }

    fn remote_user(&self) -> &str {
        self.opts.user.as_deref().unwrap_or(self.q.local_user)
    }

    /// OpenSSH's %-tokens of `Match exec`; an unknown one is an error, as in `percent_expand`.
    fn expand(&self, text: &str) -> Result<String, String> {
        let host = self.target_host();
        let port = self.opts.port.unwrap_or(22).to_string();
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let short = self.q.local_hostname.split('.').next().unwrap_or_default();
            match chars.next() {
                Some('%') => out.push('%'),
                Some('h') => out.push_str(&host),
                Some('n') => out.push_str(self.q.host),
                Some('p') => out.push_str(&port),
                Some('r') => out.push_str(self.remote_user()),
                Some('u') => out.push_str(self.q.local_user),
                Some('l') => out.push_str(self.q.local_hostname),
                Some('L') => out.push_str(short),
                Some('d') => out.push_str(self.q.home),
                Some('i') => out.push_str(&self.q.uid.to_string()),
                Some('C') => out.push_str(&connection_hash(
                    self.q.local_hostname,
                    &host,
                    &port,
                    self.remote_user(),
                )),
                Some(t) => return Err(format!("unknown %-token %{t} in Match exec")),
                None => return Err("a lone % ends Match exec".into()),
            }
        }
        Ok(out)
    }

    /// First value wins; the lists add up.
    fn set(&mut self, at: &At, keyword: &str, args: &[String]) -> Result<(), EvalError> {
        let err = |detail: String| EvalError {
            at: at.clone(),
            detail,
        };
        let Some(first) = args.first() else {
            return Err(err(format!("{keyword} without a value")));
        };
        let o = &mut self.opts;
        match keyword {
            "hostname" => first_wins(&mut o.hostname, first.clone()),
            "user" => first_wins(&mut o.user, first.clone()),
            "proxyjump" => first_wins(&mut o.proxy_jump, first.clone()),
            "identityagent" => first_wins(&mut o.identity_agent, first.clone()),
            "identityfile" => o.identity_files.push(first.clone()),
            "certificatefile" => o.certificate_files.push(first.clone()),
            "port" => {
                let port = first
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| err(format!("bad port {first:?}")))?;
                first_wins(&mut o.port, port);
            }
            "connecttimeout" => first_wins(&mut o.connect_timeout, seconds(first).map_err(err)?),
            "serveraliveinterval" => {
                first_wins(&mut o.server_alive_interval, seconds(first).map_err(err)?)
            }
            _ => {}
        }
        Ok(())
    }
}

fn first_wins<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn is_pass_criterion(arg: &str) -> bool {
    let a = arg.trim_start_matches('!');
    a.eq_ignore_ascii_case("canonical") || a.eq_ignore_ascii_case("final")
}

/// A `Host` line applies when one pattern matches and no negated one does.
fn host_line_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if host_pattern::wildcard(host, neg) => return false,
            Some(_) => {}
            None => matched |= host_pattern::wildcard(host, p),
        }
    }
    matched
}

/// OpenSSH's time format (`convtime`): seconds, or a sum of numbers each followed by
/// s, m, h, d or w.
fn seconds(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad time {text:?}");
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c.to_ascii_lowercase() {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        total += number.parse::<u64>().map_err(|_| bad())? * unit;
        number.clear();
    }
    if !number.is_empty() {
        total += number.parse::<u64>().map_err(|_| bad())?;
    }
    Ok(Duration::from_secs(total))
}

/// `%C`: SHA-1 of `%l%h%p%r`, in hex.
fn connection_hash(local: &str, host: &str, port: &str, user: &str) -> String {
    let digest = Sha1::digest(format!("{local}{host}{port}{user}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "ssh_config_eval_tests.rs"]
mod tests;
