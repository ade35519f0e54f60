//! The variables a template or an expression reads from its context: those it uses before
//! (or without) giving them a value of its own. A template is handed only these, so a
//! name missed here is "undefined" when rendered.
//!
//! minijinja's `undeclared_variables` (3.1) misses some reads: the value a slice is taken
//! of (`out.stdout_lines[-3:]`), a filter block's arguments, and a name read to give
//! itself a value (`{% set x = x %}`, `{% with x = x %}`, a set block's body, a macro's
//! default). This walks minijinja's own syntax tree with the scoping its runtime has, so
//! the parse is the one the template is compiled with.

use std::collections::HashSet;

use minijinja::machinery::ast::{CallArg, Expr, Macro, Stmt};
use minijinja::machinery::{parse, parse_expr};
use minijinja::syntax::SyntaxConfig;

/// What `source`, a template, reads; None when it does not parse (compiling it says why).
pub(super) fn of_template(source: &str) -> Option<HashSet<String>> {
    let tree = parse(source, "<template>", SyntaxConfig::default()).ok()?;
    let mut reads = Reads::default();
    reads.stmt(&tree);
    Some(reads.into_names())
}

/// What `source`, a bare expression, reads; None when it does not parse.
pub(super) fn of_expression(source: &str) -> Option<HashSet<String>> {
    let tree = parse_expr(source).ok()?;
    let mut reads = Reads::default();
    reads.expr(&tree);
    Some(reads.into_names())
}

struct Reads<'a> {
    read: HashSet<&'a str>,
    /// The names given a value, innermost scope last.
    scopes: Vec<HashSet<&'a str>>,
}

impl Default for Reads<'_> {
    fn default() -> Self {
        Reads {
            read: HashSet::new(),
            scopes: vec![HashSet::new()],
        }
    }
}

impl<'a> Reads<'a> {
    fn into_names(self) -> HashSet<String> {
        self.read.into_iter().map(str::to_string).collect()
    }

    fn read(&mut self, name: &'a str) {
        if !self.scopes.iter().any(|s| s.contains(name)) {
            self.read.insert(name);
        }
    }

    fn assign(&mut self, name: &'a str) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name);
        }
    }

    /// The names a `set`, `for` or `with` target gives a value.
    fn assign_target(&mut self, target: &Expr<'a>) {
        match target {
            Expr::Var(var) => self.assign(var.id),
            Expr::List(list) => list.items.iter().for_each(|x| self.assign_target(x)),
            Expr::Tuple(tuple) => tuple.items.iter().for_each(|x| self.assign_target(x)),
            _ => {}
        }
    }

    /// `body` in a scope of its own, opened by `open` (which may give names values).
    fn scoped(&mut self, open: impl FnOnce(&mut Self), body: &[Stmt<'a>]) {
        self.scopes.push(HashSet::new());
        open(self);
        body.iter().for_each(|s| self.stmt(s));
        self.scopes.pop();
    }

    fn stmt(&mut self, stmt: &Stmt<'a>) {
        match stmt {
            Stmt::Template(t) => {
                self.assign("self");
                t.children.iter().for_each(|s| self.stmt(s));
            }
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => {
                // The iterable is read before the loop's names exist.
                self.expr(&f.iter);
                self.scoped(
                    |r| {
                        r.assign("loop");
                        r.assign_target(&f.target);
                        r.opt(&f.filter_expr);
                    },
                    &f.body,
                );
                self.scoped(|_| {}, &f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.scoped(|_| {}, &i.true_body);
                self.scoped(|_| {}, &i.false_body);
            }
            Stmt::WithBlock(w) => self.scoped(
                |r| {
                    for (target, value) in &w.assignments {
                        r.expr(value);
                        r.assign_target(target);
                    }
                },
                &w.body,
            ),
            Stmt::Set(s) => {
                self.expr(&s.expr);
                self.assign_target(&s.target);
            }
            Stmt::SetBlock(s) => {
                self.opt(&s.filter);
                self.scoped(|_| {}, &s.body);
                self.assign_target(&s.target);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.scoped(|_| {}, &a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.scoped(|_| {}, &f.body);
            }
            Stmt::Block(b) => self.scoped(|r| r.assign("super"), &b.body),
            Stmt::Extends(e) => self.expr(&e.name),
            Stmt::Include(i) => self.expr(&i.name),
            Stmt::Import(i) => {
                self.expr(&i.expr);
                self.assign_target(&i.name);
            }
            Stmt::FromImport(i) => {
                self.expr(&i.expr);
                for (name, alias) in &i.names {
                    self.assign_target(alias.as_ref().unwrap_or(name));
                }
            }
            Stmt::Macro(m) => {
                self.assign(m.name);
                self.macro_decl(m);
            }
            Stmt::CallBlock(c) => {
                self.expr(&c.call.expr);
                self.args(&c.call.args);
                self.macro_decl(&c.macro_decl);
            }
            Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::Do(d) => {
                self.expr(&d.call.expr);
                self.args(&d.call.args);
            }
        }
    }

    fn macro_decl(&mut self, m: &Macro<'a>) {
        // Defaults are worked out where the macro is defined, before its arguments exist.
        m.defaults.iter().for_each(|d| self.expr(d));
        self.scoped(
            |r| {
                // `caller` exists only in a call block's macro; minijinja assumes it
                // may, and so does this.
                r.assign("caller");
                r.assign("varargs");
                r.assign("kwargs");
                m.args.iter().for_each(|a| r.assign_target(a));
            },
            &m.body,
        );
    }

    fn opt(&mut self, expr: &Option<Expr<'a>>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn args(&mut self, args: &[CallArg<'a>]) {
        for arg in args {
            match arg {
                CallArg::Pos(e) | CallArg::Kwarg(_, e) | CallArg::PosSplat(e) => self.expr(e),
                CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn expr(&mut self, expr: &Expr<'a>) {
        match expr {
            Expr::Var(var) => self.read(var.id),
            Expr::Const(_) => {}
            Expr::Slice(s) => {
                self.expr(&s.expr);
                self.opt(&s.start);
                self.opt(&s.stop);
                self.opt(&s.step);
            }
            Expr::UnaryOp(u) => self.expr(&u.expr),
            Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            Expr::Compare(c) => {
                self.expr(&c.expr);
                c.ops.iter().for_each(|op| self.expr(&op.expr));
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                self.opt(&i.false_expr);
            }
            Expr::Filter(f) => {
                self.opt(&f.expr);
                self.args(&f.args);
            }
            Expr::Test(t) => {
                self.expr(&t.expr);
                self.args(&t.args);
            }
            Expr::GetAttr(g) => self.expr(&g.expr),
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            Expr::Call(c) => {
                self.expr(&c.expr);
                self.args(&c.args);
            }
            Expr::List(l) => l.items.iter().for_each(|x| self.expr(x)),
            Expr::Tuple(t) => t.items.iter().for_each(|x| self.expr(x)),
            Expr::Map(m) => {
                m.keys.iter().for_each(|k| self.expr(k));
                m.values.iter().for_each(|v| self.expr(v));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: Option<HashSet<String>>) -> Vec<String> {
        let mut v: Vec<String> = set.expect("parses").into_iter().collect();
        v.sort();
        v
    }

    fn template(source: &str) -> Vec<String> {
        names(of_template(source))
    }

    #[test]
    fn the_reads_minijinja_misses_are_found() {
        assert_eq!(template("{{ out.stdout_lines[-3:] }}"), ["out"]);
        assert_eq!(
            template("{% for l in out.stdout_lines[1:] %}{{ l }}{% endfor %}"),
            ["out"]
        );
        assert_eq!(template("{{ (m)[a:b:c] }}"), ["a", "b", "c", "m"]);
        assert_eq!(template("{% set x = x %}{{ x }}"), ["x"]);
        assert_eq!(
            template("{% with x = x | int %}{{ x }}{% endwith %}"),
            ["x"]
        );
        assert_eq!(template("{% set y %}{{ y }}{% endset %}{{ y }}"), ["y"]);
        assert_eq!(
            template("{% filter replace(q, 'r') %}s{% endfilter %}"),
            ["q"]
        );
        assert_eq!(
            template("{% macro m(d=d) %}{{ d }}{% endmacro %}{{ m() }}"),
            ["d"]
        );
        assert_eq!(names(of_expression("out.stdout_lines[-1:] == []")), ["out"]);
    }

    #[test]
    fn names_a_template_gives_a_value_are_not_read() {
        assert_eq!(template("{% set x = 1 %}{{ x }}"), Vec::<String>::new());
        assert_eq!(
            template("{% for k, v in m.items() %}{{ k }}{{ v }}{{ loop.index }}{% endfor %}"),
            ["m"]
        );
        assert_eq!(
            template("{% with a = 1, b = a %}{{ b }}{% endwith %}"),
            Vec::<String>::new()
        );
        assert_eq!(
            template("{% macro m(a, b=2) %}{{ a }}{{ b }}{{ varargs }}{% endmacro %}{{ m(c) }}"),
            ["c"]
        );
        assert_eq!(
            template("{% set s %}text{% endset %}{{ s }}"),
            Vec::<String>::new()
        );
        // A scope's names end with it.
        assert_eq!(template("{% for i in l %}{% endfor %}{{ i }}"), ["i", "l"]);
    }

    #[test]
    fn every_other_read_is_found_as_minijinja_finds_it() {
        let sources = [
            "{{ a.b.c }} {{ d['e'] }} {{ f[g] }} {{ h(i, j=k, *l, **m) }}",
            "{{ n | default(o) }} {{ p is sameas q }} {{ r if s else t }} {{ -u }} {{ v + w }}",
            "{{ [x1, (x2, x3), {x4: x5}] }} {{ y1 in y2 }}",
            "{% if z1 %}{{ z2 }}{% elif z3 %}{% else %}{{ z4 }}{% endif %}",
            "{% for i in z5 if i > z6 %}{{ z7 }}{% else %}{{ z8 }}{% endfor %}",
            "{% call m(z9) %}{{ caller }}{% endcall %}{% do z10.append(1) %}",
            "{% raw %}{{ not_a_read }}{% endraw %}{{ 'nor' ~ \"this\" }}",
        ];
        let env = minijinja::Environment::new();
        for source in sources {
            let theirs = env
                .template_from_str(source)
                .expect("compiles")
                .undeclared_variables(false);
            assert_eq!(of_template(source), Some(theirs), "{source}");
        }
    }

    #[test]
    fn what_does_not_parse_has_no_reads() {
        assert_eq!(of_template("{{ x"), None);
        assert_eq!(of_expression("x ==="), None);
    }
}
