//! Provisioning a simulated host in one of the layouts found in the wild (see
//! shared/simplelogin-host.md): the upstream README's `docker run` commands, the seed's
//! compose file, or springcomp/self-hosted-simplelogin. Containers are made by the same
//! code as `docker run` and `docker compose up` make them.

use crate::pg;
use crate::releases::{self, ImageRef, RELEASES};
use crate::run::{self, Job};
use crate::state::{self, HostState, Network};
use crate::util::{self, Ctx, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// What the spec says about one host's installation.
pub struct Install<'a> {
    pub layout: &'a str,
    pub version: &'a str,
    /// Image repository (simplelogin/app-ci by default).
    pub image: &'a str,
    pub v_prefix: bool,
    pub broken: bool,
    /// Extra `docker run` flags per container (readme layout).
    pub extra: &'a BTreeMap<String, Vec<String>>,
    pub index: u32,
}

impl Install<'_> {
    pub fn tag(&self) -> String {
        let v = releases::release(self.version)
            .map(|r| r.version)
            .unwrap_or(self.version);
        if self.v_prefix {
            v.to_string()
        } else {
            v.trim_start_matches('v').to_string()
        }
    }
    pub fn image_ref(&self) -> String {
        format!("{}:{}", self.image, self.tag())
    }
    /// The release whose schema the database is at: the previous one for a broken host.
    fn schema_version(&self) -> Result<&'static str> {
        let i = releases::release_index(self.version).ok_or("unknown version")?;
        if !self.broken {
            return Ok(RELEASES[i].version);
        }
        let head = RELEASES[i].head;
        RELEASES[..i]
            .iter()
            .rev()
            .find(|r| r.head != head)
            .map(|r| r.version)
            .ok_or_else(|| {
                format!(
                    "broken: {} has no earlier release with another schema",
                    self.version
                )
            })
    }
}

pub const SIMPLELOGIN_ENV: &str = "URL=https://app.mydomain.com\nEMAIL_DOMAIN=mydomain.com\nSUPPORT_EMAIL=support@mydomain.com\nEMAIL_SERVERS_WITH_PRIORITY=[(10, \"app.mydomain.com.\")]\nDB_URI=postgresql://myuser:mypassword@sl-db:5432/simplelogin\nFLASK_SECRET=fleet-sim-not-a-secret\nDKIM_PRIVATE_KEY_PATH=/dkim.key\nLOCAL_FILE_UPLOAD=1\nPOSTFIX_SERVER=10.0.0.1\n";
const DKIM: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nfleet-sim-dkim-private-key\n-----END RSA PRIVATE KEY-----\n";
const DKIM_PUB: &str =
    "-----BEGIN PUBLIC KEY-----\nfleet-sim-dkim-public-key\n-----END PUBLIC KEY-----\n";

fn w(p: &Path, s: &str) -> Result<()> {
    fs::write(p, s).ctx(format!("writing {}", p.display()))
}

fn base_state(index: u32) -> HostState {
    let mut st = HostState {
        index,
        ..Default::default()
    };
    for (n, sub) in [("bridge", 17), ("host", 0), ("none", 0)] {
        st.networks.push(Network {
            name: n.into(),
            id: util::hex_id(&format!("net-{n}-{}", util::unique_seed())),
            subnet: sub,
            labels: BTreeMap::new(),
            next_ip: 2,
            user_subnet: None,
        });
    }
    st
}

pub fn provision(host_dir: &Path, app: &Path, inst: &Install) -> Result<()> {
    fs::create_dir_all(host_dir).ctx("creating host dir")?;
    fs::create_dir_all(app).ctx(format!("creating {}", app.display()))?;
    let mut st = base_state(inst.index);
    let (user, pass) = match inst.layout {
        "readme" => readme(&mut st, host_dir, app, inst)?,
        "compose" => compose(&mut st, host_dir, app, inst)?,
        "springcomp" => springcomp(&mut st, host_dir, app, inst)?,
        other => {
            return Err(format!(
                "unknown layout {other:?} (readme, compose, springcomp)"
            ))
        }
    };
    st.layout = inst.layout.to_string();
    let sv = inst.schema_version()?;
    st.pg = pg::cluster(&user, &pass, "simplelogin", Some(sv));
    st.init = releases::head_of(sv).map(str::to_string);
    // Up for three hours; a broken host's job runner has crash-looped for a minute.
    let t = up_since();
    for c in &mut st.containers {
        c.created = t;
        if c.status == "running" {
            c.started = t + 5.0;
        } else {
            c.started = t + 1.0;
            c.finished = t + 2.0;
        }
    }
    st.track_crashes();
    for c in &mut st.containers {
        if c.crash_since.is_some() {
            c.crash_since = Some(util::now() - 60.0);
        }
    }
    state::save(host_dir, &st)
}

/// When a provisioned host's containers were made: three hours ago.
fn up_since() -> f64 {
    util::now() - 3.0 * 3600.0
}

fn common_files(app: &Path) -> Result<()> {
    w(&app.join("dkim.key"), DKIM)?;
    w(&app.join("dkim.pub.key"), DKIM_PUB)
}

fn up(st: &mut HostState, host_dir: &Path, spec: Job) -> Result<()> {
    let r = ImageRef::parse(&spec.image)?;
    st.add_image(&r);
    let c = run::build(st, &spec, &BTreeMap::new())
        .map_err(|e| format!("provisioning {}: {e}", spec.image))?;
    st.containers.push(c);
    let i = st.containers.len() - 1;
    run::start(st, i, host_dir).map(|_| ())
}

/// The upstream README: `docker network create sl-network`, then `docker run -d ...`.
fn readme(
    st: &mut HostState,
    host_dir: &Path,
    app: &Path,
    inst: &Install,
) -> Result<(String, String)> {
    for d in ["sl/db", "sl/pgp", "sl/upload"] {
        fs::create_dir_all(app.join(d)).ctx("creating sl dirs")?;
    }
    w(&app.join("simplelogin.env"), SIMPLELOGIN_ENV)?;
    common_files(app)?;
    st.add_network("sl-network", BTreeMap::new());
    let dir = app.to_string_lossy();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let extra = |n: &str| inst.extra.get(n).cloned().unwrap_or_default();
    let mut db = run::parse_spec(
        &[
            s(&[
                "-d",
                "--name",
                "sl-db",
                "-e",
                "POSTGRES_PASSWORD=mypassword",
                "-e",
                "POSTGRES_USER=myuser",
                "-e",
                "POSTGRES_DB=simplelogin",
                "-p",
                "127.0.0.1:5432:5432",
                "-v",
            ]),
            vec![format!("{dir}/sl/db:/var/lib/postgresql/data")],
            s(&["--restart", "always", "--network", "sl-network"]),
            extra("sl-db"),
            s(&[releases::POSTGRES_IMAGE]),
        ]
        .concat(),
    )?;
    db.detach = true;
    up(st, host_dir, db)?;
    let mounts = vec![
        "-v".to_string(),
        format!("{dir}/sl:/sl"),
        "-v".into(),
        format!("{dir}/sl/upload:/code/static/upload"),
        "-v".into(),
        format!("{dir}/simplelogin.env:/code/.env"),
        "-v".into(),
        format!("{dir}/dkim.key:/dkim.key"),
        "-v".into(),
        format!("{dir}/dkim.pub.key:/dkim.pub.key"),
    ];
    for (name, port, cmd) in [
        ("sl-app", Some("127.0.0.1:7777:7777"), vec![]),
        (
            "sl-email",
            Some("127.0.0.1:20381:20381"),
            s(&["python", "email_handler.py"]),
        ),
        ("sl-job-runner", None, s(&["python", "job_runner.py"])),
    ] {
        let mut a = s(&["-d", "--name", name]);
        a.extend(mounts.clone());
        if let Some(p) = port {
            a.extend(s(&["-p", p]));
        }
        a.extend(s(&["--restart", "always", "--network", "sl-network"]));
        a.extend(extra(name));
        a.push(inst.image_ref());
        a.extend(cmd);
        let spec = run::parse_spec(&a)?;
        up(st, host_dir, spec)?;
    }
    Ok(("myuser".into(), "mypassword".into()))
}

fn compose_up(st: &mut HostState, host_dir: &Path, file: &Path) -> Result<()> {
    compose_up_only(st, host_dir, file, |_| true)
}

/// `up -d` of the file's services that `wanted` names.
fn compose_up_only(
    st: &mut HostState,
    host_dir: &Path,
    file: &Path,
    wanted: impl Fn(&str) -> bool,
) -> Result<()> {
    let proj =
        crate::composefile::load_project(&[file.to_string_lossy().into_owned()], None, None, None)?;
    let all: Vec<&crate::composefile::Service> =
        proj.services.iter().filter(|s| wanted(&s.name)).collect();
    match crate::compose::up_quiet(st, host_dir, &proj, &all) {
        0 => Ok(()),
        rc => Err(format!("provisioning with compose failed ({rc})")),
    }
}

fn compose(
    st: &mut HostState,
    host_dir: &Path,
    app: &Path,
    inst: &Install,
) -> Result<(String, String)> {
    for d in ["sl/db", "sl/pgp", "sl/upload"] {
        fs::create_dir_all(app.join(d)).ctx("creating sl dirs")?;
    }
    w(&app.join("docker-compose.yml"), COMPOSE_YML)?;
    w(
        &app.join(".env"),
        &format!("SL_IMAGE={}\nSL_VERSION={}\n", inst.image, inst.tag()),
    )?;
    w(&app.join("simplelogin.env"), SIMPLELOGIN_ENV)?;
    common_files(app)?;
    // Seed the database first so that compose's containers find it (it is replaced below).
    compose_up(st, host_dir, &app.join("docker-compose.yml"))?;
    Ok(("myuser".into(), "mypassword".into()))
}

fn springcomp(
    st: &mut HostState,
    host_dir: &Path,
    app: &Path,
    inst: &Install,
) -> Result<(String, String)> {
    fs::create_dir_all(app.join("upload")).ctx("creating upload")?;
    let img = inst.image.strip_prefix("simplelogin/").unwrap_or("app-ci");
    w(&app.join("docker-compose.yaml"), SPRINGCOMP_MAIN)?;
    w(&app.join("simple-login-compose.yaml"), SPRINGCOMP_SL)?;
    w(&app.join(".env"), &format!("## Docker\nSL_VERSION={}\nSL_IMAGE={img}\n\n## Postgres Database\nPOSTGRES_DB=simplelogin\nPOSTGRES_USER=sl_admin\nPOSTGRES_PASSWORD=sl-secret-pw\n\n## SimpleLogin App\nDOMAIN=mydomain.com\nSUBDOMAIN=app\nEMAIL_DOMAIN=mydomain.com\nURL=https://app.mydomain.com\nSUPPORT_EMAIL=support@mydomain.com\nDKIM_PRIVATE_KEY_PATH=/dkim.key\nDB_URI=postgresql://sl_admin:sl-secret-pw@sl-db:5432/simplelogin\nFLASK_SECRET=fleet-sim-not-a-secret\nGNUPGHOME=/sl/pgp\nLOCAL_FILE_UPLOAD=1\nPOSTFIX_SERVER=postfix\n", inst.tag()))?;
    w(&app.join("dkim.key"), DKIM)?;
    // Its migration and init run against the database made below; seed one now for them.
    st.pg = pg::cluster(
        "sl_admin",
        "sl-secret-pw",
        "simplelogin",
        Some(inst.version),
    );
    // sl-db has been up as long as the host (see `provision`), so its healthcheck passed
    // long before the services that wait for it start: provisioning does not wait for
    // its first probe.
    let file = app.join("docker-compose.yaml");
    compose_up_only(st, host_dir, &file, |s| s == "postgres")?;
    for c in st.containers.iter_mut().filter(|c| c.name == "sl-db") {
        c.started = up_since();
    }
    compose_up(st, host_dir, &file)?;
    Ok(("sl_admin".into(), "sl-secret-pw".into()))
}

const COMPOSE_YML: &str = r#"services:
  sl-db:
    image: postgres:12.1
    container_name: sl-db
    restart: always
    environment:
      - POSTGRES_USER=myuser
      - POSTGRES_PASSWORD=mypassword
      - POSTGRES_DB=simplelogin
    volumes:
      - ./sl/db:/var/lib/postgresql/data

  sl-app:
    image: ${SL_IMAGE:-simplelogin/app-ci}:${SL_VERSION}
    container_name: sl-app
    restart: always
    ports:
      - "127.0.0.1:7777:7777"
    volumes:
      - ./sl:/sl
      - ./sl/upload:/code/static/upload
      - ./simplelogin.env:/code/.env
      - ./dkim.key:/dkim.key
      - ./dkim.pub.key:/dkim.pub.key
    depends_on:
      - sl-db

  sl-email:
    image: ${SL_IMAGE:-simplelogin/app-ci}:${SL_VERSION}
    container_name: sl-email
    restart: always
    command: ["python", "email_handler.py"]
    ports:
      - "127.0.0.1:20381:20381"
    volumes:
      - ./sl:/sl
      - ./sl/upload:/code/static/upload
      - ./simplelogin.env:/code/.env
      - ./dkim.key:/dkim.key
      - ./dkim.pub.key:/dkim.pub.key
    depends_on:
      - sl-db

  sl-job-runner:
    image: ${SL_IMAGE:-simplelogin/app-ci}:${SL_VERSION}
    container_name: sl-job-runner
    restart: always
    command: ["python", "job_runner.py"]
    volumes:
      - ./sl:/sl
      - ./sl/upload:/code/static/upload
      - ./simplelogin.env:/code/.env
      - ./dkim.key:/dkim.key
      - ./dkim.pub.key:/dkim.pub.key
    depends_on:
      - sl-db

networks:
  default:
    name: sl-network
"#;

const SPRINGCOMP_MAIN: &str = r#"# springcomp/self-hosted-simplelogin (traefik and postfix left out of the simulation)
include:
  - simple-login-compose.yaml

networks:
  internal:
    driver: bridge
"#;

const SPRINGCOMP_SL: &str = r#"x-sl-defaults: &sl-defaults
  image: simplelogin/$SL_IMAGE:$SL_VERSION
  env_file: .env
  volumes:
    - pgp:/sl/pgp
    - ./upload:/code/static/upload
    - ./dkim.key:/dkim.key
  networks:
    - internal

services:
  postgres:
    image: postgres:12.1
    container_name: sl-db
    env_file: .env
    healthcheck:
      test:
        [
          "CMD-SHELL",
          "PGPASSWORD=$$POSTGRES_PASSWORD pg_isready -U $$POSTGRES_USER -d $$POSTGRES_DB -h 127.0.0.1 -p 5432 || exit 1",
        ]
      interval: 10s
      retries: 3
      start_period: 1s
    networks:
      - internal
    volumes:
      - db-data:/var/lib/postgresql/data
    restart: unless-stopped

  migration:
    <<: *sl-defaults
    command: ["alembic", "upgrade", "head"]
    container_name: sl-migration
    depends_on:
      postgres:
        condition: service_healthy

  init:
    <<: *sl-defaults
    command: ["python", "init_app.py"]
    container_name: sl-init
    depends_on:
      migration:
        condition: service_completed_successfully

  app:
    <<: *sl-defaults
    container_name: sl-app
    restart: unless-stopped
    depends_on:
      init:
        condition: service_completed_successfully
    labels:
      - traefik.enable=true
      - traefik.http.services.sl-app.loadbalancer.server.port=7777
      - traefik.http.routers.sl-app.rule=Host("${SUBDOMAIN:-app}.${DOMAIN:?DOMAIN_not_set}")

  email:
    <<: *sl-defaults
    command: ["python", "email_handler.py"]
    container_name: sl-email
    restart: unless-stopped
    depends_on:
      init:
        condition: service_completed_successfully

  job-runner:
    <<: *sl-defaults
    command: ["python", "job_runner.py"]
    container_name: sl-job-runner
    restart: unless-stopped
    depends_on:
      init:
        condition: service_completed_successfully

volumes:
  db-data:
  pgp:
"#;
