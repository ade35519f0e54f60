//! The one template environment of the process: fleetup's filters and tests, and every
//! template source compiled once.
//!
//! It is a process-wide static so that compiled templates and expressions can be kept
//! (they borrow the environment): a step's command is compiled once per run, not once per
//! host. Its configuration is fixed, so sharing it changes nothing a template sees.

use std::cmp::Ordering;
use std::sync::LazyLock;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression, Template, UndefinedBehavior};

use super::{docker, json, networks};

/// Template sources are registered under this prefix, so that an `{% include 'name' %}`
/// in one of them never finds another by its text: without the prefix, a name is not
/// found, as when templates were compiled one by one.
const SOURCE: &str = "\u{0}fleetup source\u{0}";

static ENV: LazyLock<Environment<'static>> = LazyLock::new(environment);

/// `source` compiled (once for the process).
pub(super) fn template(source: &str) -> Result<Template<'static, 'static>, Error> {
    ENV.get_template(&format!("{SOURCE}{source}"))
}

/// `expression` compiled; the caller keeps it.
pub(super) fn expression(expression: &str) -> Result<Expression<'static, 'static>, Error> {
    ENV.compile_expression_owned(expression.to_string())
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_loader(|name| Ok(name.strip_prefix(SOURCE).map(str::to_string)));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Commands are shell text, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    // Hostile inputs must not hang validation (a template is run once per host).
    env.set_fuel(Some(1_000_000));
    env.add_filter("quote", quote);
    env.add_filter("bool", to_bool);
    env.add_filter("from_json", from_json);
    // Python's str and dict methods (`.startswith`, `.split`, `.get`...), which Ansible
    // playbooks use as freely as filters.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("docker_by_name", by_name);
    env.add_filter("docker_label", label);
    env.add_filter(
        "docker_run_options",
        |c: Value, i: Value, file: Option<String>| {
            docker::run_options(&json::of(&c), &json::of(&i), file.as_deref())
        },
    );
    env.add_filter(
        "docker_run_context",
        |c: Value, i: Value, file: Option<String>| {
            docker::run_context(&json::of(&c), &json::of(&i), file.as_deref())
        },
    );
    env.add_filter("docker_env_file", |c: Value, i: Value| {
        docker::env_file(&json::of(&c), &json::of(&i))
    });
    env.add_filter("docker_network_connects", |c: Value| {
        networks::connects(&json::of(&c))
    });
    env.add_filter("docker_run_command", |c: Value, i: Value| {
        docker::run_command(&json::of(&c), &json::of(&i))
    });
    env.add_filter("docker_not_carried", |c: Value, i: Value| {
        docker::not_carried(&json::of(&c), &json::of(&i))
    });
    env.add_filter("docker_published", |c: Value, port: Value| {
        docker::published(&json::of(&c), &port.to_string())
    });
    env.add_test("version", version_test);
    env.add_test("pinned_version", |v: Value| {
        v.as_str()
            .is_some_and(|s| compare_versions(s, "0").is_some())
    });
    env.add_function("lookup", lookup);
    env
}

/// `docker inspect A B C` (a list) as a mapping by container name. The containers stay
/// where they are (views into the host's parsed output, not copies of it).
fn by_name(list: Value) -> Result<Value, Error> {
    let mut found = Vec::new();
    if list.kind() == ValueKind::Seq {
        for container in list.try_iter()? {
            found.push((docker::name(&json::of(&container)).to_string(), container));
        }
    }
    Ok(Value::from_pairs(found))
}

/// Of containers by name (see [`by_name`]), the value of label `key` of each that has it:
/// `{"sl-app": "app", "sl-migration": "migration"}` for `com.docker.compose.service`.
fn label(containers: Value, key: String) -> Result<Value, Error> {
    let mut found = Vec::new();
    if containers.kind() != ValueKind::Map {
        return Ok(Value::from_pairs(found));
    }
    for name in containers.try_iter()? {
        let container = containers.get_item(&name)?;
        if let Some(value) = docker::label(&json::of(&container), &key) {
            found.push((name, json::value(value.clone())));
        }
    }
    Ok(Value::from_pairs(found))
}

/// Ansible's `from_json`: a registered `stdout` read as the JSON it is.
fn from_json(text: &str) -> Result<Value, Error> {
    json::document(text)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not JSON: {e}")))
}

/// Shell quoting, as Ansible's `quote` filter: a value reaches the remote shell as one word.
fn quote(value: Value) -> String {
    shell_words::quote(&value.to_string()).into_owned()
}

/// The largest file `lookup('file', ...)` reads: a password or a key, not a database.
const LOOKUP_FILE_MAX: u64 = 1 << 20;

/// Ansible's `lookup('env', NAME)` and `lookup('file', PATH)`, so that secrets need not be
/// written in the inventory. Unlike Ansible, an unset variable is an error rather than an
/// empty string (unless `default=` is given), for the reason undefined variables are.
/// A file's trailing newline is dropped, as Ansible's `rstrip` does; a relative path is
/// taken from the directory fleetup runs in.
fn lookup(kind: &str, arg: &str, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let default: Option<String> = kwargs.get("default")?;
    kwargs.assert_all_used()?;
    let failed = |message: String| Error::new(ErrorKind::InvalidOperation, message);
    let found = match kind {
        "env" => std::env::var(arg).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                failed(format!("lookup('env', '{arg}'): the environment variable is not set"))
            }
            std::env::VarError::NotUnicode(_) => {
                failed(format!("lookup('env', '{arg}'): the value is not UTF-8"))
            }
        }),
        "file" => read_lookup_file(arg).map_err(|e| failed(format!("lookup('file', '{arg}'): {e}"))),
        other => {
            return Err(failed(format!(
                "lookup('{other}', ...) is not known: fleetup has lookup('env', NAME) and lookup('file', PATH)"
            )))
        }
    };
    match (found, default) {
        (Ok(value), _) => Ok(Value::from(value)),
        (Err(_), Some(default)) => Ok(Value::from(default)),
        (Err(e), None) => Err(e),
    }
}

fn read_lookup_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut text = String::new();
    file.take(LOOKUP_FILE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > LOOKUP_FILE_MAX {
        return Err(format!(
            "the file is over {} MiB: lookup reads a value, not a dump",
            LOOKUP_FILE_MAX >> 20
        ));
    }
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    Ok(text)
}

/// Ansible's `bool` filter: yes/on/true/1 are true, anything else false.
fn to_bool(value: Value) -> bool {
    if let Some(s) = value.as_str() {
        return matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "true" | "1" | "y"
        );
    }
    value.is_true()
}

/// `current is version('v4.65.2', '<')`: compares releases number by number, ignoring a
/// leading `v` (so v4.10.0 is after v4.9.9).
fn version_test(value: Value, other: String, op: Option<String>) -> Result<bool, Error> {
    let ordering = compare_versions(&value.to_string(), &other).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot compare versions `{value}` and `{other}`"),
        )
    })?;
    let op = op.unwrap_or_else(|| "eq".into());
    Ok(match op.as_str() {
        "<" | "lt" => ordering == Ordering::Less,
        "<=" | "le" => ordering != Ordering::Greater,
        ">" | "gt" => ordering == Ordering::Greater,
        ">=" | "ge" => ordering != Ordering::Less,
        "==" | "=" | "eq" => ordering == Ordering::Equal,
        "!=" | "<>" | "ne" => ordering != Ordering::Equal,
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("unknown version comparison `{other}` (use <, <=, >, >=, ==, !=)"),
            ))
        }
    })
}

/// Compares `v4.65.2` with `4.66`; None when either is not a dotted list of numbers.
pub fn compare_versions(a: &str, b: &str) -> Option<Ordering> {
    fn parts(v: &str) -> Option<Vec<u64>> {
        let v = v.trim();
        let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
        v.split('.').map(|p| p.parse().ok()).collect()
    }
    let (mut a, mut b) = (parts(a)?, parts(b)?);
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    Some(a.cmp(&b))
}
