//! A small pflag-like option parser for the shims: `--flag=value`, `--flag value`,
//! `-f value`, `-fvalue`, combined short booleans (`-it`, `-fsS`), and `--` ends options.

pub struct Opts {
    pub flags: Vec<(String, Option<String>)>,
    pub pos: Vec<String>,
}

/// `valued` lists the flags that take a value (both spellings, e.g. "-f", "--format").
/// With `interspersed` false, the first positional argument ends option parsing (docker
/// run/exec: what follows belongs to the container's command).
pub fn parse(args: &[String], valued: &[&str], interspersed: bool) -> Result<Opts, String> {
    let mut o = Opts {
        flags: Vec::new(),
        pos: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            o.pos.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (a.clone(), None),
            };
            if valued.contains(&name.as_str()) {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .cloned()
                            .ok_or_else(|| format!("flag needs an argument: {name}"))?;
                        i += 1;
                        v
                    }
                };
                o.flags.push((name, Some(v)));
            } else {
                o.flags.push((name, inline));
            }
            continue;
        }
        if a.len() > 1 && a.starts_with('-') && !a[1..].starts_with(|c: char| c.is_ascii_digit()) {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let name = format!("-{}", chars[j]);
                j += 1;
                if valued.contains(&name.as_str()) {
                    let rest: String = chars[j..].iter().collect();
                    let v = if !rest.is_empty() {
                        rest.strip_prefix('=').unwrap_or(&rest).to_string()
                    } else {
                        let v = args.get(i).cloned().ok_or_else(|| {
                            format!("flag needs an argument: '{}' in {name}", &name[1..])
                        })?;
                        i += 1;
                        v
                    };
                    o.flags.push((name, Some(v)));
                    break;
                }
                o.flags.push((name, None));
            }
            continue;
        }
        o.pos.push(a.clone());
        if !interspersed {
            o.pos.extend(args[i..].iter().cloned());
            break;
        }
    }
    Ok(o)
}

impl Opts {
    pub fn has(&self, names: &[&str]) -> bool {
        self.flags.iter().any(|(n, _)| names.contains(&n.as_str()))
    }
    pub fn get(&self, names: &[&str]) -> Option<String> {
        self.flags
            .iter()
            .rev()
            .find(|(n, v)| names.contains(&n.as_str()) && v.is_some())
            .and_then(|(_, v)| v.clone())
    }
    pub fn all(&self, names: &[&str]) -> Vec<String> {
        self.flags
            .iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .filter_map(|(_, v)| v.clone())
            .collect()
    }
}
