//! Static checks of a policy catalogue, at load: unknown tables and fields, type errors,
//! undeclared parameters, bands that overlap or leave gaps, cycles between policies, and case
//! tests that name what does not exist. Every error names the file, line and column.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::ast::*;
use super::parse::{ParsedFile, parse};
use super::schema::{Schema, Ty};

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    pub msg: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.pos, self.msg)
    }
}

/// A policy that passed every check, with where it came from.
#[derive(Debug, Clone)]
pub struct Checked {
    pub file: PathBuf,
    pub policy: Policy,
    /// Policies this one refers to with `policy(X)`.
    pub depends: Vec<String>,
}

/// A checked catalogue: policies in dependency order (a policy after those it refers to).
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    pub policies: Vec<Checked>,
    pub relations: BTreeMap<String, Relation>,
}

impl Catalogue {
    pub fn get(&self, id: &str) -> Option<&Checked> {
        self.policies.iter().find(|p| p.policy.id == id)
    }
}

pub const SUBJECTS: [&str; 3] = ["person", "household", "enterprise"];
pub const MODES: [&str; 3] = ["direct", "confirm", "push"];
pub const DOMAINS: [&str; 5] = ["惠民", "惠企", "惠人才", "惠招商", "惠金融"];

/// Reads and checks every `*.policy` file under `dir`.
pub fn load_dir(dir: &Path, schema: &Schema) -> Result<Catalogue, Vec<Diagnostic>> {
    load_texts(&read_dir_texts(dir)?, schema)
}

/// The `*.policy` files of a folder, as `(path, text)` in name order.
pub fn read_dir_texts(dir: &Path) -> Result<Vec<(PathBuf, String)>, Vec<Diagnostic>> {
    let fail = |file: &Path, msg: String| {
        vec![Diagnostic {
            file: file.to_path_buf(),
            pos: Pos::default(),
            msg,
        }]
    };
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "policy"))
            .collect(),
        Err(e) => return Err(fail(dir, format!("cannot read the folder: {e}"))),
    };
    files.sort();
    let mut out = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => out.push((f, text)),
            Err(e) => return Err(fail(&f, format!("cannot read: {e}"))),
        }
    }
    Ok(out)
}

/// Checks a policy text `text` (named `name`) together with a catalogue's files, whose
/// relations and policies it may use; it replaces the catalogue's policies with the same ids.
/// Returns the first policy of the text.
pub fn check_with_catalogue(
    catalogue: &[(PathBuf, String)],
    name: &Path,
    text: &str,
    schema: &Schema,
) -> Result<Policy, Vec<Diagnostic>> {
    let new_ids: Vec<String> = parse(text)
        .map(|f| f.policies.into_iter().map(|p| p.id).collect())
        .unwrap_or_default();
    let mut files: Vec<(PathBuf, String)> = catalogue
        .iter()
        .filter(|(f, t)| {
            f.as_path() != name
                && parse(t)
                    .map(|p| !p.policies.iter().any(|p| new_ids.contains(&p.id)))
                    .unwrap_or(true)
        })
        .cloned()
        .collect();
    files.push((name.to_path_buf(), text.to_string()));
    let cat = load_texts(&files, schema)?;
    cat.policies
        .iter()
        .find(|c| c.file == name)
        .map(|c| c.policy.clone())
        .ok_or_else(|| {
            vec![Diagnostic {
                file: name.to_path_buf(),
                pos: Pos::default(),
                msg: "the text holds no policy".into(),
            }]
        })
}

/// Parses and checks policy texts given as `(file name, text)`.
pub fn load_texts(
    files: &[(PathBuf, String)],
    schema: &Schema,
) -> Result<Catalogue, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut parsed: Vec<(PathBuf, ParsedFile)> = Vec::new();
    for (file, text) in files {
        match parse(text) {
            Ok(p) => parsed.push((file.clone(), p)),
            Err(e) => diags.push(Diagnostic {
                file: file.clone(),
                pos: e.pos,
                msg: e.msg,
            }),
        }
    }
    let mut relations = BTreeMap::new();
    for (file, p) in &parsed {
        for r in &p.relations {
            let mut d = |msg: String| {
                diags.push(Diagnostic {
                    file: file.clone(),
                    pos: r.pos,
                    msg,
                })
            };
            for k in [&r.from, &r.to] {
                if !SUBJECTS.contains(&k.as_str()) {
                    d(format!(
                        "`{k}` is not a subject kind: person, household or enterprise"
                    ));
                }
            }
            match schema.column(&r.table, &r.column) {
                None => d(format!("unknown field {}.{}", r.table, r.column)),
                Some(c) if !c.reference => d(format!(
                    "{}.{} does not name entities, so it cannot carry a relation",
                    r.table, r.column
                )),
                Some(_) => {}
            }
            if relations.insert(r.name.clone(), r.clone()).is_some() {
                d(format!("relation `{}` is declared twice", r.name));
            }
        }
    }
    let mut all: Vec<(PathBuf, Policy)> = Vec::new();
    let mut ids = HashSet::new();
    for (file, p) in parsed {
        for pol in p.policies {
            if !ids.insert(pol.id.clone()) {
                diags.push(Diagnostic {
                    file: file.clone(),
                    pos: pol.pos,
                    msg: format!("policy {} is defined twice", pol.id),
                });
                continue;
            }
            all.push((file.clone(), pol));
        }
    }
    let subjects: HashMap<String, String> = all
        .iter()
        .map(|(_, p)| (p.id.clone(), p.subject.clone()))
        .collect();
    let mut checked = Vec::new();
    for (file, p) in all {
        let mut c = Checker {
            schema,
            relations: &relations,
            subjects: &subjects,
            policy: &p,
            file: &file,
            diags: Vec::new(),
            depends: Vec::new(),
        };
        c.policy();
        let depends = std::mem::take(&mut c.depends);
        diags.extend(c.diags);
        checked.push(Checked {
            file,
            policy: p,
            depends,
        });
    }
    // Cycles, and the dependency order.
    let order = match topo_order(&checked) {
        Ok(o) => o,
        Err(cycle) => {
            let first = &checked[cycle[0]];
            let path: Vec<&str> = cycle
                .iter()
                .map(|&i| checked[i].policy.id.as_str())
                .chain([first.policy.id.as_str()])
                .collect();
            diags.push(Diagnostic {
                file: first.file.clone(),
                pos: first.policy.pos,
                msg: format!(
                    "policies refer to each other in a cycle: {}",
                    path.join(" → ")
                ),
            });
            (0..checked.len()).collect()
        }
    };
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut slots: Vec<Option<Checked>> = checked.into_iter().map(Some).collect();
    let policies = order.into_iter().filter_map(|i| slots[i].take()).collect();
    Ok(Catalogue {
        policies,
        relations,
    })
}

/// Dependency order, or the policies of a cycle.
fn topo_order(ps: &[Checked]) -> Result<Vec<usize>, Vec<usize>> {
    let index: HashMap<&str, usize> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| (p.policy.id.as_str(), i))
        .collect();
    // 0 unvisited, 1 on the stack, 2 done.
    let mut state = vec![0u8; ps.len()];
    let mut order = Vec::new();
    fn visit(
        i: usize,
        ps: &[Checked],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let from = stack.iter().position(|&s| s == i).unwrap_or(0);
                return Err(stack[from..].to_vec());
            }
            _ => {}
        }
        state[i] = 1;
        stack.push(i);
        for d in &ps[i].depends {
            if let Some(&j) = index.get(d.as_str()) {
                visit(j, ps, index, state, stack, order)?;
            }
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..ps.len() {
        visit(i, ps, &index, &mut state, &mut Vec::new(), &mut order)?;
    }
    Ok(order)
}

/// Where an expression is evaluated.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    /// The entity kind whose fields are visible.
    kind: &'a str,
    /// Inside `count(T where …)`: T's rows.
    row_of: Option<&'a str>,
}

struct Checker<'a> {
    schema: &'a Schema,
    relations: &'a BTreeMap<String, Relation>,
    subjects: &'a HashMap<String, String>,
    policy: &'a Policy,
    file: &'a Path,
    diags: Vec<Diagnostic>,
    depends: Vec<String>,
}

/// The closest name to `wanted` among `names`, for "did you mean".
fn suggest<'n>(wanted: &str, names: impl Iterator<Item = &'n String>) -> String {
    let best = names
        .map(|n| (strsim_distance(wanted, n), n))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, n)) if d <= wanted.len().max(3) / 2 => format!(" (did you mean `{n}`?)"),
        _ => String::new(),
    }
}

/// Levenshtein distance over characters.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Checker<'_> {
    fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.to_path_buf(),
            pos,
            msg: msg.into(),
        });
    }

    fn policy(&mut self) {
        let p = self.policy;
        if !SUBJECTS.contains(&p.subject.as_str()) {
            self.err(
                p.pos,
                format!(
                    "policy {}: subject must be person, household or enterprise, not `{}`",
                    p.id, p.subject
                ),
            );
            return;
        }
        if !MODES.contains(&p.mode.as_str()) {
            self.err(
                p.pos,
                format!(
                    "policy {}: mode must be direct, confirm or push, not `{}`",
                    p.id, p.mode
                ),
            );
        }
        if !DOMAINS.contains(&p.domain.as_str()) {
            self.err(
                p.pos,
                format!(
                    "policy {}: domain must be one of {}, not `{}`",
                    p.id,
                    DOMAINS.join(", "),
                    p.domain
                ),
            );
        }
        if p.lead.is_empty() {
            self.err(
                p.pos,
                format!("policy {}: no lead department (`lead MZ`)", p.id),
            );
        }
        if p.article.is_empty() {
            self.err(
                p.pos,
                format!("policy {}: no article (`article \"…\"`)", p.id),
            );
        }
        if p.conditions.is_empty() {
            self.err(
                p.pos,
                format!("policy {}: no conditions (`when name: …`)", p.id),
            );
        }
        if let Some((a, b)) = p.valid
            && a > b
        {
            self.err(
                p.pos,
                format!("policy {}: validity ends before it starts", p.id),
            );
        }
        let mut seen = HashSet::new();
        for prm in &p.params {
            if !seen.insert(prm.name.as_str()) {
                self.err(
                    prm.pos,
                    format!("parameter `{}` is declared twice", prm.name),
                );
            }
            if !matches!(prm.value.kind, ExprKind::Lit(_))
                && !matches!(&prm.value.kind, ExprKind::Neg(e) if matches!(e.kind, ExprKind::Lit(Lit::Num(_))))
            {
                self.err(
                    prm.pos,
                    format!("parameter `{}` must be a literal value", prm.name),
                );
            }
        }
        let ctx = Ctx {
            kind: &p.subject,
            row_of: None,
        };
        let mut names = HashSet::new();
        for (i, c) in p.conditions.iter().enumerate() {
            if !names.insert(c.name.as_str()) {
                self.err(c.pos, format!("condition `{}` is declared twice", c.name));
            }
            if p.params.iter().any(|q| q.name == c.name) {
                self.err(
                    c.pos,
                    format!("`{}` is both a parameter and a condition", c.name),
                );
            }
            // A condition may use the conditions before it, by name.
            let earlier: Vec<&str> = p.conditions[..i].iter().map(|c| c.name.as_str()).collect();
            if let Some(t) = self.ty(&c.expr, ctx, &earlier)
                && t != Ty::Bool
            {
                self.err(
                    c.expr.pos,
                    format!("condition `{}` is {}, not true/false", c.name, t.as_str()),
                );
            }
        }
        let all: Vec<&str> = p.conditions.iter().map(|c| c.name.as_str()).collect();
        if let Some((e, _)) = &p.amount
            && let Some(t) = self.ty(e, ctx, &all)
            && t != Ty::Num
        {
            self.err(e.pos, format!("the amount is {}, not a number", t.as_str()));
        }
        for case in &p.cases {
            self.case(case);
        }
    }

    fn case(&mut self, case: &Case) {
        let p = self.policy;
        for (pos, cond, _) in &case.expect {
            if !p.conditions.iter().any(|c| &c.name == cond) {
                self.err(
                    *pos,
                    format!(
                        "case {:?}: policy {} has no condition `{cond}`",
                        case.name, p.id
                    ),
                );
            }
        }
        let rows = case
            .rows
            .iter()
            .chain(case.related.iter().flat_map(|(_, r)| r));
        for row in rows {
            let Some(t) = self.schema.tables.get(&row.table) else {
                self.err(
                    row.pos,
                    format!("case {:?}: unknown table {}", case.name, row.table),
                );
                continue;
            };
            for (col, _) in &row.values {
                if !t.columns.contains_key(col) {
                    let hint = suggest(col, t.columns.keys());
                    self.err(
                        row.pos,
                        format!(
                            "case {:?}: {} has no column `{col}`{hint}",
                            case.name, row.table
                        ),
                    );
                }
            }
        }
        for (rel, _) in &case.related {
            if !self.relations.contains_key(rel) {
                self.err(
                    case.pos,
                    format!("case {:?}: unknown relation `{rel}`", case.name),
                );
            }
        }
        for (id, _) in &case.policies {
            if !self.subjects.contains_key(id) {
                self.err(
                    case.pos,
                    format!("case {:?}: unknown policy {id}", case.name),
                );
            }
        }
    }

    fn field(&mut self, pos: Pos, table: &str, column: &str, ctx: Ctx<'_>) -> Option<Ty> {
        let Some(t) = self.schema.tables.get(table) else {
            let hint = suggest(table, self.schema.tables.keys());
            self.err(pos, format!("unknown table {table}{hint}"));
            return None;
        };
        let Some(c) = t.columns.get(column) else {
            let hint = suggest(column, t.columns.keys());
            self.err(
                pos,
                format!("unknown field {table}.{column}: {table} has no column `{column}`{hint}"),
            );
            return None;
        };
        match ctx.row_of {
            Some(rt) if rt != table => {
                self.err(pos, format!("inside an aggregate over {rt}, only {rt}'s columns can be read, not {table}.{column}"));
                return None;
            }
            Some(_) => {}
            None => {
                if !t.serves(ctx.kind) {
                    self.err(
                        pos,
                        format!("{table} rows are about {}s, not {}s", t.subject, ctx.kind),
                    );
                    return None;
                }
                if !t.per_entity() {
                    self.err(pos, format!("{table} is an event table with many rows per entity: read it through exists(…), count(…), sum(…), min(…) or max(…)"));
                    return None;
                }
            }
        }
        Some(c.ty)
    }

    /// The type of `e`, or `None` after reporting why it has none.
    fn ty(&mut self, e: &Expr, ctx: Ctx<'_>, conds: &[&str]) -> Option<Ty> {
        let p = self.policy;
        match &e.kind {
            ExprKind::Lit(l) => Some(match l {
                Lit::Num(_) => Ty::Num,
                Lit::Str(_) => Ty::Str,
                Lit::Date(_) => Ty::Date,
                Lit::Bool(_) => Ty::Bool,
            }),
            ExprKind::Name(n) => {
                if n == "as_of" {
                    return Some(Ty::Date);
                }
                if let Some(prm) = p.params.iter().find(|q| &q.name == n) {
                    return self.ty(&prm.value, ctx, &[]);
                }
                if ctx.row_of.is_none() && ctx.kind == p.subject && conds.contains(&n.as_str()) {
                    return Some(Ty::Bool);
                }
                let hint = suggest(
                    n,
                    p.params
                        .iter()
                        .map(|q| &q.name)
                        .chain(p.conditions.iter().map(|c| &c.name)),
                );
                self.err(
                    e.pos,
                    format!("`{n}` is not a declared parameter or an earlier condition{hint}"),
                );
                None
            }
            ExprKind::Field { table, column } => self.field(e.pos, table, column, ctx),
            ExprKind::Not(x) => {
                self.want(x, ctx, conds, Ty::Bool, "`not` takes true/false")?;
                Some(Ty::Bool)
            }
            ExprKind::And(a, b) | ExprKind::Or(a, b) => {
                let ta = self.want(a, ctx, conds, Ty::Bool, "`and`/`or` take true/false");
                let tb = self.want(b, ctx, conds, Ty::Bool, "`and`/`or` take true/false");
                ta.and(tb).map(|_| Ty::Bool)
            }
            ExprKind::Cmp(op, a, b) => {
                let (ta, tb) = (self.ty(a, ctx, conds), self.ty(b, ctx, conds));
                let (ta, tb) = (ta?, tb?);
                if !comparable(ta, tb) {
                    self.err(
                        e.pos,
                        format!("cannot compare {} with {}", ta.as_str(), tb.as_str()),
                    );
                    return None;
                }
                if matches!(op, CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge) && ta == Ty::Bool {
                    self.err(e.pos, "true/false values have no order");
                    return None;
                }
                Some(Ty::Bool)
            }
            ExprKind::InSet(x, items) => {
                let tx = self.ty(x, ctx, conds)?;
                for it in items {
                    if let Some(ti) = self.ty(it, ctx, conds)
                        && !comparable(tx, ti)
                    {
                        self.err(
                            it.pos,
                            format!("a set of {} cannot hold {}", tx.as_str(), ti.as_str()),
                        );
                    }
                }
                Some(Ty::Bool)
            }
            ExprKind::InRange(x, lo, hi) => {
                let tx = self.ty(x, ctx, conds)?;
                for b in [lo, hi].into_iter().flatten() {
                    if let Some(tb) = self.ty(b, ctx, conds)
                        && !comparable(tx, tb)
                    {
                        self.err(
                            b.pos,
                            format!(
                                "a range of {} cannot have a bound of {}",
                                tx.as_str(),
                                tb.as_str()
                            ),
                        );
                    }
                }
                Some(Ty::Bool)
            }
            ExprKind::Within(x, n, _) => {
                let tx = self.ty(x, ctx, conds)?;
                if !matches!(tx, Ty::Date | Ty::Month) {
                    self.err(
                        e.pos,
                        format!("`within` needs a date or a month, not {}", tx.as_str()),
                    );
                }
                self.want(n, ctx, conds, Ty::Num, "a window's length is a number")?;
                Some(Ty::Bool)
            }
            ExprKind::Arith(op, a, b) => {
                let (ta, tb) = (self.ty(a, ctx, conds)?, self.ty(b, ctx, conds)?);
                match (op, ta, tb) {
                    (_, Ty::Num, Ty::Num) => Some(Ty::Num),
                    (ArithOp::Add | ArithOp::Sub, Ty::Date, Ty::Offset) => Some(Ty::Date),
                    (ArithOp::Add | ArithOp::Sub, Ty::Month, Ty::Offset) => Some(Ty::Month),
                    (ArithOp::Sub, Ty::Date, Ty::Date) => Some(Ty::Num),
                    (ArithOp::Sub, Ty::Month, Ty::Month) => Some(Ty::Num),
                    _ => {
                        self.err(
                            e.pos,
                            format!("no arithmetic between {} and {}", ta.as_str(), tb.as_str()),
                        );
                        None
                    }
                }
            }
            ExprKind::Neg(x) => self.want(x, ctx, conds, Ty::Num, "only numbers can be negated"),
            ExprKind::Offset(x, _) => {
                self.want(x, ctx, conds, Ty::Num, "a duration's length is a number")?;
                Some(Ty::Offset)
            }
            ExprKind::Call(name, args) => {
                let tys: Vec<Option<Ty>> = args.iter().map(|a| self.ty(a, ctx, conds)).collect();
                if tys.iter().any(Option::is_none) {
                    return None;
                }
                let tys: Vec<Ty> = tys.into_iter().flatten().collect();
                match (name, tys.as_slice()) {
                    (Func::Age, [Ty::Date]) => Some(Ty::Num),
                    (Func::Year, [Ty::Date | Ty::Month]) => Some(Ty::Num),
                    (Func::Month, [Ty::Date]) => Some(Ty::Month),
                    (Func::Min | Func::Max, [a, b])
                        if a == b && matches!(a, Ty::Num | Ty::Date | Ty::Month) =>
                    {
                        Some(*a)
                    }
                    (Func::Round | Func::Floor | Func::Ceil, [Ty::Num]) => Some(Ty::Num),
                    (Func::MonthsBetween, [Ty::Date | Ty::Month, Ty::Date | Ty::Month]) => {
                        Some(Ty::Num)
                    }
                    (Func::IsMissing, [_]) => Some(Ty::Bool),
                    _ => {
                        self.err(e.pos, format!(
                            "`{}` does not take ({}): functions are age(date), year(date), month(date), min(a, b), max(a, b), round(x), floor(x), ceil(x), months_between(a, b), is_missing(x)",
                            name.name(),
                            tys.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
                        ));
                        None
                    }
                }
            }
            ExprKind::TableAgg {
                agg,
                table,
                column,
                filter,
            } => {
                let Some(t) = self.schema.tables.get(table) else {
                    let hint = suggest(table, self.schema.tables.keys());
                    self.err(e.pos, format!("unknown table {table}{hint}"));
                    return None;
                };
                if ctx.row_of.is_some() {
                    self.err(
                        e.pos,
                        "aggregates cannot be nested inside another aggregate's `where`",
                    );
                    return None;
                }
                if !t.serves(ctx.kind) {
                    self.err(
                        e.pos,
                        format!("{table} rows are about {}s, not {}s", t.subject, ctx.kind),
                    );
                    return None;
                }
                let inner = Ctx {
                    kind: ctx.kind,
                    row_of: Some(table),
                };
                if let Some(f) = filter {
                    self.want(f, inner, &[], Ty::Bool, "a `where` filter is true/false")?;
                }
                match (agg, column) {
                    (Agg::Exists, _) => Some(Ty::Bool),
                    (Agg::Count, _) => Some(Ty::Num),
                    (_, Some(c)) => {
                        let tc = self.field(e.pos, table, c, inner)?;
                        match (agg, tc) {
                            (Agg::Sum, Ty::Num) => Some(Ty::Num),
                            (Agg::Min | Agg::Max, Ty::Num | Ty::Date | Ty::Month) => Some(tc),
                            _ => {
                                self.err(
                                    e.pos,
                                    format!("{}() over {} is not defined", agg.name(), tc.as_str()),
                                );
                                None
                            }
                        }
                    }
                    _ => None,
                }
            }
            ExprKind::RelAgg {
                agg,
                relation,
                body,
            } => {
                let Some(r) = self.relations.get(relation) else {
                    let hint = suggest(relation, self.relations.keys());
                    self.err(e.pos, format!("unknown relation `{relation}`{hint}"));
                    return None;
                };
                if ctx.row_of.is_some() {
                    self.err(
                        e.pos,
                        "relations cannot be followed inside an aggregate's `where`",
                    );
                    return None;
                }
                if r.from != ctx.kind {
                    self.err(
                        e.pos,
                        format!(
                            "relation `{relation}` starts from a {}, not a {}",
                            r.from, ctx.kind
                        ),
                    );
                    return None;
                }
                let target = self.relation_target(r)?;
                if let Some(b) = body {
                    let inner = Ctx {
                        kind: target,
                        row_of: None,
                    };
                    self.want(
                        b,
                        inner,
                        &[],
                        Ty::Bool,
                        "a relation's condition is true/false",
                    )?;
                }
                match agg {
                    Agg::Count => Some(Ty::Num),
                    Agg::Any | Agg::All | Agg::Exists => Some(Ty::Bool),
                    _ => None,
                }
            }
            ExprKind::Policy(id) => {
                match self.subjects.get(id) {
                    None => {
                        self.err(e.pos, format!("unknown policy {id}"));
                        return None;
                    }
                    Some(s) if s != ctx.kind => {
                        self.err(
                            e.pos,
                            format!("policy {id} is about {s}s, not {}s", ctx.kind),
                        );
                        return None;
                    }
                    Some(_) => {}
                }
                if id == &p.id {
                    self.err(e.pos, format!("policy {id} refers to itself"));
                    return None;
                }
                if !self.depends.contains(id) {
                    self.depends.push(id.clone());
                }
                Some(Ty::Bool)
            }
            ExprKind::Band { of, arms } => self.band(e, of, arms, ctx, conds),
            ExprKind::If(c, a, b) => {
                self.want(c, ctx, conds, Ty::Bool, "`if` takes a true/false condition")?;
                let (ta, tb) = (self.ty(a, ctx, conds)?, self.ty(b, ctx, conds)?);
                if ta != tb {
                    self.err(
                        e.pos,
                        format!(
                            "`then` gives {} but `else` gives {}",
                            ta.as_str(),
                            tb.as_str()
                        ),
                    );
                    return None;
                }
                Some(ta)
            }
        }
    }

    /// The kind of entity at the other end of a relation.
    fn relation_target(&mut self, r: &Relation) -> Option<&'static str> {
        SUBJECTS.iter().find(|k| **k == r.to).copied()
    }

    fn want(&mut self, e: &Expr, ctx: Ctx<'_>, conds: &[&str], want: Ty, msg: &str) -> Option<Ty> {
        let t = self.ty(e, ctx, conds)?;
        if t != want {
            self.err(e.pos, format!("{msg}; this is {}", t.as_str()));
            return None;
        }
        Some(t)
    }

    fn band(
        &mut self,
        e: &Expr,
        of: &Expr,
        arms: &[BandArm],
        ctx: Ctx<'_>,
        conds: &[&str],
    ) -> Option<Ty> {
        let t = self.ty(of, ctx, conds)?;
        if !matches!(t, Ty::Num | Ty::Date) {
            self.err(
                of.pos,
                format!("bands partition numbers or dates, not {}", t.as_str()),
            );
            return None;
        }
        if arms.is_empty() {
            self.err(e.pos, "a band needs at least one arm `lo .. hi => value`");
            return None;
        }
        // Bounds must be constants, so that overlaps and gaps are found now.
        let mut bounds: Vec<(Pos, Option<f64>, Option<f64>)> = Vec::new();
        for a in arms {
            let konst = |b: &Option<Expr>, this: &mut Self| -> Option<Option<f64>> {
                match b {
                    None => Some(None),
                    Some(x) => match this.constant(x) {
                        Some(v) => Some(Some(v)),
                        None => {
                            this.err(
                                x.pos,
                                "a band bound must be a number, a date or a parameter",
                            );
                            None
                        }
                    },
                }
            };
            let lo = konst(&a.lo, self)?;
            let hi = konst(&a.hi, self)?;
            self.want(&a.value, ctx, conds, Ty::Num, "a band's value is a number")?;
            bounds.push((a.pos, lo, hi));
        }
        bounds.sort_by(|a, b| {
            a.1.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&b.1.unwrap_or(f64::NEG_INFINITY))
        });
        for (i, (pos, lo, hi)) in bounds.iter().enumerate() {
            if let (Some(l), Some(h)) = (lo, hi)
                && l >= h
            {
                self.err(
                    *pos,
                    "this band is empty: its lower bound is not below its upper bound",
                );
            }
            if i + 1 < bounds.len() {
                let (npos, nlo, _) = bounds[i + 1];
                match (hi, nlo) {
                    (None, _) | (_, None) => {
                        self.err(
                            npos,
                            "bands overlap: an open-ended band already covers this one",
                        );
                    }
                    (Some(h), Some(n)) if n < *h => {
                        self.err(npos, format!("bands overlap between {n} and {h}"))
                    }
                    (Some(h), Some(n)) if n > *h => {
                        self.err(npos, format!("bands leave a gap between {h} and {n}"))
                    }
                    _ => {}
                }
            }
        }
        Some(Ty::Num)
    }

    /// The value of a literal or parameter, as a number (dates as day numbers).
    fn constant(&self, e: &Expr) -> Option<f64> {
        match &e.kind {
            ExprKind::Lit(Lit::Num(n)) => Some(*n),
            ExprKind::Lit(Lit::Date(d)) => Some(f64::from(*d)),
            ExprKind::Neg(x) => self.constant(x).map(|v| -v),
            ExprKind::Name(n) => self
                .policy
                .params
                .iter()
                .find(|p| &p.name == n)
                .and_then(|p| self.constant(&p.value)),
            _ => None,
        }
    }
}

fn comparable(a: Ty, b: Ty) -> bool {
    a == b || matches!((a, b), (Ty::Date, Ty::Month) | (Ty::Month, Ty::Date))
}
