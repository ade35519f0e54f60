//! The variables a template or an expression reads from its context: those it uses before
//! (or without) giving them a value of its own. A template is handed only these, and a
//! variable that is a template is worked out again when one of them changes.
//!
//! minijinja's `undeclared_variables` (3.1) misses some reads: the value a slice is taken
//! of (`out.stdout_lines[-3:]`), a filter block's arguments, and a name read to give
//! itself a value (`{% set x = x %}`, `{% with x = x %}`, a set block's body, a macro's
//! default). This walks minijinja's own syntax tree, the parse the template is compiled
//! from, with the frames its runtime has; what a template is handed is both lists.
//!
//! Only the names both lists give are checked to be defined before rendering: the walk
//! also finds names read where they may be undefined by design (`{% set x = x |
//! default(1) %}`), minijinja lists names its runtime sets before they are read (in both
//! branches of an `if`, in a filter block), and a name listed by mistake must cost a
//! lookup, never a false "undefined variable". A name read and undefined still fails the
//! render, and is named then.

use std::collections::HashSet;

use minijinja::machinery::ast::{CallArg, Expr, ForLoop, Macro, Stmt};
use minijinja::machinery::{parse, parse_expr};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Expression, Template};

/// What a source reads from its context.
pub(super) struct Uses {
    /// Every name it may read: what it is handed, and what its value depends on.
    pub names: HashSet<String>,
    /// Those checked to be defined before it renders: read whatever way it goes.
    pub checked: HashSet<String>,
    /// Those named when a render finds a value undefined: not ones the template may give a
    /// value itself (`{% set x = x | default(1) %}`), whose absence is no error.
    pub blamed: HashSet<String>,
    /// Those only minijinja lists: the walk found each given a value before any read (in
    /// both branches of an `if`). Handed all the same, but a cycle of variables through one
    /// of them is no cycle (see [`super::resolve`]).
    pub maybe: HashSet<String>,
}

/// What the walk found: the names read from the context, and every name the template
/// gives a value somewhere.
struct Walked {
    read: HashSet<String>,
    given: HashSet<String>,
}

impl Uses {
    pub fn of_template(source: &str, template: &Template<'_, '_>) -> Uses {
        let walked = parse(source, "<template>", SyntaxConfig::default())
            .ok()
            .map(|tree| Walk::default().of_stmt(&tree));
        Uses::both(template.undeclared_variables(false), walked)
    }

    pub fn of_expression(source: &str, expr: &Expression<'_, '_>) -> Uses {
        let walked = parse_expr(source)
            .ok()
            .map(|tree| Walk::default().of_expr(&tree));
        Uses::both(expr.undeclared_variables(false), walked)
    }

    /// minijinja's list and the walk's: handed both, checked where they agree.
    fn both(listed: HashSet<String>, walked: Option<Walked>) -> Uses {
        let Some(walked) = walked else {
            return Uses {
                names: listed.clone(),
                checked: listed.clone(),
                blamed: listed,
                maybe: HashSet::new(),
            };
        };
        let checked: HashSet<String> = listed.intersection(&walked.read).cloned().collect();
        let maybe = listed.difference(&walked.read).cloned().collect();
        let mut names = walked.read;
        names.extend(listed);
        let blamed = names
            .iter()
            .filter(|n| checked.contains(*n) || !walked.given.contains(*n))
            .cloned()
            .collect();
        Uses {
            names,
            checked,
            blamed,
            maybe,
        }
    }
}

struct Walk<'a> {
    read: HashSet<&'a str>,
    /// The names given a value, innermost scope last.
    scopes: Vec<HashSet<&'a str>>,
    /// Every name given a value, in whatever scope.
    given: HashSet<&'a str>,
}

impl Default for Walk<'_> {
    fn default() -> Self {
        Walk {
            read: HashSet::new(),
            scopes: vec![HashSet::new()],
            given: HashSet::new(),
        }
    }
}

impl<'a> Walk<'a> {
    fn of_stmt(mut self, tree: &Stmt<'a>) -> Walked {
        self.stmt(tree);
        self.walked()
    }

    fn of_expr(mut self, tree: &Expr<'a>) -> Walked {
        self.expr(tree);
        self.walked()
    }

    fn walked(self) -> Walked {
        let owned = |names: HashSet<&str>| names.into_iter().map(str::to_string).collect();
        Walked {
            read: owned(self.read),
            given: owned(self.given),
        }
    }

    fn read(&mut self, name: &'a str) {
        if !self.scopes.iter().any(|s| s.contains(name)) {
            self.read.insert(name);
        }
    }

    fn assign(&mut self, name: &'a str) {
        self.given.insert(name);
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

    /// `body` in a frame of its own, opened by `open` (which may give names values).
    fn scoped(&mut self, open: impl FnOnce(&mut Self), body: &[Stmt<'a>]) {
        self.scopes.push(HashSet::new());
        open(self);
        self.body(body);
        self.scopes.pop();
    }

    fn body(&mut self, body: &[Stmt<'a>]) {
        body.iter().for_each(|s| self.stmt(s));
    }

    /// One way through an `if`: the names it gives a value.
    fn branch(&mut self, body: &[Stmt<'a>]) -> HashSet<&'a str> {
        self.scopes.push(HashSet::new());
        self.body(body);
        self.scopes.pop().unwrap_or_default()
    }

    // minijinja's runtime gives a frame of their own to a `for` body (each time round),
    // `with`, macros and blocks; not to `if` branches, or to filter, set and autoescape
    // blocks, whose names stay set after them.
    fn stmt(&mut self, stmt: &Stmt<'a>) {
        match stmt {
            Stmt::Template(t) => {
                self.assign("self");
                self.body(&t.children);
            }
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) => {}
            Stmt::ForLoop(f) => self.for_loop(f),
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                let taken = self.branch(&i.true_body);
                let other = self.branch(&i.false_body);
                // Set after the `if` only when set whichever way it went.
                for name in taken.intersection(&other) {
                    self.assign(name);
                }
            }
            Stmt::WithBlock(w) => self.scoped(
                |w2| {
                    for (target, value) in &w.assignments {
                        w2.expr(value);
                        w2.assign_target(target);
                    }
                },
                &w.body,
            ),
            Stmt::Set(s) => {
                self.expr(&s.expr);
                self.assign_target(&s.target);
            }
            Stmt::SetBlock(s) => {
                // The body is rendered, then filtered, then assigned.
                self.body(&s.body);
                self.opt(&s.filter);
                self.assign_target(&s.target);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.body(&a.body);
            }
            Stmt::FilterBlock(f) => {
                // The filter is applied to the body rendered: its arguments are read after.
                self.body(&f.body);
                self.expr(&f.filter);
            }
            Stmt::Block(b) => self.scoped(|w| w.assign("super"), &b.body),
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

    fn for_loop(&mut self, f: &ForLoop<'a>) {
        // The iterable is read before the loop's names exist.
        self.expr(&f.iter);
        self.scoped(
            |w| {
                w.assign("loop");
                w.assign_target(&f.target);
                w.opt(&f.filter_expr);
            },
            &f.body,
        );
        // Runs only when the loop did not: what it sets may not be set after.
        self.branch(&f.else_body);
    }

    fn macro_decl(&mut self, m: &Macro<'a>) {
        self.scopes.push(HashSet::new());
        // `caller` exists only in a call block's macro; minijinja assumes it may, and so
        // does this.
        self.assign("caller");
        // A default is worked out at the call, the arguments after it given already.
        let first_default = m.args.len().saturating_sub(m.defaults.len());
        for (i, default) in m.defaults.iter().enumerate() {
            self.scopes.push(HashSet::new());
            m.args
                .iter()
                .skip(first_default + i + 1)
                .for_each(|a| self.assign_target(a));
            self.expr(default);
            self.scopes.pop();
        }
        m.args.iter().for_each(|a| self.assign_target(a));
        self.body(&m.body);
        self.scopes.pop();
    }

    fn opt(&mut self, expr: &Option<Expr<'a>>) {
        if let Some(expr) = expr {
            self.expr(expr);
        }
    }

    fn args(&mut self, args: &[CallArg<'a>]) {
        for arg in args {
            match arg {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e),
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

    fn template(source: &str) -> Vec<String> {
        let tree = parse(source, "<template>", SyntaxConfig::default()).expect("parses");
        sorted(Walk::default().of_stmt(&tree).read)
    }

    fn sorted(names: HashSet<String>) -> Vec<String> {
        let mut v: Vec<String> = names.into_iter().collect();
        v.sort();
        v
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
            template("{% macro m(a, d=a) %}{{ d }}{% endmacro %}{{ m(1) }}"),
            ["a"]
        );
        let expr = parse_expr("out.stdout_lines[-1:] == []").expect("parses");
        assert_eq!(sorted(Walk::default().of_expr(&expr).read), ["out"]);
    }

    #[test]
    fn names_a_template_gives_a_value_are_not_read() {
        let none = Vec::<String>::new();
        assert_eq!(template("{% set x = 1 %}{{ x }}"), none);
        assert_eq!(
            template("{% for k, v in m.items() %}{{ k }}{{ v }}{{ loop.index }}{% endfor %}"),
            ["m"]
        );
        assert_eq!(
            template("{% with a = 1, b = a %}{{ b }}{% endwith %}"),
            none
        );
        assert_eq!(
            template("{% macro m(a, b=2) %}{{ a }}{{ b }}{% endmacro %}{{ m(c) }}"),
            ["c"]
        );
        // A default is worked out with the arguments after it given.
        assert_eq!(
            template("{% macro m(p=r, r=1) %}{{ p }}{% endmacro %}{{ m() }}"),
            none
        );
        assert_eq!(template("{% set s %}text{% endset %}{{ s }}"), none);
        // Set whichever way an `if` went, or in a block with no frame of its own.
        assert_eq!(
            template("{% if a %}{% set o = 1 %}{% else %}{% set o = 2 %}{% endif %}{{ o }}"),
            ["a"]
        );
        assert_eq!(
            template("{% filter replace(k, 'Q') %}{% set k = 'b' %}{% endfilter %}"),
            none
        );
    }

    #[test]
    fn a_name_that_may_not_be_set_is_read() {
        assert_eq!(
            template("{% if a %}{% set o = 1 %}{% endif %}{{ o }}"),
            ["a", "o"]
        );
        assert_eq!(
            template("{% for i in l %}{% set j = i %}{% endfor %}{{ i }}{{ j }}"),
            ["i", "j", "l"]
        );
        assert_eq!(
            template("{% for i in l %}{% else %}{% set e = 1 %}{% endfor %}{{ e }}"),
            ["e", "l"]
        );
        assert_eq!(
            template("{% macro m() %}{{ varargs }}{% endmacro %}{{ m() }}"),
            ["varargs"]
        );
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
            let compiled = env.template_from_str(source).expect("compiles");
            let uses = Uses::of_template(source, &compiled);
            assert_eq!(uses.names, uses.checked, "{source}");
            assert_eq!(sorted(uses.names), template(source), "{source}");
        }
    }

    #[test]
    fn only_minijinjas_own_list_is_checked_to_be_defined() {
        let env = minijinja::Environment::new();
        let source = "{% set x = x | default('d') %}{{ out[1:] }}{{ y }}";
        let uses = Uses::of_template(source, &env.template_from_str(source).expect("compiles"));
        assert_eq!(sorted(uses.names), ["out", "x", "y"]);
        assert_eq!(sorted(uses.checked), ["y"]);
        assert_eq!(sorted(uses.blamed), ["out", "y"]);
        assert!(uses.maybe.is_empty(), "every name minijinja lists is read");
    }

    #[test]
    fn a_name_only_minijinja_lists_is_a_maybe() {
        let env = minijinja::Environment::new();
        let source = "{% if a %}{% set o = 1 %}{% else %}{% set o = 2 %}{% endif %}{{ o }}";
        let uses = Uses::of_template(source, &env.template_from_str(source).expect("compiles"));
        assert_eq!(sorted(uses.names), ["a", "o"]);
        assert_eq!(sorted(uses.maybe), ["o"]);
    }
}
