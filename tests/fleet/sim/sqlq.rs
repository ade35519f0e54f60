//! Queries and data changes of the SQL executor: SELECT (tables, counts, the catalog views
//! operators use, pg_database_size), INSERT, DELETE, UPDATE, TRUNCATE, COPY rows.

use crate::sql::{err, Conn, Res, SqlErr, Tok, P};

fn rows1(col: &str, v: Vec<String>, right: bool) -> Res {
    Res::Rows {
        cols: vec![col.into()],
        rows: v.into_iter().map(|x| vec![x]).collect(),
        right: vec![right],
    }
}

/// After SELECT.
pub fn select(c: &mut Conn, p: &mut P) -> Result<Res, SqlErr> {
    let rest: Vec<String> = p.t[p.i..].iter().map(crate::sql::tok_text).collect();
    let flat = rest.join(" ").to_lowercase();
    if flat.starts_with("pg_catalog . set_config") || flat.starts_with("set_config") {
        if flat.contains("'search_path' , ''") {
            c.qualified = true;
        }
        return Ok(rows1("set_config", vec![String::new()], false));
    }
    if flat.starts_with("pg_catalog . setval") || flat.starts_with("setval") {
        return Ok(rows1("setval", vec!["1".into()], true));
    }
    if flat.contains("pg_database_size") {
        return database_size(c, p, &flat);
    }
    if flat == "current_database ( )" {
        return Ok(rows1("current_database", vec![c.db.clone()], false));
    }
    if flat == "version ( )" {
        return Ok(rows1("version", vec!["PostgreSQL 12.1 (Debian 12.1-1.pgdg100+1) on x86_64-pc-linux-gnu, compiled by gcc (Debian 8.3.0-6) 8.3.0, 64-bit".into()], false));
    }
    if let [Tok::Num(n)] = &p.t[p.i..] {
        return Ok(rows1("?column?", vec![n.clone()], true));
    }
    if flat.contains("from pg_tables") || flat.contains("from information_schema . tables") {
        let col = if flat.contains("pg_tables") {
            "tablename"
        } else {
            "table_name"
        };
        let names: Vec<String> = if c.db().public {
            c.db().tables.keys().cloned().collect()
        } else {
            Vec::new()
        };
        return Ok(rows1(col, names, false));
    }
    if flat.contains("from information_schema . columns") {
        return Ok(columns(c, p, &flat));
    }
    table_select(c, p)
}

/// The string literals of the rest of the statement.
fn literals(p: &P) -> Vec<String> {
    let literal = |t: &Tok| match t {
        Tok::Str(s) => Some(s.clone()),
        _ => None,
    };
    p.t[p.i..].iter().filter_map(literal).collect()
}

/// `pg_database_size('db')`, or of the current database, maybe through `pg_size_pretty`.
fn database_size(c: &Conn, p: &P, flat: &str) -> Result<Res, SqlErr> {
    let name = literals(p)
        .into_iter()
        .next()
        .unwrap_or_else(|| c.db.clone());
    let Some(d) = c.cl.databases.get(&name) else {
        return Err(err(format!("database \"{name}\" does not exist")));
    };
    let size = d.size();
    if flat.starts_with("pg_size_pretty") {
        let pretty = vec![format!("{} kB", size / 1024)];
        return Ok(rows1("pg_size_pretty", pretty, false));
    }
    Ok(rows1("pg_database_size", vec![size.to_string()], true))
}

/// The columns `information_schema.columns` lists for the tables (and column) named.
fn columns(c: &mut Conn, p: &P, flat: &str) -> Res {
    let strs = literals(p);
    let mut out = Vec::new();
    for (tn, t) in &c.db().tables {
        if strs.iter().any(|s| s == tn) || strs.iter().all(|s| s == "public") {
            for (col, _) in &t.columns {
                if strs.len() < 2
                    || strs.iter().any(|s| s == col)
                    || !flat.contains("column_name =")
                {
                    out.push(col.clone());
                }
            }
        }
    }
    rows1("column_name", out, false)
}

/// SELECT cols|*|count(*) FROM t [WHERE col = v] [ORDER BY col] [LIMIT n]
fn table_select(c: &mut Conn, p: &mut P) -> Result<Res, SqlErr> {
    let count = p.kw("count");
    if count && !(p.sym('(') && p.sym('*') && p.sym(')')) {
        return Err(p.near());
    }
    let mut cols = Vec::new();
    if !count && !p.sym('*') {
        cols.push(p.ident()?);
        while p.sym(',') {
            cols.push(p.ident()?);
        }
    }
    if !p.kw("from") {
        return Err(p.near());
    }
    let q = p.qname()?;
    let filter = where_clause(p)?;
    let mut order = None;
    if p.kws(&["order", "by"]) {
        order = Some(p.ident()?);
        let _ = p.kw("asc");
    }
    let limit = if p.kw("limit") {
        p.value()?.and_then(|v| v.parse::<usize>().ok())
    } else {
        None
    };
    if !p.done() {
        return Err(p.near());
    }
    let t = c.table(&q)?.clone();
    let keep = matching(&t, &filter, &q.1)?;
    if count {
        return Ok(rows1("count", vec![keep.len().to_string()], true));
    }
    if cols.is_empty() {
        cols = t.columns.iter().map(|x| x.0.clone()).collect();
    }
    let mut idx = Vec::new();
    for col in &cols {
        idx.push(
            t.col(col)
                .ok_or_else(|| err(format!("column \"{col}\" does not exist")))?,
        );
    }
    let mut rows: Vec<Vec<Option<String>>> = keep.iter().map(|&r| t.rows[r].clone()).collect();
    if let Some(o) = order.and_then(|o| t.col(&o)) {
        rows.sort_by(|a, b| {
            let (x, y) = (
                a[o].clone().unwrap_or_default(),
                b[o].clone().unwrap_or_default(),
            );
            match (x.parse::<i64>(), y.parse::<i64>()) {
                (Ok(m), Ok(n)) => m.cmp(&n),
                _ => x.cmp(&y),
            }
        });
    }
    rows.truncate(limit.unwrap_or(usize::MAX));
    let right = idx
        .iter()
        .map(|&i| t.columns[i].1.starts_with("integer") || t.columns[i].1.starts_with("bigint"))
        .collect();
    let out = rows
        .iter()
        .map(|r| {
            idx.iter()
                .map(|&i| r[i].clone().unwrap_or_default())
                .collect()
        })
        .collect();
    Ok(Res::Rows {
        cols,
        rows: out,
        right,
    })
}

type Filter = Option<(String, Option<String>)>;

fn where_clause(p: &mut P) -> Result<Filter, SqlErr> {
    if !p.kw("where") {
        return Ok(None);
    }
    let col = p.ident()?;
    if p.kws(&["is", "null"]) {
        return Ok(Some((col, None)));
    }
    if !p.sym('=') {
        return Err(p.near());
    }
    Ok(Some((col, p.value()?)))
}

fn matching(t: &crate::pg::Table, f: &Filter, name: &str) -> Result<Vec<usize>, SqlErr> {
    let Some((col, v)) = f else {
        return Ok((0..t.rows.len()).collect());
    };
    let i = t.col(col).ok_or_else(|| {
        err(format!(
            "column \"{col}\" does not exist\nLINE 1: ...FROM {name} WHERE {col}"
        ))
    })?;
    Ok((0..t.rows.len()).filter(|&r| &t.rows[r][i] == v).collect())
}

pub fn dml(c: &mut Conn, p: &mut P) -> Result<Res, SqlErr> {
    if p.kw("truncate") {
        let _ = p.kw("table");
        let mut names = vec![p.qname()?];
        while p.sym(',') {
            names.push(p.qname()?);
        }
        for q in names {
            c.table(&q)?.rows.clear();
        }
        return Ok(Res::Tag("TRUNCATE TABLE".into()));
    }
    if p.kw("delete") {
        if !p.kw("from") {
            return Err(p.near());
        }
        let q = p.qname()?;
        let f = where_clause(p)?;
        let t = c.table(&q)?;
        let keep = matching(t, &f, &q.1)?;
        let n = keep.len();
        let mut i = 0;
        t.rows.retain(|_| {
            i += 1;
            !keep.contains(&(i - 1))
        });
        return Ok(Res::Tag(format!("DELETE {n}")));
    }
    if p.kw("update") {
        let q = p.qname()?;
        if !p.kw("set") {
            return Err(p.near());
        }
        let col = p.ident()?;
        if !p.sym('=') {
            return Err(p.near());
        }
        let v = p.value()?;
        let f = where_clause(p)?;
        let t = c.table(&q)?;
        let ci = t.col(&col).ok_or_else(|| {
            err(format!(
                "column \"{col}\" of relation \"{}\" does not exist",
                q.1
            ))
        })?;
        let hit = matching(t, &f, &q.1)?;
        for &r in &hit {
            t.rows[r][ci] = v.clone();
        }
        return Ok(Res::Tag(format!("UPDATE {}", hit.len())));
    }
    insert(c, p)
}

fn insert(c: &mut Conn, p: &mut P) -> Result<Res, SqlErr> {
    if !(p.kw("insert") && p.kw("into")) {
        return Err(p.near());
    }
    let q = p.qname()?;
    let cols = if p.t.get(p.i) == Some(&Tok::Sym('(')) {
        Some(p.ident_list()?)
    } else {
        None
    };
    if !p.kw("values") {
        return Err(p.near());
    }
    let mut rows = Vec::new();
    loop {
        if !p.sym('(') {
            return Err(p.near());
        }
        let mut vals = vec![p.value()?];
        while p.sym(',') {
            vals.push(p.value()?);
        }
        if !p.sym(')') {
            return Err(p.near());
        }
        rows.push(vals);
        if !p.sym(',') {
            break;
        }
    }
    let t = c.table(&q)?;
    let names: Vec<String> =
        cols.unwrap_or_else(|| t.columns.iter().map(|x| x.0.clone()).collect());
    let mut n = 0;
    for vals in rows {
        if vals.len() > names.len() {
            return Err(err("INSERT has more expressions than target columns"));
        }
        let mut row = vec![None; t.columns.len()];
        for (k, v) in names.iter().zip(vals) {
            let i = t.col(k).ok_or_else(|| {
                err(format!(
                    "column \"{k}\" of relation \"{}\" does not exist",
                    q.1
                ))
            })?;
            row[i] = v;
        }
        if let Some(i) = t.col("id") {
            if row[i].is_none() {
                row[i] = Some(t.next_id().to_string());
            }
        }
        if let Some(i) = t.col("created_at") {
            if row[i].is_none() {
                row[i] = Some(crate::util::pg_timestamp(crate::util::now()));
            }
        }
        check_row(t, &row, &q.1)?;
        t.rows.push(row);
        n += 1;
    }
    Ok(Res::Tag(format!("INSERT 0 {n}")))
}

/// Primary-key uniqueness and NOT NULL, with PostgreSQL's messages.
pub fn check_row(t: &crate::pg::Table, row: &[Option<String>], name: &str) -> Result<(), SqlErr> {
    for (i, (col, ty)) in t.columns.iter().enumerate() {
        if ty.to_lowercase().contains("not null") && row.get(i).cloned().flatten().is_none() {
            return Err(SqlErr {
                msg: format!("null value in column \"{col}\" violates not-null constraint"),
                detail: None,
                hint: None,
            });
        }
    }
    if let Some(pk) = t.pk() {
        let idx: Vec<usize> = pk.cols.iter().filter_map(|c| t.col(c)).collect();
        let key: Vec<Option<String>> = idx.iter().map(|&i| row.get(i).cloned().flatten()).collect();
        if t.rows
            .iter()
            .any(|r| idx.iter().map(|&i| r[i].clone()).collect::<Vec<_>>() == key)
        {
            let shown: Vec<String> = key.iter().map(|k| k.clone().unwrap_or_default()).collect();
            return Err(SqlErr {
                msg: format!(
                    "duplicate key value violates unique constraint \"{}\"",
                    pk.name
                ),
                detail: Some(format!(
                    "Key ({})=({}) already exists.",
                    pk.cols.join(", "),
                    shown.join(", ")
                )),
                hint: None,
            });
        }
    }
    let _ = name;
    Ok(())
}

/// One data line of COPY ... FROM stdin (tab-separated, \N for NULL).
pub fn copy_row(c: &mut Conn, table: &str, cols: &[String], line: &str) -> Result<(), SqlErr> {
    let t = c
        .db()
        .tables
        .get_mut(table)
        .ok_or_else(|| err(format!("relation \"{table}\" does not exist")))?;
    let names: Vec<String> = if cols.is_empty() {
        t.columns.iter().map(|x| x.0.clone()).collect()
    } else {
        cols.to_vec()
    };
    let vals: Vec<&str> = line.split('\t').collect();
    if vals.len() != names.len() {
        return Err(err(format!(
            "missing data for column \"{}\"",
            names.get(vals.len()).cloned().unwrap_or_default()
        )));
    }
    let mut row = vec![None; t.columns.len()];
    for (k, v) in names.iter().zip(vals) {
        let i = t.col(k).ok_or_else(|| {
            err(format!(
                "column \"{k}\" of relation \"{table}\" does not exist"
            ))
        })?;
        row[i] = if v == "\\N" {
            None
        } else {
            Some(v.to_string())
        };
    }
    check_row(t, &row, table)?;
    t.rows.push(row);
    Ok(())
}
