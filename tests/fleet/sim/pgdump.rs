//! `pg_dump`'s plain-format output, section by section in PostgreSQL 12's order: the
//! `--clean` drops, the tables, their data, then their constraints.

use crate::opts::Opts;
use crate::pg::{Cluster, Constraint, Table};
use std::fmt::Write as _;

const HEADER: &str = "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 12.1 (Debian 12.1-1.pgdg100+1)\n-- Dumped by pg_dump version 12.1 (Debian 12.1-1.pgdg100+1)\n\nSET statement_timeout = 0;\nSET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\nSELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\nSET xmloption = content;\nSET client_min_messages = warning;\nSET row_security = off;\n\n";

/// pg_dump's plain-format output for the database.
pub fn dump(cl: &Cluster, db: &str, o: &Opts) -> String {
    let clean = o.has(&["-c", "--clean"]);
    let ie = o.has(&["--if-exists"]);
    let schema_only = o.has(&["-s", "--schema-only"]);
    let data_only = o.has(&["-a", "--data-only"]);
    let only: Vec<String> = o
        .all(&["-t", "--table"])
        .iter()
        .map(|t| t.trim_start_matches("public.").to_string())
        .collect();
    let owner = &cl.user;
    let mut s = String::from(HEADER);
    let Some(d) = cl.databases.get(db) else {
        return s;
    };
    let tables: Vec<(&String, &Table)> = d
        .tables
        .iter()
        .filter(|(n, _)| only.is_empty() || only.contains(n))
        .collect();
    let cons = constraints_in_dump_order(&tables);
    if clean && !data_only {
        write_drops(&mut s, &tables, &cons, ie);
    }
    if !data_only {
        write_tables(&mut s, &tables, owner);
    }
    if !schema_only {
        write_data(&mut s, &tables, owner);
    }
    if !data_only {
        write_constraints(&mut s, &cons, owner);
    }
    s.push_str("--\n-- PostgreSQL database dump complete\n--\n\n");
    s
}

/// Primary keys before foreign keys, by table then name: a restore adds the keys that
/// foreign keys reference first, and `--clean` drops them in the reverse order.
fn constraints_in_dump_order<'a>(
    tables: &[(&'a String, &'a Table)],
) -> Vec<(&'a str, &'a Constraint)> {
    let mut cons: Vec<(&str, &Constraint)> = Vec::new();
    for kind in ["p", "f"] {
        for (n, t) in tables {
            let mut cs: Vec<&Constraint> =
                t.constraints.iter().filter(|c| c.kind == kind).collect();
            cs.sort_by(|a, b| a.name.cmp(&b.name));
            cons.extend(cs.into_iter().map(|c| (n.as_str(), c)));
        }
    }
    cons
}

/// `--clean`: constraints, then tables, dropped in the reverse of their creation order.
fn write_drops(
    s: &mut String,
    tables: &[(&String, &Table)],
    cons: &[(&str, &Constraint)],
    ie: bool,
) {
    let ife = if ie { "IF EXISTS " } else { "" };
    for (t, c) in cons.iter().rev() {
        let _ = writeln!(
            s,
            "ALTER TABLE {ife}ONLY public.{t} DROP CONSTRAINT {ife}{};",
            c.name
        );
    }
    for (t, _) in tables.iter().rev() {
        let _ = writeln!(s, "DROP TABLE {ife}public.{t};");
    }
    s.push('\n');
}

fn write_tables(s: &mut String, tables: &[(&String, &Table)], owner: &str) {
    s.push_str("SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n");
    for (n, t) in tables {
        let _ = write!(s, "--\n-- Name: {n}; Type: TABLE; Schema: public; Owner: {owner}\n--\n\nCREATE TABLE public.{n} (\n");
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(c, ty)| format!("    {c} {ty}"))
            .collect();
        let _ = write!(
            s,
            "{}\n);\n\n\nALTER TABLE public.{n} OWNER TO {owner};\n\n",
            cols.join(",\n")
        );
    }
}

/// The rows as COPY ... FROM stdin blocks, NULL as `\N`.
fn write_data(s: &mut String, tables: &[(&String, &Table)], owner: &str) {
    for (n, t) in tables {
        let names: Vec<&str> = t.columns.iter().map(|c| c.0.as_str()).collect();
        let _ = write!(s, "--\n-- Data for Name: {n}; Type: TABLE DATA; Schema: public; Owner: {owner}\n--\n\nCOPY public.{n} ({}) FROM stdin;\n", names.join(", "));
        for r in &t.rows {
            let v: Vec<String> = r
                .iter()
                .map(|x| x.clone().unwrap_or_else(|| "\\N".into()))
                .collect();
            let _ = writeln!(s, "{}", v.join("\t"));
        }
        s.push_str("\\.\n\n\n");
    }
}

/// Constraints come after the data, as ALTER TABLE ... ADD CONSTRAINT: a restore checks
/// them once, over rows loaded in any order.
fn write_constraints(s: &mut String, cons: &[(&str, &Constraint)], owner: &str) {
    for (t, c) in cons {
        let (ty, body) = match &c.ref_table {
            Some(rt) => (
                "FK CONSTRAINT",
                format!(
                    "FOREIGN KEY ({}) REFERENCES public.{rt}({})",
                    c.cols.join(", "),
                    c.ref_cols.join(", ")
                ),
            ),
            None => ("CONSTRAINT", format!("PRIMARY KEY ({})", c.cols.join(", "))),
        };
        let _ = write!(s, "--\n-- Name: {t} {}; Type: {ty}; Schema: public; Owner: {owner}\n--\n\nALTER TABLE ONLY public.{t}\n    ADD CONSTRAINT {} {body};\n\n\n", c.name, c.name);
    }
}
