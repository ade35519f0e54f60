//! The `curl` shim: the simulated containers answer on their own addresses (sl-app's
//! gunicorn on :7777, sl-email's SMTP on :20381) and on the host ports they publish, with
//! curl's messages and exit codes for refused connections and HTTP errors.

use crate::opts;
use crate::releases::{self, HEALTH_SINCE, VERSION_ENDPOINT_SINCE};
use crate::state::{self, Container, HostState};
use std::io::Write;
use std::path::Path;

struct Resp {
    code: u32,
    body: String,
}

/// The options that take a value, so that their values are not read as the URL.
const VALUED: [&str; 23] = [
    "-o",
    "--output",
    "-w",
    "--write-out",
    "-m",
    "--max-time",
    "--connect-timeout",
    "--retry",
    "--retry-delay",
    "--retry-max-time",
    "-X",
    "--request",
    "-H",
    "--header",
    "-A",
    "--user-agent",
    "-d",
    "--data",
    "-u",
    "--user",
    "-e",
    "--referer",
    "--url",
];

pub fn main(h: &Path, args: &[String]) -> i32 {
    let o = match opts::parse(args, &VALUED, true) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "curl: option {e}\ncurl: try 'curl --help' or 'curl --manual' for more information"
            );
            return 2;
        }
    };
    if o.has(&["-V", "--version"]) {
        println!("curl 7.88.1 (x86_64-pc-linux-gnu) libcurl/7.88.1 OpenSSL/3.0.11 zlib/1.2.13");
        return 0;
    }
    let out = Output::from_opts(&o);
    let Some(url) = o.get(&["--url"]).or_else(|| o.pos.first().cloned()) else {
        eprintln!("curl: no URL specified!\ncurl: try 'curl --help' or 'curl --manual' for more information");
        return 2;
    };
    let (host, port, path) = parse_url(&url);
    match exchange(h, &url, &host, port, &path) {
        Exchange::Done(rc) => rc,
        Exchange::EmptyReply => {
            if out.show_err {
                eprintln!("curl: (52) Empty reply from server");
            }
            52
        }
        Exchange::Unreachable => out.unreachable(&host, port),
        Exchange::Http(r) => out.deliver(r),
    }
}

/// How the connection went, before the options decide what curl prints.
enum Exchange {
    /// Not HTTP, and already printed: curl exits with this code.
    Done(i32),
    /// Something listens there but sends nothing back.
    EmptyReply,
    /// Nothing listens there, or the app in the container cannot answer.
    Unreachable,
    Http(Resp),
}

/// What the address answers: sl-email's SMTP greets telnet and is not HTTP, and only
/// sl-app's gunicorn speaks HTTP.
fn exchange(h: &Path, url: &str, host: &str, port: u16, path: &str) -> Exchange {
    let st = state::load(h).ok();
    let target = st
        .as_ref()
        .and_then(|st| find_target(st, host, port).map(|(c, p)| (st, c, p)));
    match target {
        Some((_, c, 20381)) if c.runs("email_handler.py") || url.starts_with("telnet://") => {
            if url.starts_with("telnet://") && c.runs("email_handler.py") {
                print!("220 {} ESMTP SimpleLogin\r\n", c.hostname);
                let _ = std::io::stdout().flush();
                return Exchange::Done(0);
            }
            eprintln!("curl: (1) Received HTTP/0.9 when not allowed");
            Exchange::Done(1)
        }
        Some((st, c, 7777)) if c.runs("gunicorn") => match app_response(st, c, path) {
            Some(r) => Exchange::Http(r),
            None => Exchange::Unreachable,
        },
        Some(_) => Exchange::EmptyReply,
        None => Exchange::Unreachable,
    }
}

/// The options that shape curl's output once the connection is made or has failed.
struct Output {
    fail: bool,
    show_err: bool,
    head_only: bool,
    write_out: Option<String>,
    out_file: Option<String>,
}

impl Output {
    fn from_opts(o: &opts::Opts) -> Output {
        let silent = o.has(&["-s", "--silent"]);
        Output {
            fail: o.has(&["-f", "--fail", "--fail-with-body"]),
            show_err: o.has(&["-S", "--show-error"]) || !silent,
            head_only: o.has(&["-I", "--head"]),
            write_out: o.get(&["-w", "--write-out"]),
            out_file: o.get(&["-o", "--output"]),
        }
    }

    /// `-w`'s template: scripts read the status code from it, 000 when nothing answered.
    fn emit_write_out(&self, code: u32) {
        if let Some(w) = &self.write_out {
            let s = w
                .replace("%{http_code}", &format!("{code:03}"))
                .replace("%{response_code}", &format!("{code:03}"))
                .replace("\\n", "\n");
            print!("{s}");
            let _ = std::io::stdout().flush();
        }
    }

    /// curl's exit 7, with the message of a refused port on 127.0.0.1 and of a container
    /// address that nothing answers on.
    fn unreachable(&self, host: &str, port: u16) -> i32 {
        self.emit_write_out(0);
        if self.show_err {
            let why = if host.starts_with("172.") {
                "after 3071 ms: No route to host"
            } else {
                "after 0 ms: Couldn't connect to server"
            };
            eprintln!("curl: (7) Failed to connect to {host} port {port} {why}");
        }
        7
    }

    /// An HTTP answer: the body (or with `-I` the head) to stdout or `-o`'s file, unless
    /// `-f` turns an error status into curl's exit 22.
    fn deliver(&self, r: Resp) -> i32 {
        if self.fail && r.code >= 400 {
            self.emit_write_out(r.code);
            if self.show_err {
                eprintln!("curl: (22) The requested URL returned error: {}", r.code);
            }
            return 22;
        }
        let body = if self.head_only {
            format!("HTTP/1.1 {} {}\r\nServer: gunicorn\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n", r.code, reason(r.code), r.body.len())
        } else {
            r.body
        };
        match self.out_file.as_deref() {
            Some("-") | None => {
                print!("{body}");
                let _ = std::io::stdout().flush();
            }
            Some(f) => {
                if let Err(e) = std::fs::write(f, body.as_bytes()) {
                    if self.show_err {
                        eprintln!("curl: (23) Failure writing output to destination: {e}");
                    }
                    return 23;
                }
            }
        }
        self.emit_write_out(r.code);
        0
    }
}

fn reason(code: u32) -> &'static str {
    match code {
        200 => "OK",
        302 => "FOUND",
        404 => "NOT FOUND",
        500 => "INTERNAL SERVER ERROR",
        _ => "",
    }
}

fn parse_url(url: &str) -> (String, u16, String) {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(80)),
        None => (
            hostport.to_string(),
            if url.starts_with("https") { 443 } else { 80 },
        ),
    };
    let path = path.split(['?', '#']).next().unwrap_or("/").to_string();
    (host, port, path)
}

fn not_found() -> Resp {
    Resp {
        code: 404,
        body: "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server.</p>\n".into(),
    }
}

/// The running container (and its port) an address reaches: a published host port on
/// 127.0.0.1, or a container's own address on its network.
fn find_target<'a>(st: &'a HostState, host: &str, port: u16) -> Option<(&'a Container, u16)> {
    let running = st
        .containers
        .iter()
        .filter(|c| c.status == "running" && !st.crashing(c));
    if host == "127.0.0.1" || host == "localhost" || host == "0.0.0.0" {
        for c in running {
            for p in &c.ports {
                let ip_ok =
                    p.host_ip.is_empty() || p.host_ip == "0.0.0.0" || p.host_ip == "127.0.0.1";
                if ip_ok && p.host_port == port.to_string() {
                    let cp = p
                        .container
                        .split('/')
                        .next()
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(0);
                    return Some((c, cp));
                }
            }
        }
        return None;
    }
    let c = running
        .into_iter()
        .find(|c| c.endpoints.iter().any(|e| e.ip == host))?;
    let listens = (c.runs("gunicorn") && port == 7777)
        || (c.runs("email_handler.py") && port == 20381)
        || (c.is_postgres() && port == 5432);
    listens.then_some((c, port))
}

fn app_response(st: &HostState, c: &Container, path: &str) -> Option<Resp> {
    let v = c.app_version()?;
    let problem = st.schema_problem(&v);
    Some(match path {
        "/health" if releases::version_ge(&v, HEALTH_SINCE) => Resp { code: 200, body: "success".into() },
        "/version" if releases::version_ge(&v, VERSION_ENDPOINT_SINCE) => Resp { code: 200, body: v },
        "/health" | "/version" => not_found(),
        "/" => Resp { code: 302, body: String::new() },
        _ if problem.is_some() => Resp { code: 500, body: "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n".into() },
        _ => not_found(),
    })
}
