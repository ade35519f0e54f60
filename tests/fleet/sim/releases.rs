//! What the simulated registry publishes: SimpleLogin releases with their alembic heads and
//! migrations, and the images' own configuration (env, cmd, labels) as `docker image
//! inspect` shows it.

/// A release: version (canonical, with `v`), alembic head, the image's Python.
pub struct Release {
    pub version: &'static str,
    pub head: &'static str,
    pub python: &'static str,
}

const fn rel(version: &'static str, head: &'static str, python: &'static str) -> Release {
    Release {
        version,
        head,
        python,
    }
}

pub const RELEASES: &[Release] = &[
    rel("v2.1.2", "5e868298fee7", "3.7.6"),
    rel("v3.4.0", "6cc7f17a7d8b", "3.7.9"),
    rel("v4.47.1", "4e1a6b8e43c0", "3.10.9"),
    rel("v4.48.0", "9cb7a0e5f2d1", "3.10.9"),
    rel("v4.63.0", "1a2b3c4d5e6f", "3.10.13"),
    rel("v4.64.0", "2c2093c82bc0", "3.10.13"),
    rel("v4.64.2", "2c2093c82bc0", "3.10.13"),
    rel("v4.65.0", "3ebfbaeb76c0", "3.10.13"),
    rel("v4.65.1", "3ebfbaeb76c0", "3.10.13"),
    rel("v4.65.2", "5047fcbd57c7", "3.10.13"),
    rel("v4.66.0", "818b4a856f3f", "3.10.13"),
    rel("v4.66.1", "fd79503179dd", "3.10.13"),
    rel("v4.67.0", "bb4b0d33ff1a", "3.12.8"),
    rel("v4.67.1", "c5e1d4a7f209", "3.12.8"),
];

/// A schema change of a migration.
pub enum Op {
    /// Table name, columns (name, SQL type), foreign keys (column, referenced table).
    Table(
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [(&'static str, &'static str)],
    ),
    /// Table, column, SQL type.
    Column(&'static str, &'static str, &'static str),
}

pub struct Migration {
    pub rev: &'static str,
    pub message: &'static str,
    pub ops: &'static [Op],
}

const ID: (&str, &str) = ("id", "integer NOT NULL");
const CREATED: (&str, &str) = ("created_at", "timestamp without time zone NOT NULL");

/// The chain, oldest first; each release's head is one of these.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        rev: "5e868298fee7",
        message: "initial",
        ops: &[
            Op::Table(
                "users",
                &[
                    ID,
                    CREATED,
                    ("email", "character varying(256) NOT NULL"),
                    ("name", "character varying(128)"),
                ],
                &[],
            ),
            Op::Table(
                "mailbox",
                &[
                    ID,
                    CREATED,
                    ("user_id", "integer NOT NULL"),
                    ("email", "character varying(256) NOT NULL"),
                ],
                &[("user_id", "users")],
            ),
            Op::Table(
                "alias",
                &[
                    ID,
                    CREATED,
                    ("user_id", "integer NOT NULL"),
                    ("email", "character varying(128) NOT NULL"),
                    ("mailbox_id", "integer NOT NULL"),
                ],
                &[("user_id", "users"), ("mailbox_id", "mailbox")],
            ),
            Op::Table(
                "email_log",
                &[
                    ID,
                    CREATED,
                    ("user_id", "integer NOT NULL"),
                    ("alias_id", "integer"),
                ],
                &[("user_id", "users"), ("alias_id", "alias")],
            ),
            Op::Table(
                "job",
                &[
                    ID,
                    CREATED,
                    ("name", "character varying(128) NOT NULL"),
                    ("payload", "json"),
                    ("state", "integer NOT NULL"),
                ],
                &[],
            ),
            Op::Table(
                "sl_domain",
                &[ID, CREATED, ("domain", "character varying(128) NOT NULL")],
                &[],
            ),
        ],
    },
    Migration {
        rev: "6cc7f17a7d8b",
        message: "add custom domain",
        ops: &[Op::Table(
            "custom_domain",
            &[
                ID,
                CREATED,
                ("user_id", "integer NOT NULL"),
                ("domain", "character varying(128) NOT NULL"),
            ],
            &[("user_id", "users")],
        )],
    },
    Migration {
        rev: "4e1a6b8e43c0",
        message: "add mailbox pgp key",
        ops: &[Op::Column("mailbox", "pgp_public_key", "text")],
    },
    Migration {
        rev: "9cb7a0e5f2d1",
        message: "add job taken_at",
        ops: &[Op::Column("job", "taken_at", "timestamp without time zone")],
    },
    Migration {
        rev: "1a2b3c4d5e6f",
        message: "add monitoring table",
        ops: &[Op::Table(
            "monitoring",
            &[
                ID,
                CREATED,
                ("host", "character varying(256) NOT NULL"),
                ("incoming_queue", "integer NOT NULL"),
            ],
            &[],
        )],
    },
    Migration {
        rev: "2c2093c82bc0",
        message: "add mailbox verification index",
        ops: &[Op::Column("mailbox", "verified", "boolean")],
    },
    Migration {
        rev: "3ebfbaeb76c0",
        message: "add alias note column",
        ops: &[Op::Column("alias", "note", "text")],
    },
    Migration {
        rev: "5047fcbd57c7",
        message: "add partner subscription table",
        ops: &[Op::Table(
            "partner_subscription",
            &[
                ID,
                CREATED,
                ("user_id", "integer NOT NULL"),
                ("end_at", "timestamp without time zone"),
            ],
            &[("user_id", "users")],
        )],
    },
    Migration {
        rev: "818b4a856f3f",
        message: "add custom domain catch-all rules",
        ops: &[Op::Column("custom_domain", "catch_all", "boolean")],
    },
    Migration {
        rev: "fd79503179dd",
        message: "add job priority",
        ops: &[Op::Column("job", "priority", "integer")],
    },
    Migration {
        rev: "bb4b0d33ff1a",
        message: "add alias audit log",
        ops: &[Op::Table(
            "alias_audit_log",
            &[
                ID,
                CREATED,
                ("alias_id", "integer NOT NULL"),
                ("action", "character varying(255) NOT NULL"),
            ],
            &[("alias_id", "alias")],
        )],
    },
    Migration {
        rev: "c5e1d4a7f209",
        message: "add user audit log",
        ops: &[Op::Table(
            "user_audit_log",
            &[
                ID,
                CREATED,
                ("user_id", "integer NOT NULL"),
                ("action", "character varying(255) NOT NULL"),
            ],
            &[],
        )],
    },
];

/// The first version that has the /health endpoint, and the first with /version.
pub const HEALTH_SINCE: &str = "v4.48.0";
pub const VERSION_ENDPOINT_SINCE: &str = "v4.65.2";
pub const POSTGRES_IMAGE: &str = "postgres:12.1";
pub const APP_REPOS: &[&str] = &["simplelogin/app-ci", "simplelogin/app"];

/// The release a tag names: `v4.66.1` and `4.66.1` are the same release; `latest` the newest.
pub fn release(tag: &str) -> Option<&'static Release> {
    if tag == "latest" {
        return RELEASES.last();
    }
    let t = tag.strip_prefix('v').unwrap_or(tag);
    RELEASES.iter().find(|r| &r.version[1..] == t)
}

pub fn release_index(version: &str) -> Option<usize> {
    let r = release(version)?;
    RELEASES.iter().position(|x| x.version == r.version)
}

pub fn head_of(version: &str) -> Option<&'static str> {
    release(version).map(|r| r.head)
}

pub fn version_ge(a: &str, b: &str) -> bool {
    match (release_index(a), release_index(b)) {
        (Some(x), Some(y)) => x >= y,
        _ => false,
    }
}

/// Index of a revision in the migration chain.
pub fn migration_index(rev: &str) -> Option<usize> {
    MIGRATIONS.iter().position(|m| m.rev == rev)
}

/// The migrations an image of `version` knows: the chain up to its head.
pub fn migrations_of(version: &str) -> &'static [Migration] {
    match head_of(version).and_then(migration_index) {
        Some(i) => &MIGRATIONS[..=i],
        None => &[],
    }
}

/// A parsed image reference as docker normalises it (docker.io/library/ dropped, tag
/// defaulting to latest).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRef {
    pub repo: String,
    pub tag: String,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        if s.is_empty() || s.ends_with(':') || s.contains(char::is_whitespace) || s.starts_with(':')
        {
            return Err("invalid reference format".into());
        }
        let mut name = s;
        for p in ["docker.io/library/", "docker.io/", "library/"] {
            if let Some(r) = name.strip_prefix(p) {
                name = r;
                break;
            }
        }
        let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (repo, tag) = match name[slash..].rfind(':') {
            Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
            None => (name, "latest"),
        };
        if repo.chars().any(|c| c.is_ascii_uppercase()) {
            return Err("invalid reference format: repository name must be lowercase".into());
        }
        Ok(ImageRef {
            repo: repo.into(),
            tag: tag.into(),
        })
    }
    pub fn full(&self) -> String {
        format!("{}:{}", self.repo, self.tag)
    }
    /// The app release an image runs (canonical `v` form), when it is a SimpleLogin image.
    pub fn app_version(&self) -> Option<String> {
        if APP_REPOS.contains(&self.repo.as_str()) {
            return release(&self.tag).map(|r| r.version.to_string());
        }
        None
    }
    pub fn is_postgres(&self) -> bool {
        self.repo == "postgres"
    }
}

pub enum PullError {
    ManifestUnknown,
    AccessDenied,
}

/// What the simulated registry holds.
pub fn registry_has(r: &ImageRef) -> Result<(), PullError> {
    if APP_REPOS.contains(&r.repo.as_str()) {
        return match release(&r.tag) {
            Some(_) => Ok(()),
            None => Err(PullError::ManifestUnknown),
        };
    }
    if r.repo == "postgres" {
        return if ["12.1", "12", "latest"].contains(&r.tag.as_str()) {
            Ok(())
        } else {
            Err(PullError::ManifestUnknown)
        };
    }
    if ["busybox", "alpine"].contains(&r.repo.as_str()) {
        return Ok(());
    }
    Err(PullError::AccessDenied)
}

pub fn pull_error_message(r: &ImageRef, e: &PullError) -> String {
    match e {
        PullError::ManifestUnknown => format!(
            "manifest for {} not found: manifest unknown: manifest unknown",
            r.full()
        ),
        PullError::AccessDenied => format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
            r.repo
        ),
    }
}

/// An image's own configuration.
pub struct ImageConfig {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub workdir: String,
    pub labels: Vec<(String, String)>,
    pub exposed: Vec<String>,
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub fn image_config(r: &ImageRef) -> ImageConfig {
    if r.is_postgres() {
        return ImageConfig {
            env: strs(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/12/bin",
                "GOSU_VERSION=1.11",
                "LANG=en_US.utf8",
                "PG_MAJOR=12",
                "PG_VERSION=12.1-1.pgdg100+1",
                "PGDATA=/var/lib/postgresql/data",
            ]),
            cmd: strs(&["postgres"]),
            entrypoint: Some(strs(&["docker-entrypoint.sh"])),
            workdir: String::new(),
            labels: Vec::new(),
            exposed: strs(&["5432/tcp"]),
        };
    }
    if let Some(rel) = APP_REPOS
        .contains(&r.repo.as_str())
        .then(|| release(&r.tag))
        .flatten()
    {
        let gpg = if rel.python.starts_with("3.12") {
            "7169605F62C751356D054A26A821E680E5FA6305"
        } else if rel.python.starts_with("3.10") {
            "A035C8C19219BA821ECEA86B64E628F8D684696D"
        } else {
            "0D96DF4D4110E5C43FBFB17F2D347EA6AA65421D"
        };
        return ImageConfig {
            env: vec![
                "PATH=/code/.venv/bin:/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                "LANG=C.UTF-8".into(),
                format!("GPG_KEY={gpg}"),
                format!("PYTHON_VERSION={}", rel.python),
                "PYTHONUNBUFFERED=1".into(),
                "VIRTUAL_ENV=/code/.venv".into(),
            ],
            cmd: strs(&["gunicorn", "wsgi:app", "-b", "0.0.0.0:7777", "-w", "2", "--timeout", "15"]),
            entrypoint: None,
            workdir: "/code".into(),
            labels: vec![
                ("org.opencontainers.image.source".into(), "https://github.com/simple-login/app".into()),
                ("org.opencontainers.image.version".into(), rel.version.into()),
            ],
            exposed: strs(&["7777/tcp"]),
        };
    }
    ImageConfig {
        env: strs(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
        cmd: strs(&["sh"]),
        entrypoint: None,
        workdir: String::new(),
        labels: Vec::new(),
        exposed: Vec::new(),
    }
}
