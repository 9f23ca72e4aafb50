//! The syntax tree of policy files. Every node keeps its position for error messages.

use std::fmt;

/// A position in a policy file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Lit {
    Num(f64),
    Str(String),
    /// Days since 1970-01-01.
    Date(i32),
    Bool(bool),
}

impl Lit {
    /// A parameter value as a user writes it on a command line or in a request: a number, a
    /// date (`YYYY-MM-DD`), `true` / `false`, or text (quotes optional).
    pub fn parse_value(v: &str) -> Lit {
        let v = v.trim();
        if let Ok(n) = v.parse::<f64>() {
            return Lit::Num(n);
        }
        if v == "true" || v == "false" {
            return Lit::Bool(v == "true");
        }
        let mut it = v.split('-');
        let date = (|| {
            let (y, m, d) = (
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            );
            if it.next().is_some() {
                return None;
            }
            crate::date::Date::from_ymd(y, m, d)
        })();
        match date {
            Some(d) => Lit::Date(d.0),
            None => Lit::Str(v.trim_matches('"').to_string()),
        }
    }
}

impl fmt::Display for Lit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lit::Num(n) => write!(f, "{n}"),
            Lit::Str(s) => write!(f, "{s:?}"),
            Lit::Date(d) => write!(f, "{}", crate::date::Date(*d)),
            Lit::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Units of a time window or date offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Days,
    Months,
    Years,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// How a relation goes from the subject to the related entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The subject's rows name the related entities (`->`).
    Out,
    /// The related entities' rows name the subject (`<-`).
    In,
}

/// Aggregates over a table's rows or a relation's entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Agg {
    Exists,
    Count,
    Sum,
    Min,
    Max,
    Any,
    All,
}

impl Agg {
    pub fn from_name(name: &str) -> Option<Agg> {
        [
            Agg::Exists,
            Agg::Count,
            Agg::Sum,
            Agg::Min,
            Agg::Max,
            Agg::Any,
            Agg::All,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Agg::Exists => "exists",
            Agg::Count => "count",
            Agg::Sum => "sum",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Any => "any",
            Agg::All => "all",
        }
    }
}

/// The functions of the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Func {
    Age,
    Year,
    Month,
    Min,
    Max,
    Round,
    Floor,
    Ceil,
    MonthsBetween,
    IsMissing,
}

impl Func {
    pub const ALL: [Func; 10] = [
        Func::Age,
        Func::Year,
        Func::Month,
        Func::Min,
        Func::Max,
        Func::Round,
        Func::Floor,
        Func::Ceil,
        Func::MonthsBetween,
        Func::IsMissing,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Func::Age => "age",
            Func::Year => "year",
            Func::Month => "month",
            Func::Min => "min",
            Func::Max => "max",
            Func::Round => "round",
            Func::Floor => "floor",
            Func::Ceil => "ceil",
            Func::MonthsBetween => "months_between",
            Func::IsMissing => "is_missing",
        }
    }

    pub fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub pos: Pos,
    pub kind: ExprKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Lit(Lit),
    /// A parameter, `as_of`, or a condition of the same policy.
    Name(String),
    /// `DEPT.table.column`.
    Field {
        table: String,
        column: String,
    },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// `x in {a, b}` or `x in lo .. hi` (hi exclusive; either may be absent).
    InSet(Box<Expr>, Vec<Expr>),
    InRange(Box<Expr>, Option<Box<Expr>>, Option<Box<Expr>>),
    /// `x within N unit`: as_of − N unit < x ≤ as_of.
    Within(Box<Expr>, Box<Expr>, Unit),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
    /// `age(date)`, `year(date)`, `min(a, b)`, …
    Call(Func, Vec<Expr>),
    /// `N years` etc. (a date offset, only in date arithmetic).
    Offset(Box<Expr>, Unit),
    /// `exists(T where c)`, `count(T where c)`, `sum(T.col where c)`, `max(T.col)`.
    TableAgg {
        agg: Agg,
        table: String,
        /// The summed / compared column for sum, min, max.
        column: Option<String>,
        filter: Option<Box<Expr>>,
    },
    /// `count(members: c)`, `any(employees: c)`, `all(members: c)`.
    RelAgg {
        agg: Agg,
        relation: String,
        body: Option<Box<Expr>>,
    },
    /// `if c then a else b` (UNKNOWN c: a when a and b agree, else missing).
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `policy(M08)`: the state of another policy for the same subject.
    Policy(String),
    /// `band x { lo .. hi => v, … }`.
    Band {
        of: Box<Expr>,
        arms: Vec<BandArm>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct BandArm {
    pub pos: Pos,
    pub lo: Option<Expr>,
    pub hi: Option<Expr>,
    pub value: Expr,
}

/// A named condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub pos: Pos,
    pub name: String,
    pub expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub pos: Pos,
    pub name: String,
    pub value: Expr,
}

/// How often the amount is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Once,
    Monthly,
    Yearly,
    Quarterly,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Once => "once",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
            Period::Quarterly => "quarterly",
        }
    }
}

/// One case test: an entity's rows, related entities, the expected outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub pos: Pos,
    pub name: String,
    pub as_of: Option<i32>,
    pub rows: Vec<CaseRow>,
    /// `related members { row … }`: entities on the other side of a relation.
    pub related: Vec<(String, Vec<CaseRow>)>,
    /// Other policies' expected states, for `policy(X)` conditions.
    pub policies: Vec<(String, Tri)>,
    pub expect: Vec<(Pos, String, Tri)>,
    /// `None`: no amount expected (not a candidate).
    pub amount: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub pos: Pos,
    pub table: String,
    pub doubtful: bool,
    pub values: Vec<(String, Lit)>,
}

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    pub fn as_str(self) -> &'static str {
        match self {
            Tri::True => "TRUE",
            Tri::False => "FALSE",
            Tri::Unknown => "UNKNOWN",
        }
    }
}

/// A policy file.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub pos: Pos,
    pub id: String,
    pub name: String,
    pub domain: String,
    pub subject: String,
    pub lead: String,
    pub mode: String,
    pub article: String,
    pub version: u32,
    pub valid: Option<(i32, i32)>,
    pub params: Vec<Param>,
    pub conditions: Vec<Condition>,
    pub amount: Option<(Expr, Period)>,
    pub cases: Vec<Case>,
}

/// A relation declaration:
/// `relation members of household = person <- GA.person.household_no` (the persons whose
/// `GA.person` rows name the household), or
/// `relation household of person = household -> GA.person.household_no` (the household the
/// person's rows name).
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub pos: Pos,
    pub name: String,
    /// The subject kind the relation starts from.
    pub from: String,
    /// The kind of the related entities.
    pub to: String,
    pub direction: Direction,
    pub table: String,
    pub column: String,
}

impl Expr {
    /// Calls `f` on this expression and every expression inside it.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        use ExprKind::*;
        match &self.kind {
            Lit(_) | Name(_) | Field { .. } | Policy(_) => {}
            Not(x) | Neg(x) | Offset(x, _) => x.visit(f),
            And(a, b) | Or(a, b) | Cmp(_, a, b) | Arith(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            InSet(x, items) => {
                x.visit(f);
                items.iter().for_each(|i| i.visit(f));
            }
            InRange(x, lo, hi) => {
                x.visit(f);
                for b in [lo, hi].into_iter().flatten() {
                    b.visit(f);
                }
            }
            Within(x, n, _) => {
                x.visit(f);
                n.visit(f);
            }
            Call(_, args) => args.iter().for_each(|a| a.visit(f)),
            TableAgg { filter, .. } => {
                if let Some(x) = filter {
                    x.visit(f);
                }
            }
            RelAgg { body, .. } => {
                if let Some(x) = body {
                    x.visit(f);
                }
            }
            If(c, a, b) => {
                c.visit(f);
                a.visit(f);
                b.visit(f);
            }
            Band { of, arms } => {
                of.visit(f);
                for a in arms {
                    for b in [&a.lo, &a.hi].into_iter().flatten() {
                        b.visit(f);
                    }
                    a.value.visit(f);
                }
            }
        }
    }
}
