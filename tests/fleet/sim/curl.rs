//! The `curl` shim: answers for the simulated app on 127.0.0.1:7777 (/health, /version),
//! with curl's messages and exit codes for refused connections and HTTP errors.

use crate::opts;
use crate::state::{self, VERSION_ENDPOINT_SINCE};
use std::io::Write;
use std::path::Path;

struct Resp {
    code: u32,
    body: String,
}

pub fn main(h: &Path, args: &[String]) -> i32 {
    let valued = [
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
    let o = match opts::parse(args, &valued, true) {
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
    let fail = o.has(&["-f", "--fail", "--fail-with-body"]);
    let silent = o.has(&["-s", "--silent"]);
    let show_err = o.has(&["-S", "--show-error"]) || !silent;
    let head_only = o.has(&["-I", "--head"]);
    let Some(url) = o.get(&["--url"]).or_else(|| o.pos.first().cloned()) else {
        eprintln!("curl: no URL specified!\ncurl: try 'curl --help' or 'curl --manual' for more information");
        return 2;
    };
    let (host, port, path) = parse_url(&url);
    let resp = if (host == "127.0.0.1" || host == "localhost") && port == 7777 {
        app_response(h, &path)
    } else {
        None
    };
    let write_out = o.get(&["-w", "--write-out"]);
    let out_file = o.get(&["-o", "--output"]);
    let emit_w = |code: u32| {
        if let Some(w) = &write_out {
            let s = w
                .replace("%{http_code}", &format!("{code:03}"))
                .replace("%{response_code}", &format!("{code:03}"))
                .replace("\\n", "\n");
            print!("{s}");
            let _ = std::io::stdout().flush();
        }
    };
    let Some(r) = resp else {
        emit_w(0);
        if show_err {
            eprintln!("curl: (7) Failed to connect to {host} port {port} after 0 ms: Couldn't connect to server");
        }
        return 7;
    };
    if fail && r.code >= 400 {
        emit_w(r.code);
        if show_err {
            eprintln!("curl: (22) The requested URL returned error: {}", r.code);
        }
        return 22;
    }
    let body = if head_only {
        format!("HTTP/1.1 {} {}\r\nServer: gunicorn\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n", r.code, reason(r.code), r.body.len())
    } else {
        r.body
    };
    match out_file.as_deref() {
        Some("-") | None => {
            print!("{body}");
            let _ = std::io::stdout().flush();
        }
        Some(f) => {
            if let Err(e) = std::fs::write(f, body.as_bytes()) {
                if show_err {
                    eprintln!("curl: (23) Failure writing output to destination: {e}");
                }
                return 23;
            }
        }
    }
    emit_w(r.code);
    0
}

fn reason(code: u32) -> &'static str {
    match code {
        200 => "OK",
        404 => "NOT FOUND",
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

fn app_response(h: &Path, path: &str) -> Option<Resp> {
    let st = state::load(h).ok()?;
    let v = st.serving_version()?;
    Some(match path {
        "/health" => Resp {
            code: 200,
            body: "success".into(),
        },
        "/version" if state::version_ge(&v, VERSION_ENDPOINT_SINCE) => Resp { code: 200, body: v },
        "/" => Resp {
            code: 302,
            body: String::new(),
        },
        _ => not_found(),
    })
}
