//! A small SQL executor over the simulated cluster, with PostgreSQL's messages: enough for
//! what pg_dump emits, what an operator types to check or repair a SimpleLogin database,
//! and the transactional semantics a restore depends on.

use crate::pg::{Cluster, Constraint, Database, Table};

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Word(String),
    Quoted(String),
    Str(String),
    Num(String),
    Sym(char),
}

pub fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match c.get(i) {
                    None => return Err("unterminated quoted string".into()),
                    Some('\'') if c.get(i + 1) == Some(&'\'') => {
                        v.push('\'');
                        i += 2;
                    }
                    Some('\'') => break,
                    Some(x) => {
                        v.push(*x);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Tok::Str(v));
        } else if ch == '"' {
            let j = c[i + 1..]
                .iter()
                .position(|&x| x == '"')
                .ok_or("unterminated quoted identifier")?;
            out.push(Tok::Quoted(c[i + 1..i + 1 + j].iter().collect()));
            i += j + 2;
        } else if ch.is_ascii_digit() {
            let j = c[i..]
                .iter()
                .position(|x| !(x.is_ascii_digit() || *x == '.'))
                .unwrap_or(c.len() - i);
            out.push(Tok::Num(c[i..i + j].iter().collect()));
            i += j;
        } else if ch.is_alphanumeric() || ch == '_' {
            let j = c[i..]
                .iter()
                .position(|x| !(x.is_alphanumeric() || *x == '_' || *x == '$'))
                .unwrap_or(c.len() - i);
            out.push(Tok::Word(c[i..i + j].iter().collect()));
            i += j;
        } else {
            out.push(Tok::Sym(ch));
            i += 1;
        }
    }
    Ok(out)
}

/// A PostgreSQL error: message, DETAIL, HINT.
#[derive(Debug, Clone, Default)]
pub struct SqlErr {
    pub msg: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub fn err(m: impl Into<String>) -> SqlErr {
    SqlErr {
        msg: m.into(),
        ..Default::default()
    }
}

pub enum Res {
    Tag(String),
    Rows {
        cols: Vec<String>,
        rows: Vec<Vec<String>>,
        right: Vec<bool>,
    },
    /// COPY ... FROM stdin accepted: data lines follow.
    CopyIn {
        table: String,
        cols: Vec<String>,
    },
}

/// A psql connection's state.
pub struct Conn<'a> {
    pub cl: &'a mut Cluster,
    pub db: String,
    /// The database as it was at BEGIN; Some while a transaction block is open.
    pub tx: Option<Database>,
    pub aborted: bool,
    /// search_path is empty (pg_dump's output sets it): names print qualified.
    pub qualified: bool,
    pub notices: Vec<String>,
}

pub struct P<'t> {
    pub t: &'t [Tok],
    pub i: usize,
}

impl<'t> P<'t> {
    pub fn peek_kw(&self, k: &str) -> bool {
        matches!(self.t.get(self.i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    pub fn kw(&mut self, k: &str) -> bool {
        if self.peek_kw(k) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub fn kws(&mut self, ks: &[&str]) -> bool {
        let save = self.i;
        for k in ks {
            if !self.kw(k) {
                self.i = save;
                return false;
            }
        }
        true
    }
    pub fn sym(&mut self, c: char) -> bool {
        if self.t.get(self.i) == Some(&Tok::Sym(c)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    pub fn near(&self) -> SqlErr {
        let at = match self.t.get(self.i) {
            Some(Tok::Word(w)) | Some(Tok::Num(w)) => w.clone(),
            Some(Tok::Quoted(w)) => format!("\"{w}\""),
            Some(Tok::Str(w)) => format!("'{w}'"),
            Some(Tok::Sym(c)) => c.to_string(),
            None => return err("syntax error at end of input"),
        };
        err(format!("syntax error at or near \"{at}\""))
    }
    pub fn ident(&mut self) -> Result<String, SqlErr> {
        match self.t.get(self.i) {
            Some(Tok::Word(w)) => {
                self.i += 1;
                Ok(w.to_lowercase())
            }
            Some(Tok::Quoted(w)) => {
                self.i += 1;
                Ok(w.clone())
            }
            _ => Err(self.near()),
        }
    }
    /// [schema.]name → (schema given, name)
    pub fn qname(&mut self) -> Result<(Option<String>, String), SqlErr> {
        let a = self.ident()?;
        if self.sym('.') {
            let b = self.ident()?;
            return Ok((Some(a), b));
        }
        Ok((None, a))
    }
    pub fn ident_list(&mut self) -> Result<Vec<String>, SqlErr> {
        if !self.sym('(') {
            return Err(self.near());
        }
        let mut v = vec![self.ident()?];
        while self.sym(',') {
            v.push(self.ident()?);
        }
        if !self.sym(')') {
            return Err(self.near());
        }
        Ok(v)
    }
    pub fn value(&mut self) -> Result<Option<String>, SqlErr> {
        let v = match self.t.get(self.i) {
            Some(Tok::Str(s)) | Some(Tok::Num(s)) => Some(s.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => None,
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") =>
            {
                Some(w[..1].to_lowercase())
            }
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("now") => {
                self.i += 3;
                return Ok(Some(crate::util::pg_timestamp(crate::util::now())));
            }
            _ => return Err(self.near()),
        };
        self.i += 1;
        Ok(v)
    }
    pub fn done(&self) -> bool {
        self.i >= self.t.len()
    }
}

impl Conn<'_> {
    pub fn db(&mut self) -> &mut Database {
        self.cl
            .databases
            .entry(self.db.clone())
            .or_insert_with(|| Database::new("postgres"))
    }
    pub(crate) fn show(&self, n: &str) -> String {
        if self.qualified {
            format!("public.{n}")
        } else {
            n.to_string()
        }
    }
    fn schema_ok(&mut self, s: &Option<String>) -> Result<(), SqlErr> {
        if let Some(s) = s {
            if s != "public" && s != "pg_catalog" {
                return Err(err(format!("schema \"{s}\" does not exist")));
            }
        }
        if !self.db().public {
            return Err(match s {
                Some(_) => err("schema \"public\" does not exist"),
                None => err("no schema has been selected to create in"),
            });
        }
        Ok(())
    }
    pub fn table(&mut self, q: &(Option<String>, String)) -> Result<&mut Table, SqlErr> {
        let shown = match &q.0 {
            Some(s) => format!("{s}.{}", q.1),
            None => q.1.clone(),
        };
        self.db()
            .tables
            .get_mut(&q.1)
            .ok_or_else(|| err(format!("relation \"{shown}\" does not exist")))
    }

    /// Execute one statement (tokens without the final `;`).
    pub fn exec(&mut self, t: &[Tok]) -> Result<Res, SqlErr> {
        let mut p = P { t, i: 0 };
        if self.aborted
            && !(p.peek_kw("commit")
                || p.peek_kw("rollback")
                || p.peek_kw("end")
                || p.peek_kw("abort"))
        {
            return Err(err(
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        if p.kw("begin") || p.kws(&["start", "transaction"]) {
            if self.tx.is_none() {
                self.tx = Some(self.db().clone());
            } else {
                self.notices
                    .push("WARNING:  there is already a transaction in progress".into());
            }
            return Ok(Res::Tag("BEGIN".into()));
        }
        if p.kw("commit") || p.kw("end") {
            let aborted = self.aborted;
            self.end_tx(!aborted);
            if self.tx.is_none() && !aborted {
                return Ok(Res::Tag("COMMIT".into()));
            }
            return Ok(Res::Tag("ROLLBACK".into()));
        }
        if p.kw("rollback") || p.kw("abort") {
            self.end_tx(false);
            return Ok(Res::Tag("ROLLBACK".into()));
        }
        let snapshot = self.db().clone();
        let r = self.statement(&mut p);
        if r.is_err() {
            if self.tx.is_some() {
                self.aborted = true;
            } else {
                *self.db() = snapshot;
            }
        }
        r
    }

    fn end_tx(&mut self, commit: bool) {
        if let Some(before) = self.tx.take() {
            if !commit {
                *self.db() = before;
            }
        } else {
            self.notices
                .push("WARNING:  there is no transaction in progress".into());
        }
        self.aborted = false;
    }

    fn statement(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        let first = match p.t.first() {
            Some(Tok::Word(w)) => w.to_uppercase(),
            _ => return Err(p.near()),
        };
        match first.as_str() {
            "SET" | "RESET" => Ok(Res::Tag(first)),
            "SELECT" => {
                p.i += 1;
                crate::sqlq::select(self, p)
            }
            "CREATE" => self.create(p),
            "DROP" => self.drop(p),
            "ALTER" => self.alter(p),
            "COPY" => {
                p.i += 1;
                let q = p.qname()?;
                let cols = if p.t.get(p.i) == Some(&Tok::Sym('(')) {
                    p.ident_list()?
                } else {
                    Vec::new()
                };
                if !(p.kw("from") && p.kw("stdin")) {
                    return Err(err("COPY to or from a file is prohibited for this simulated server: use FROM stdin"));
                }
                self.table(&q)?;
                Ok(Res::CopyIn { table: q.1, cols })
            }
            "INSERT" | "DELETE" | "UPDATE" | "TRUNCATE" => crate::sqlq::dml(self, p),
            "COMMENT" | "GRANT" | "REVOKE" => Ok(Res::Tag(first)),
            _ => Err(p.near()),
        }
    }

    fn create(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        p.i += 1;
        if p.kw("schema") {
            let ine = p.kws(&["if", "not", "exists"]);
            let n = p.ident()?;
            if n != "public" {
                return Ok(Res::Tag("CREATE SCHEMA".into()));
            }
            if self.db().public {
                if ine {
                    self.notices
                        .push("NOTICE:  schema \"public\" already exists, skipping".into());
                    return Ok(Res::Tag("CREATE SCHEMA".into()));
                }
                return Err(err("schema \"public\" already exists"));
            }
            self.db().public = true;
            return Ok(Res::Tag("CREATE SCHEMA".into()));
        }
        if p.kw("database") {
            let n = p.ident()?;
            if self.tx.is_some() {
                return Err(err("CREATE DATABASE cannot run inside a transaction block"));
            }
            if self.cl.databases.contains_key(&n) {
                return Err(err(format!("database \"{n}\" already exists")));
            }
            let owner = if p.kw("owner") {
                p.ident()?
            } else {
                self.cl.user.clone()
            };
            self.cl.databases.insert(n, Database::new(&owner));
            return Ok(Res::Tag("CREATE DATABASE".into()));
        }
        if p.kw("table") {
            return self.create_table(p);
        }
        for (k, tag) in [
            ("sequence", "CREATE SEQUENCE"),
            ("index", "CREATE INDEX"),
            ("unique", "CREATE INDEX"),
            ("extension", "CREATE EXTENSION"),
            ("type", "CREATE TYPE"),
            ("function", "CREATE FUNCTION"),
        ] {
            if p.kw(k) {
                return Ok(Res::Tag(tag.into()));
            }
        }
        Err(p.near())
    }

    fn create_table(&mut self, p: &mut P) -> Result<Res, SqlErr> {
        let ine = p.kws(&["if", "not", "exists"]);
        let q = p.qname()?;
        self.schema_ok(&q.0)?;
        if self.db().tables.contains_key(&q.1) {
            if ine {
                self.notices.push(format!(
                    "NOTICE:  relation \"{}\" already exists, skipping",
                    q.1
                ));
                return Ok(Res::Tag("CREATE TABLE".into()));
            }
            return Err(err(format!("relation \"{}\" already exists", q.1)));
        }
        if !p.sym('(') {
            return Err(p.near());
        }
        let mut t = Table::default();
        loop {
            if p.sym(')') {
                break;
            }
            if p.kw("constraint")
                || p.peek_kw("primary")
                || p.peek_kw("foreign")
                || p.peek_kw("unique")
            {
                if p.t
                    .get(p.i.wrapping_sub(1))
                    .map(|x| matches!(x, Tok::Word(w) if w.eq_ignore_ascii_case("constraint")))
                    .unwrap_or(false)
                {
                    let name = p.ident()?;
                    self.constraint_def(p, &q.1, &mut t, Some(name))?;
                } else {
                    self.constraint_def(p, &q.1, &mut t, None)?;
                }
            } else {
                let col = p.ident()?;
                let mut ty = Vec::new();
                let mut depth = 0;
                while let Some(tok) = p.t.get(p.i) {
                    match tok {
                        Tok::Sym(',') | Tok::Sym(')') if depth == 0 => break,
                        Tok::Sym('(') => depth += 1,
                        Tok::Sym(')') => depth -= 1,
                        _ => {}
                    }
                    ty.push(tok_text(tok));
                    p.i += 1;
                }
                let ty = ty.join(" ").replace(" ( ", "(").replace(" )", ")");
                if ty.to_uppercase().contains("PRIMARY KEY") {
                    t.constraints.push(Constraint {
                        name: format!("{}_pkey", q.1),
                        kind: "p".into(),
                        cols: vec![col.clone()],
                        ..Default::default()
                    });
                }
                let ty = match ty.to_uppercase().find("PRIMARY KEY") {
                    Some(i) => format!("{}{}", &ty[..i], &ty[i + 11..]),
                    None => ty,
                };
                t.columns.push((col, ty.trim().to_string()));
            }
            if !p.sym(',') && p.t.get(p.i) != Some(&Tok::Sym(')')) {
                return Err(p.near());
            }
        }
        self.db().tables.insert(q.1, t);
        Ok(Res::Tag("CREATE TABLE".into()))
    }

    /// PRIMARY KEY (..) | FOREIGN KEY (..) REFERENCES t(..) | UNIQUE (..), into `t`.
    pub(crate) fn constraint_def(
        &mut self,
        p: &mut P,
        tname: &str,
        t: &mut Table,
        name: Option<String>,
    ) -> Result<(), SqlErr> {
        if p.kws(&["primary", "key"]) {
            let cols = p.ident_list()?;
            if t.pk().is_some() {
                return Err(err(format!(
                    "multiple primary keys for table \"{tname}\" are not allowed"
                )));
            }
            let name = name.unwrap_or_else(|| format!("{tname}_pkey"));
            self.name_free(&name, tname)?;
            t.constraints.push(Constraint {
                name,
                kind: "p".into(),
                cols,
                ..Default::default()
            });
            return Ok(());
        }
        if p.kws(&["foreign", "key"]) {
            let cols = p.ident_list()?;
            if !p.kw("references") {
                return Err(p.near());
            }
            let rq = p.qname()?;
            let rcols = if p.t.get(p.i) == Some(&Tok::Sym('(')) {
                p.ident_list()?
            } else {
                vec!["id".into()]
            };
            while p.kw("on") {
                let _ = p.kw("delete") || p.kw("update");
                let _ = p.kw("cascade")
                    || p.kws(&["set", "null"])
                    || p.kws(&["no", "action"])
                    || p.kw("restrict");
            }
            let rt = if rq.1 == tname {
                Some(&*t)
            } else {
                self.db().tables.get(&rq.1)
            };
            let Some(rt) = rt else {
                let shown =
                    rq.0.map(|s| format!("{s}.{}", rq.1))
                        .unwrap_or(rq.1.clone());
                return Err(err(format!("relation \"{shown}\" does not exist")));
            };
            if rt.pk().map(|k| k.cols != rcols).unwrap_or(true) {
                return Err(err(format!(
                    "there is no unique constraint matching given keys for referenced table \"{}\"",
                    rq.1
                )));
            }
            let name = name.unwrap_or_else(|| format!("{tname}_{}_fkey", cols.join("_")));
            self.name_free(&name, tname)?;
            t.constraints.push(Constraint {
                name,
                kind: "f".into(),
                cols,
                ref_table: Some(rq.1),
                ref_cols: rcols,
            });
            return Ok(());
        }
        if p.kw("unique") {
            p.ident_list()?;
            return Ok(());
        }
        Err(p.near())
    }

    fn name_free(&mut self, name: &str, _t: &str) -> Result<(), SqlErr> {
        let used = self
            .db()
            .tables
            .values()
            .any(|x| x.constraints.iter().any(|c| c.name == name));
        if used {
            return Err(err(format!("relation \"{name}\" already exists")));
        }
        Ok(())
    }
}

pub fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Word(w) | Tok::Num(w) => w.clone(),
        Tok::Quoted(w) => format!("\"{w}\""),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Sym(c) => c.to_string(),
    }
}
