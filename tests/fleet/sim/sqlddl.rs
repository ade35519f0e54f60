//! DROP and ALTER TABLE of the SQL executor: dependencies between tables (foreign keys on
//! primary keys) refuse a drop unless CASCADE, with PostgreSQL's DETAIL and HINT.

use crate::sql::{err, tok_text, Conn, Res, SqlErr, P};

impl Conn<'_> {
    pub(crate) fn drop(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        p.i += 1;
        if p.kw("table") {
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
                    let detail = deps
                        .iter()
                        .map(|(c, on)| {
                            format!(
                                "constraint {c} on table {} depends on table {}",
                                self.show(on),
                                self.show(&q.1)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n");
                    return Err(SqlErr {
                        msg: format!(
                            "cannot drop table {} because other objects depend on it",
                            self.show(&q.1)
                        ),
                        detail: Some(detail),
                        hint: Some(
                            "Use DROP ... CASCADE to drop the dependent objects too.".into(),
                        ),
                    });
                }
                for (c, on) in deps {
                    self.notices.push(format!(
                        "NOTICE:  drop cascades to constraint {c} on table {}",
                        self.show(&on)
                    ));
                    if let Some(t) = self.db().tables.get_mut(&on) {
                        t.constraints.retain(|x| x.name != c);
                    }
                }
                self.db().tables.remove(&q.1);
            }
            return Ok(Res::Tag("DROP TABLE".into()));
        }
        if p.kw("schema") {
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
                return Err(SqlErr {
                    msg: "cannot drop schema public because other objects depend on it".into(),
                    detail: Some(
                        self.db()
                            .tables
                            .keys()
                            .map(|t| format!("table public.{t} depends on schema public"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".into()),
                });
            }
            if n_obj > 0 {
                self.notices
                    .push(format!("NOTICE:  drop cascades to {n_obj} other objects"));
            }
            let db = self.db();
            db.tables.clear();
            db.public = false;
            return Ok(Res::Tag("DROP SCHEMA".into()));
        }
        if p.kw("database") {
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
            return Ok(Res::Tag("DROP DATABASE".into()));
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
                let detail = deps
                    .iter()
                    .map(|(d, on)| {
                        format!(
                            "constraint {d} on table {} depends on index {}",
                            self.show(on),
                            self.show(name)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(SqlErr { msg: format!("cannot drop constraint {name} on table {} because other objects depend on it", self.show(table)), detail: Some(detail), hint: Some("Use DROP ... CASCADE to drop the dependent objects too.".into()) });
            }
            for (d, on) in deps {
                if let Some(t) = self.db().tables.get_mut(&on) {
                    t.constraints.retain(|x| x.name != d);
                }
            }
        }
        if let Some(t) = self.db().tables.get_mut(table) {
            t.constraints.retain(|x| x.name != name);
        }
        Ok(())
    }
}
