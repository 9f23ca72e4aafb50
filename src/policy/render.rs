//! Expressions back to policy text (for explanations and reports).

use super::ast::*;

fn unit(u: Unit) -> &'static str {
    match u {
        Unit::Days => "days",
        Unit::Months => "months",
        Unit::Years => "years",
    }
}

fn arith(op: ArithOp) -> &'static str {
    match op {
        ArithOp::Add => "+",
        ArithOp::Sub => "-",
        ArithOp::Mul => "*",
        ArithOp::Div => "/",
    }
}

/// Renders an expression as policy text (fully parenthesized where precedence could mislead).
pub fn expr(e: &Expr) -> String {
    use ExprKind::*;
    match &e.kind {
        Lit(l) => l.to_string(),
        Name(n) => n.clone(),
        Field { table, column } => format!("{table}.{column}"),
        Not(x) => format!("not {}", wrap(x)),
        And(a, b) => format!("{} and {}", wrap(a), wrap(b)),
        Or(a, b) => format!("{} or {}", wrap(a), wrap(b)),
        Cmp(op, a, b) => format!("{} {} {}", expr(a), op.as_str(), expr(b)),
        InSet(x, items) => format!(
            "{} in {{{}}}",
            expr(x),
            items.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        InRange(x, lo, hi) => format!(
            "{} in {} .. {}",
            expr(x),
            lo.as_ref().map(|b| expr(b)).unwrap_or_default(),
            hi.as_ref().map(|b| expr(b)).unwrap_or_default()
        ),
        Within(x, n, u) => format!("{} within {} {}", expr(x), expr(n), unit(*u)),
        Arith(op, a, b) => format!("{} {} {}", wrap(a), arith(*op), wrap(b)),
        Neg(x) => format!("-{}", wrap(x)),
        Call(f, args) => format!(
            "{}({})",
            f.name(),
            args.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        Offset(x, u) => format!("{} {}", expr(x), unit(*u)),
        TableAgg {
            agg,
            table,
            column,
            filter,
        } => {
            let what = match column {
                Some(c) => format!("{table}.{c}"),
                None => table.clone(),
            };
            match filter {
                Some(f) => format!("{}({what} where {})", agg.name(), expr(f)),
                None => format!("{}({what})", agg.name()),
            }
        }
        RelAgg {
            agg,
            relation,
            body,
        } => match body {
            Some(b) => format!("{}({relation}: {})", agg.name(), expr(b)),
            None => format!("{}({relation})", agg.name()),
        },
        Policy(id) => format!("policy({id})"),
        If(c, a, b) => format!("if {} then {} else {}", expr(c), expr(a), expr(b)),
        Band { of, arms } => format!(
            "band {} {{ {} }}",
            expr(of),
            arms.iter()
                .map(|a| format!(
                    "{} .. {} => {}",
                    a.lo.as_ref().map(expr).unwrap_or_default(),
                    a.hi.as_ref().map(expr).unwrap_or_default(),
                    expr(&a.value)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn wrap(e: &Expr) -> String {
    use ExprKind::*;
    match &e.kind {
        And(..) | Or(..) | Arith(..) => format!("({})", expr(e)),
        _ => expr(e),
    }
}
