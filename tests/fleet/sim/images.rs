//! `docker images`, `docker pull`, `docker rmi`.

use crate::docker::{daemon_err, usage_err};
use crate::format::{print_list, tabulate};
use crate::opts;
use crate::releases::{self as state_rel, ImageRef};
use crate::state::{self, HostState};
use crate::util::{self, human_ago, rfc3339};
use serde_json::{json, Value};
use std::path::Path;

fn load(h: &Path) -> Result<HostState, String> {
    state::load(h)
}

fn human_size(n: u64) -> String {
    if n >= 1_000_000_000 {
        let s = format!("{:.2}", n as f64 / 1e9);
        format!("{}GB", s.trim_end_matches('0').trim_end_matches('.'))
    } else {
        format!("{}MB", n / 1_000_000)
    }
}

pub fn images(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = match opts::parse(a, &["-f", "--filter", "--format"], true) {
        Ok(o) => o,
        Err(e) => return Ok(usage_err("images", &e)),
    };
    let st = load(h)?;
    let now = util::now();
    let want = o.pos.first().map(|p| {
        let r = ImageRef::parse(p).unwrap_or(ImageRef {
            repo: p.clone(),
            tag: String::new(),
        });
        (r.repo, if p.contains(':') { Some(r.tag) } else { None })
    });
    let rows: Vec<Value> = st
        .images
        .iter()
        .filter(|i| match &want {
            Some((repo, tag)) => {
                &i.repo == repo && tag.as_ref().map(|t| &i.tag == t).unwrap_or(true)
            }
            None => true,
        })
        .map(|i| {
            json!({"Repository": i.repo, "Tag": i.tag, "ID": &i.id[..12],
                   "CreatedSince": format!("{} ago", human_ago(now - i.created)),
                   "CreatedAt": rfc3339(i.created), "Size": human_size(i.size), "Digest": "<none>"})
        })
        .collect();
    if o.has(&["-q", "--quiet"]) {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    let fmt = o.get(&["--format"]).unwrap_or_else(|| {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}".into()
    });
    if o.get(&["--format"]).is_none() {
        let mut lines = vec![vec![
            "REPOSITORY".to_string(),
            "TAG".into(),
            "IMAGE ID".into(),
            "CREATED".into(),
            "SIZE".into(),
        ]];
        for r in &rows {
            lines.push(
                ["Repository", "Tag", "ID", "CreatedSince", "Size"]
                    .iter()
                    .map(|k| r[*k].as_str().unwrap_or("").to_string())
                    .collect(),
            );
        }
        print!("{}", tabulate(&lines));
        return Ok(0);
    }
    Ok(print_list(&fmt, &rows))
}

/// Pull into `st`; messages go to `out` (stdout for docker pull, stderr for docker run).
pub fn do_pull(
    st: &mut HostState,
    r: &ImageRef,
    quiet: bool,
    to_stderr: bool,
) -> Result<(), String> {
    let say = |s: &str| {
        if quiet {
            return;
        }
        if to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    if let Err(e) = state_rel::registry_has(r) {
        return Err(state_rel::pull_error_message(r, &e));
    }
    if st.image(r).is_some() {
        say(&format!("{}: Pulling from {}", r.tag, r.repo));
        say(&format!(
            "Digest: sha256:{}",
            util::hex_id(&format!("digest-{}", r.full()))
        ));
        say(&format!("Status: Image is up to date for {}", r.full()));
    } else {
        say(&format!("{}: Pulling from {}", r.tag, r.repo));
        let layer = &util::hex_id(&format!("layer-{}", r.full()))[..12];
        say(&format!("{layer}: Pull complete"));
        say(&format!(
            "Digest: sha256:{}",
            util::hex_id(&format!("digest-{}", r.full()))
        ));
        say(&format!("Status: Downloaded newer image for {}", r.full()));
        st.add_image(r);
    }
    if !to_stderr {
        if quiet {
            println!("docker.io/{}", r.full());
        } else {
            say(&format!("docker.io/{}", r.full()));
        }
    }
    Ok(())
}

pub fn pull(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = match opts::parse(a, &["--platform"], true) {
        Ok(o) => o,
        Err(e) => return Ok(usage_err("pull", &e)),
    };
    let [name] = o.pos.as_slice() else {
        return Ok(usage_err(
            "pull",
            "\"docker pull\" requires exactly 1 argument.",
        ));
    };
    let r = match ImageRef::parse(name) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(1);
        }
    };
    if !name.contains(':') && !o.has(&["-q", "--quiet"]) {
        println!("Using default tag: latest");
    }
    let quiet = o.has(&["-q", "--quiet"]);
    let res = state::with_state(h, |st| do_pull(st, &r, quiet, false))?;
    match res {
        Ok(()) => Ok(0),
        Err(e) => Ok(daemon_err(&e)),
    }
}

pub fn rmi(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &[], true)?;
    let force = o.has(&["-f", "--force"]);
    state::with_state(h, |st| {
        let mut rc = 0;
        for name in &o.pos {
            let Some(img) = st.image_by_key(name).cloned() else {
                rc = daemon_err(&format!("No such image: {name}"));
                continue;
            };
            if let Some(c) = st.containers.iter().find(|c| c.image_id == img.id) {
                if !force {
                    rc = daemon_err(&format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        &c.id[..12],
                        &img.id[..12]
                    ));
                    continue;
                }
            }
            st.images.retain(|i| i.id != img.id);
            println!("Untagged: {}:{}", img.repo, img.tag);
            println!("Deleted: sha256:{}", img.id);
        }
        rc
    })
}
