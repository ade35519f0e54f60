//! The simulated PostgreSQL cluster of a host: databases, tables with columns, rows,
//! primary and foreign keys. Alembic migrations and the psql executor (sql.rs) change it.

use crate::releases::{self, Migration, Op};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Constraint {
    pub name: String,
    /// "p" primary key, "f" foreign key.
    pub kind: String,
    pub cols: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_table: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ref_cols: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Table {
    /// (name, SQL type)
    pub columns: Vec<(String, String)>,
    /// Text values; None is NULL.
    pub rows: Vec<Vec<Option<String>>>,
    pub constraints: Vec<Constraint>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Database {
    pub owner: String,
    /// The public schema exists (DROP SCHEMA public removes it).
    pub public: bool,
    pub tables: BTreeMap<String, Table>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Cluster {
    /// The superuser role POSTGRES_USER created.
    pub user: String,
    pub password: String,
    pub databases: BTreeMap<String, Database>,
}

impl Table {
    pub fn col(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.0 == name)
    }
    pub fn pk(&self) -> Option<&Constraint> {
        self.constraints.iter().find(|c| c.kind == "p")
    }
    pub fn next_id(&self) -> i64 {
        let Some(i) = self.col("id") else { return 1 };
        self.rows
            .iter()
            .filter_map(|r| r.get(i).cloned().flatten())
            .filter_map(|v| v.parse::<i64>().ok())
            .max()
            .unwrap_or(0)
            + 1
    }
}

impl Database {
    pub fn new(owner: &str) -> Database {
        Database {
            owner: owner.into(),
            public: true,
            tables: BTreeMap::new(),
        }
    }
    /// The revision in alembic_version, if the table exists and has a row.
    pub fn revision(&self) -> Option<String> {
        self.tables
            .get("alembic_version")?
            .rows
            .first()?
            .first()
            .cloned()
            .flatten()
    }
    /// Foreign keys of other tables that point at `table`: (constraint, on table).
    pub fn dependents(&self, table: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (n, t) in &self.tables {
            for c in &t.constraints {
                if c.kind == "f" && c.ref_table.as_deref() == Some(table) && n != table {
                    out.push((c.name.clone(), n.clone()));
                }
            }
        }
        out
    }
    /// Bytes, as pg_database_size reports them: an empty database is about 7.9 MB; every
    /// table, index and row adds to it.
    pub fn size(&self) -> u64 {
        let mut s: u64 = 7_930_399;
        for t in self.tables.values() {
            s += 8192 + 16384 * t.constraints.iter().filter(|c| c.kind == "p").count() as u64;
            let row: u64 = 28 + t.columns.len() as u64 * 12;
            s += (t.rows.len() as u64 * row).div_ceil(8192) * 8192;
        }
        s
    }
    pub fn insert(&mut self, table: &str, values: &[(&str, String)]) -> bool {
        let Some(t) = self.tables.get_mut(table) else {
            return false;
        };
        let id = t.next_id().to_string();
        let mut row: Vec<Option<String>> = vec![None; t.columns.len()];
        if let Some(i) = t.col("id") {
            row[i] = Some(id);
        }
        if let Some(i) = t.col("created_at") {
            row[i] = Some(crate::util::pg_timestamp(crate::util::now()));
        }
        for (k, v) in values {
            if let Some(i) = t.col(k) {
                row[i] = Some(v.clone());
            }
        }
        t.rows.push(row);
        true
    }
    pub fn count(&self, table: &str) -> usize {
        self.tables.get(table).map(|t| t.rows.len()).unwrap_or(0)
    }
}

/// The error a migration op raises, as psycopg2 names it.
pub struct PgError {
    pub class: &'static str,
    pub message: String,
    pub sql: String,
}

fn create_sql(name: &str, cols: &[(&str, &str)]) -> String {
    let body: Vec<String> = cols
        .iter()
        .map(|(c, t)| format!("\t{c} {}", t.to_uppercase()))
        .collect();
    format!(
        "\nCREATE TABLE {name} (\n{},\n\tPRIMARY KEY (id)\n)\n\n",
        body.join(", \n")
    )
}

pub fn apply_op(db: &mut Database, op: &Op) -> Result<(), PgError> {
    match op {
        Op::Table(name, cols, fks) => {
            if db.tables.contains_key(*name) {
                return Err(PgError {
                    class: "DuplicateTable",
                    message: format!("relation \"{name}\" already exists"),
                    sql: create_sql(name, cols),
                });
            }
            let mut t = Table {
                columns: cols
                    .iter()
                    .map(|(c, ty)| (c.to_string(), ty.to_string()))
                    .collect(),
                ..Default::default()
            };
            t.constraints.push(Constraint {
                name: format!("{name}_pkey"),
                kind: "p".into(),
                cols: vec!["id".into()],
                ..Default::default()
            });
            for (col, rt) in *fks {
                if !db.tables.contains_key(*rt) {
                    return Err(PgError {
                        class: "UndefinedTable",
                        message: format!("relation \"{rt}\" does not exist"),
                        sql: create_sql(name, cols),
                    });
                }
                t.constraints.push(Constraint {
                    name: format!("{name}_{col}_fkey"),
                    kind: "f".into(),
                    cols: vec![col.to_string()],
                    ref_table: Some(rt.to_string()),
                    ref_cols: vec!["id".into()],
                });
            }
            db.tables.insert(name.to_string(), t);
            Ok(())
        }
        Op::Column(table, col, ty) => {
            let sql = format!("ALTER TABLE {table} ADD COLUMN {col} {}", ty.to_uppercase());
            let Some(t) = db.tables.get_mut(*table) else {
                return Err(PgError {
                    class: "UndefinedTable",
                    message: format!("relation \"{table}\" does not exist"),
                    sql,
                });
            };
            if t.col(col).is_some() {
                return Err(PgError {
                    class: "DuplicateColumn",
                    message: format!("column \"{col}\" of relation \"{table}\" already exists"),
                    sql,
                });
            }
            t.columns.push((col.to_string(), ty.to_string()));
            for r in &mut t.rows {
                r.push(None);
            }
            Ok(())
        }
    }
}

/// Create alembic_version if missing and set it to `rev`.
pub fn stamp(db: &mut Database, rev: &str) {
    let t = db
        .tables
        .entry("alembic_version".into())
        .or_insert_with(|| Table {
            columns: vec![(
                "version_num".into(),
                "character varying(32) NOT NULL".into(),
            )],
            rows: Vec::new(),
            constraints: vec![Constraint {
                name: "alembic_version_pkc".into(),
                kind: "p".into(),
                cols: vec!["version_num".into()],
                ..Default::default()
            }],
        });
    t.rows = vec![vec![Some(rev.to_string())]];
}

/// Apply one migration to `db`.
pub fn apply_migration(db: &mut Database, m: &Migration) -> Result<(), PgError> {
    for op in m.ops {
        apply_op(db, op)?;
    }
    stamp(db, m.rev);
    Ok(())
}

/// The first table or column an image of `version` needs that the database lacks, as the
/// psycopg2 error the app raises: ("UndefinedColumn", "column job.priority does not exist").
pub fn missing_for(db: &Database, version: &str) -> Option<(&'static str, String)> {
    for m in releases::migrations_of(version) {
        for op in m.ops {
            match op {
                Op::Table(name, _, _) if !db.tables.contains_key(*name) => {
                    return Some((
                        "UndefinedTable",
                        format!("relation \"{name}\" does not exist"),
                    ))
                }
                Op::Column(t, c, _)
                    if db
                        .tables
                        .get(*t)
                        .map(|x| x.col(c).is_none())
                        .unwrap_or(true) =>
                {
                    return Some(("UndefinedColumn", format!("column {t}.{c} does not exist")));
                }
                _ => {}
            }
        }
    }
    None
}

/// A database at `version`'s head with some users, aliases, mail and jobs in it.
pub fn seeded(owner: &str, version: &str) -> Database {
    let mut db = Database::new(owner);
    for m in releases::migrations_of(version) {
        // The chain applies cleanly to an empty database.
        let _ = apply_migration(&mut db, m);
    }
    for u in 1..=3 {
        db.insert(
            "users",
            &[
                ("email", format!("user{u}@example.org")),
                ("name", format!("User {u}")),
            ],
        );
        db.insert(
            "mailbox",
            &[
                ("user_id", u.to_string()),
                ("email", format!("user{u}@example.org")),
            ],
        );
    }
    for a in 1..=6 {
        let u = (a - 1) % 3 + 1;
        db.insert(
            "alias",
            &[
                ("user_id", u.to_string()),
                ("email", format!("alias{a}@mydomain.com")),
                ("mailbox_id", u.to_string()),
            ],
        );
    }
    for e in 1..=20 {
        db.insert(
            "email_log",
            &[
                ("user_id", ((e - 1) % 3 + 1).to_string()),
                ("alias_id", ((e - 1) % 6 + 1).to_string()),
            ],
        );
    }
    for j in 1..=4 {
        db.insert(
            "job",
            &[
                ("name", format!("send-digest-{j}")),
                ("payload", "{}".into()),
                ("state", "2".into()),
            ],
        );
    }
    db
}

/// What init_app.py does: the SL domain (idempotent).
pub fn init_app(db: &mut Database) {
    let has = db
        .tables
        .get("sl_domain")
        .map(|t| !t.rows.is_empty())
        .unwrap_or(false);
    if !has {
        db.insert("sl_domain", &[("domain", "mydomain.com".into())]);
    }
}

pub fn cluster(user: &str, password: &str, dbname: &str, version: Option<&str>) -> Cluster {
    let mut c = Cluster {
        user: user.into(),
        password: password.into(),
        databases: BTreeMap::new(),
    };
    c.databases.insert("postgres".into(), Database::new(user));
    c.databases.insert("template1".into(), Database::new(user));
    let mut db = match version {
        Some(v) => seeded(user, v),
        None => Database::new(user),
    };
    if version.is_some() {
        init_app(&mut db);
    }
    c.databases.insert(dbname.into(), db);
    c
}
