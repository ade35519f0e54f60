//! DROP and ALTER TABLE of the SQL executor: dependencies between tables (foreign keys on
//! primary keys) refuse a drop unless CASCADE, with PostgreSQL's DETAIL and HINT.

use crate::sql::{err, tok_text, Conn, Res, SqlErr, P};

/// PostgreSQL's refusal to drop what other objects still need, with one DETAIL line for
/// each of them.
fn still_needed(object: &str, dependents: Vec<String>) -> SqlErr {
    SqlErr {
        msg: format!("cannot drop {object} because other objects depend on it"),
        detail: Some(dependents.join("\n")),
        hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".into()),
    }
}

impl Conn<'_> {
    pub(crate) fn drop(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        p.i += 1;
        if p.kw("table") {
            return self.drop_tables(p);
        }
        if p.kw("schema") {
            return self.drop_schema(p);
        }
        if p.kw("database") {
            return self.drop_database(p);
        }
        for (k, tag) in [
            ("sequence", "DROP SEQUENCE"),
            ("index", "DROP INDEX"),
            ("extension", "DROP EXTENSION"),
            ("type", "DROP TYPE"),
        ] {
            if p.kw(k) {
                return Ok(Res::Tag(tag.into()));
            }
        }
        Err(p.near())
    }

    /// `DROP TABLE [IF EXISTS] a, b [CASCADE]`: the tables in order, up to the first error.
    fn drop_tables(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        let ie = p.kws(&["if", "exists"]);
        let mut names = vec![p.qname()?];
        while p.sym(',') {
            names.push(p.qname()?);
        }
        let cascade = p.kw("cascade");
        for q in names {
            if !self.db().tables.contains_key(&q.1) {
                if ie {
                    self.notices.push(format!(
                        "NOTICE:  table \"{}\" does not exist, skipping",
                        q.1
                    ));
                    continue;
                }
                self.table(&q)?;
            }
            let deps = self.db().dependents(&q.1);
            if !deps.is_empty() && !cascade {
                let table = format!("table {}", self.show(&q.1));
                return Err(still_needed(&table, self.foreign_keys_on(&deps, &table)));
            }
            for (c, on) in deps {
                self.notices.push(format!(
                    "NOTICE:  drop cascades to constraint {c} on table {}",
                    self.show(&on)
                ));
                self.remove_constraint(&on, &c);
            }
            self.db().tables.remove(&q.1);
        }
        Ok(Res::Tag("DROP TABLE".into()))
    }

    /// `DROP SCHEMA`: only public exists, and dropping it takes every table with it.
    fn drop_schema(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        let ie = p.kws(&["if", "exists"]);
        let n = p.ident()?;
        let cascade = p.kw("cascade");
        if n != "public" || !self.db().public {
            if ie {
                self.notices
                    .push(format!("NOTICE:  schema \"{n}\" does not exist, skipping"));
                return Ok(Res::Tag("DROP SCHEMA".into()));
            }
            return Err(err(format!("schema \"{n}\" does not exist")));
        }
        let n_obj = self.db().tables.len();
        if n_obj > 0 && !cascade {
            let tables = self.db().tables.keys();
            return Err(still_needed(
                "schema public",
                tables
                    .map(|t| format!("table public.{t} depends on schema public"))
                    .collect(),
            ));
        }
        if n_obj > 0 {
            self.notices
                .push(format!("NOTICE:  drop cascades to {n_obj} other objects"));
        }
        let db = self.db();
        db.tables.clear();
        db.public = false;
        Ok(Res::Tag("DROP SCHEMA".into()))
    }

    fn drop_database(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        let ie = p.kws(&["if", "exists"]);
        let n = p.ident()?;
        if self.tx.is_some() {
            return Err(err("DROP DATABASE cannot run inside a transaction block"));
        }
        if n == self.db {
            return Err(err("cannot drop the currently open database"));
        }
        if self.cl.databases.remove(&n).is_none() {
            if ie {
                self.notices.push(format!(
                    "NOTICE:  database \"{n}\" does not exist, skipping"
                ));
            } else {
                return Err(err(format!("database \"{n}\" does not exist")));
            }
        }
        Ok(Res::Tag("DROP DATABASE".into()))
    }

    /// The DETAIL lines of a refused drop: each foreign key in `deps` (constraint, its
    /// table) depends on `target`.
    fn foreign_keys_on(&self, deps: &[(String, String)], target: &str) -> Vec<String> {
        deps.iter()
            .map(|(c, on)| {
                format!(
                    "constraint {c} on table {} depends on {target}",
                    self.show(on)
                )
            })
            .collect()
    }

    fn remove_constraint(&mut self, table: &str, name: &str) {
        if let Some(t) = self.db().tables.get_mut(table) {
            t.constraints.retain(|x| x.name != name);
        }
    }

    pub(crate) fn alter(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        p.i += 1;
        if !p.kw("table") {
            if p.kw("sequence")
                || p.kw("schema")
                || p.kw("database")
                || p.kw("role")
                || p.kw("user")
            {
                return Ok(Res::Tag("ALTER".into()));
            }
            return Err(p.near());
        }
        let ie = p.kws(&["if", "exists"]);
        let _ = p.kw("only");
        let q = p.qname()?;
        if !self.db().tables.contains_key(&q.1) {
            if ie {
                self.notices.push(format!(
                    "NOTICE:  relation \"{}\" does not exist, skipping",
                    q.1
                ));
                return Ok(Res::Tag("ALTER TABLE".into()));
            }
            self.table(&q)?;
        }
        let tag = Ok(Res::Tag("ALTER TABLE".into()));
        if p.kw("add") {
            if p.kw("constraint") {
                let name = p.ident()?;
                let mut t = self.table(&q)?.clone();
                self.constraint_def(p, &q.1, &mut t, Some(name))?;
                *self.table(&q)? = t;
                return tag;
            }
            let _ = p.kw("column");
            let ine = p.kws(&["if", "not", "exists"]);
            let col = p.ident()?;
            let ty: Vec<String> = p.t[p.i..].iter().map(tok_text).collect();
            let t = self.table(&q)?;
            if t.col(&col).is_some() {
                if ine {
                    return tag;
                }
                return Err(err(format!(
                    "column \"{col}\" of relation \"{}\" already exists",
                    q.1
                )));
            }
            t.columns.push((col, ty.join(" ")));
            for r in &mut t.rows {
                r.push(None);
            }
            return tag;
        }
        if p.kw("drop") {
            if p.kw("constraint") {
                let ie = p.kws(&["if", "exists"]);
                let name = p.ident()?;
                let cascade = p.kw("cascade");
                return self.drop_constraint(&q.1, &name, ie, cascade).and(tag);
            }
            let _ = p.kw("column");
            let col = p.ident()?;
            let t = self.table(&q)?;
            let Some(i) = t.col(&col) else {
                return Err(err(format!(
                    "column \"{col}\" of relation \"{}\" does not exist",
                    q.1
                )));
            };
            t.columns.remove(i);
            for r in &mut t.rows {
                r.remove(i);
            }
            return tag;
        }
        tag
    }

    fn drop_constraint(
        &mut self,
        table: &str,
        name: &str,
        ie: bool,
        cascade: bool,
    ) -> Result<(), SqlErr> {
        let Some(t) = self.db().tables.get(table) else {
            return Ok(());
        };
        let Some(c) = t.constraints.iter().find(|c| c.name == name).cloned() else {
            if ie {
                self.notices.push(format!("NOTICE:  constraint \"{name}\" of relation \"{table}\" does not exist, skipping"));
                return Ok(());
            }
            return Err(err(format!(
                "constraint \"{name}\" of relation \"{table}\" does not exist"
            )));
        };
        if c.kind == "p" {
            let deps = self.db().dependents(table);
            if !deps.is_empty() && !cascade {
                let index = format!("index {}", self.show(name));
                let constraint = format!("constraint {name} on table {}", self.show(table));
                return Err(still_needed(
                    &constraint,
                    self.foreign_keys_on(&deps, &index),
                ));
            }
            for (d, on) in deps {
                self.remove_constraint(&on, &d);
            }
        }
        self.remove_constraint(table, name);
        Ok(())
    }
}
