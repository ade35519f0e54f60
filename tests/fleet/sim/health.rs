//! A container's healthcheck as docker runs it (springcomp's compose file gives sl-db one):
//! what `docker inspect` shows of it, and what compose's `service_healthy` waits for.
//!
//! Its probes are told by the clock, not run: the first one a start interval (5 s, docker's
//! default) after the start while a start period runs, else one interval after it, then one
//! every interval while the container runs. Each succeeds. `docker inspect` lists the last
//! five with their times, so a host with a healthcheck reads differently every interval
//! while nothing on it changes, as a real one does.

use crate::util::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use serde_yaml::Value as Y;

/// Docker keeps this many probe results (`maxLogEntries`).
const LOG_ENTRIES: u64 = 5;
/// Docker's probe interval when none is given.
const DEFAULT_INTERVAL: f64 = 30.0;
/// Docker's start interval (API 1.44+): the probes' pace during a start period.
const START_INTERVAL: f64 = 5.0;
/// What a probe takes.
const PROBE_TIME: f64 = 0.04;

/// `Config.Healthcheck`: what compose's `healthcheck:` sets; seconds where docker says
/// nanoseconds.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Option<f64>,
    pub timeout: Option<f64>,
    pub start_period: Option<f64>,
    pub retries: Option<u64>,
}

/// The health docker reports of a container that has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    /// What docker says once the container stops (its monitor stopped).
    Unhealthy,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// As `docker ps` adds it to "Up 3 hours".
    pub fn ps_suffix(self) -> &'static str {
        match self {
            Status::Starting => " (health: starting)",
            Status::Healthy => " (healthy)",
            Status::Unhealthy => " (unhealthy)",
        }
    }
}

impl Healthcheck {
    /// A service's `healthcheck:`, as compose reads it: `test` as a list, or a string run
    /// by the shell; `disable: true` is docker's `NONE`.
    /// `docker run`'s `--health-*` flags (`--no-healthcheck`: `NONE`), with the client's
    /// words for a bad duration.
    pub fn from_run(o: &crate::opts::Opts) -> Result<Option<Healthcheck>, String> {
        if o.has(&["--no-healthcheck"]) {
            return Ok(Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        let duration = |flag: &str| match o.get(&[flag]) {
            Some(s) => go_duration(&s).map(Some).ok_or_else(|| {
                format!(
                    "invalid argument \"{s}\" for \"{flag}\" flag: time: invalid duration \"{s}\""
                )
            }),
            None => Ok(None),
        };
        let retries = match o.get(&["--health-retries"]) {
            Some(r) => Some(r.parse().map_err(|_| {
                format!("invalid argument \"{r}\" for \"--health-retries\" flag: strconv.ParseInt: parsing \"{r}\": invalid syntax")
            })?),
            None => None,
        };
        let check = Healthcheck {
            test: (o.get(&["--health-cmd"]).into_iter())
                .flat_map(|cmd| ["CMD-SHELL".to_string(), cmd])
                .collect(),
            interval: duration("--health-interval")?,
            timeout: duration("--health-timeout")?,
            start_period: duration("--health-start-period")?,
            retries,
        };
        Ok((check != Healthcheck::default()).then_some(check))
    }

    pub fn from_compose(v: &Y) -> Result<Option<Healthcheck>, String> {
        let Some(h) = v.get("healthcheck") else {
            return Ok(None);
        };
        if h.get("disable").and_then(Y::as_bool) == Some(true) {
            return Ok(Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Default::default()
            }));
        }
        let test = match h.get("test") {
            Some(Y::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
            Some(Y::Sequence(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or("healthcheck.test must be a string or a list of strings")?,
            _ => Vec::new(),
        };
        let duration = |key: &str| match h.get(key).and_then(Y::as_str) {
            Some(s) => go_duration(s)
                .map(Some)
                .ok_or_else(|| format!("healthcheck.{key}: invalid duration {s:?}")),
            None => Ok(None),
        };
        Ok(Some(Healthcheck {
            test,
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start_period")?,
            retries: h.get("retries").and_then(Y::as_u64),
        }))
    }

    /// Whether it probes at all: `disable: true` (`NONE`) does not.
    pub fn runs(&self) -> bool {
        self.test.first().is_some_and(|t| t != "NONE")
    }

    /// `Config.Healthcheck` as docker prints it: durations in nanoseconds, unset ones left out.
    pub fn config_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("Test".into(), json!(self.test));
        let nanos = |s: f64| json!((s * 1e9).round() as u64);
        for (key, v) in [
            ("Interval", self.interval),
            ("Timeout", self.timeout),
            ("StartPeriod", self.start_period),
        ] {
            if let Some(s) = v {
                m.insert(key.into(), nanos(s));
            }
        }
        if let Some(r) = self.retries {
            m.insert("Retries".into(), json!(r));
        }
        Value::Object(m)
    }

    /// The times of the probes run between `started` and `until`, the last five of them,
    /// and how many ran in all.
    fn probes(&self, started: f64, until: f64) -> (Vec<f64>, u64) {
        if !self.runs() || until < self.healthy_at(started) {
            return (Vec::new(), 0);
        }
        let interval = self.interval();
        let first_at = started + self.first_probe();
        let count = ((until - PROBE_TIME - first_at) / interval).floor() as u64 + 1;
        let kept = count.min(LOG_ENTRIES);
        let times = (count - kept..count)
            .map(|k| first_at + k as f64 * interval)
            .collect();
        (times, count)
    }

    /// Its status for a container that started at `started` and runs until `until`
    /// (`running`: it still does).
    pub fn status(&self, started: f64, until: f64, running: bool) -> Status {
        status_after(self.probes(started, until).1, running)
    }

    /// `State.Health`: the status, and the last probes with their times.
    pub fn state_json(&self, started: f64, until: f64, running: bool) -> Value {
        let output = probe_output(&self.test);
        let (times, count) = self.probes(started, until);
        let log: Vec<Value> = times
            .into_iter()
            .map(|t| {
                json!({"Start": rfc3339(t), "End": rfc3339(t + PROBE_TIME), "ExitCode": 0, "Output": output})
            })
            .collect();
        json!({
            "Status": status_after(count, running).word(),
            "FailingStreak": 0,
            "Log": log,
        })
    }

    /// When a running container that started at `started` is first reported healthy.
    pub fn healthy_at(&self, started: f64) -> f64 {
        started + self.first_probe() + PROBE_TIME
    }

    fn interval(&self) -> f64 {
        self.interval.unwrap_or(DEFAULT_INTERVAL).max(0.001)
    }

    /// The first probe's time after the start.
    fn first_probe(&self) -> f64 {
        match self.start_period {
            Some(p) if p > 0.0 => START_INTERVAL.min(self.interval()),
            _ => self.interval(),
        }
    }
}

/// The status after `count` probes, all of them successes.
fn status_after(count: u64, running: bool) -> Status {
    match (running, count) {
        (false, _) => Status::Unhealthy,
        (true, 0) => Status::Starting,
        (true, _) => Status::Healthy,
    }
}

/// What a succeeding probe prints: `pg_isready`'s line for sl-db's, nothing for others.
fn probe_output(test: &[String]) -> &'static str {
    match test.iter().any(|t| t.contains("pg_isready")) {
        true => "127.0.0.1:5432 - accepting connections\n",
        false => "",
    }
}

/// A Go duration as compose takes one: "10s", "1m30s", "500ms", "1h"; seconds.
pub fn go_duration(s: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg_isready(start_period: Option<f64>) -> Healthcheck {
        Healthcheck {
            test: vec!["CMD-SHELL".into(), "pg_isready".into()],
            interval: Some(10.0),
            start_period,
            retries: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        assert_eq!(go_duration("10s"), Some(10.0));
        assert_eq!(go_duration("1m30s"), Some(90.0));
        assert_eq!(go_duration("500ms"), Some(0.5));
        assert_eq!(go_duration("1h"), Some(3600.0));
        assert_eq!(go_duration("10"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn probes_start_at_the_start_interval_during_a_start_period_then_keep_the_last_five() {
        let h = pg_isready(Some(1.0));
        assert_eq!(h.status(100.0, 104.0, true), Status::Starting);
        assert_eq!(h.probes(100.0, 106.0), (vec![105.0], 1));
        let (times, count) = h.probes(100.0, 100.0 + 5.0 + 70.0 + 1.0);
        assert_eq!(count, 8);
        assert_eq!(times, vec![135.0, 145.0, 155.0, 165.0, 175.0]);
        assert_eq!(h.status(100.0, 200.0, false), Status::Unhealthy);
        // Without a start period the first probe waits a whole interval.
        assert_eq!(pg_isready(None).probes(100.0, 106.0).1, 0);
        assert_eq!(h.healthy_at(100.0), 105.0 + PROBE_TIME);
    }

    #[test]
    fn inspect_reads_differently_after_each_probe() {
        let h = pg_isready(Some(1.0));
        let at = |t: f64| h.state_json(100.0, t, true);
        assert_eq!(at(120.0), at(124.0));
        assert_ne!(at(124.0), at(126.0));
        assert_eq!(at(126.0)["Status"], "healthy");
        assert_eq!(
            h.config_json(),
            json!({"Test": ["CMD-SHELL", "pg_isready"], "Interval": 10_000_000_000u64, "StartPeriod": 1_000_000_000u64, "Retries": 3})
        );
    }
}
