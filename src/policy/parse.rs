//! The lexer and parser of policy files (grammar in `datasets/policies/README.md`).
//!
//! Hand-written recursive descent: every error carries the line and column of the token at
//! fault and says what was expected.

use super::ast::*;
use crate::date::Date;

/// A syntax error at a position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub msg: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Date(i32),
    Sym(&'static str),
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(n) => format!("number {n}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Date(d) => format!("date {}", Date(*d)),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::Eof => "the end of the file".into(),
        }
    }
}

const SYMS: [&str; 22] = [
    "==", "!=", "<=", ">=", "=>", "->", "<-", "..", "{", "}", "(", ")", ",", ":", ".", "<", ">",
    "=", "+", "-", "*", "/",
];

fn lex(src: &str) -> Result<Vec<(Pos, Tok)>, SyntaxError> {
    let mut out = Vec::new();
    let chars: Vec<char> = src.chars().collect();
    let (mut i, mut line, mut col) = (0usize, 1u32, 1u32);
    let at = |line, col| Pos { line, col };
    while i < chars.len() {
        let c = chars[i];
        let pos = at(line, col);
        let advance = |n: usize, i: &mut usize, col: &mut u32| {
            *i += n;
            *col += n as u32;
        };
        if c == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if c.is_whitespace() {
            advance(1, &mut i, &mut col);
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                match chars.get(j) {
                    None | Some('\n') => {
                        return Err(SyntaxError {
                            pos,
                            msg: "this string is not closed on its line".into(),
                        });
                    }
                    Some('"') => break,
                    Some('\\') if chars.get(j + 1) == Some(&'"') => {
                        s.push('"');
                        j += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        j += 1;
                    }
                }
            }
            let n = j + 1 - i;
            advance(n, &mut i, &mut col);
            out.push((pos, Tok::Str(s)));
            continue;
        }
        if c.is_ascii_digit() {
            // A date: YYYY-MM-DD.
            let is_date = i + 10 <= chars.len()
                && chars[i..i + 4].iter().all(char::is_ascii_digit)
                && chars[i + 4] == '-'
                && chars[i + 5..i + 7].iter().all(char::is_ascii_digit)
                && chars[i + 7] == '-'
                && chars[i + 8..i + 10].iter().all(char::is_ascii_digit);
            if is_date {
                let text: String = chars[i..i + 10].iter().collect();
                let d = |a: usize, b: usize| text[a..b].parse::<u32>().unwrap_or(0);
                let date = Date::from_ymd(d(0, 4) as i32, d(5, 7), d(8, 10)).ok_or_else(|| {
                    SyntaxError {
                        pos,
                        msg: format!("{text} is not a calendar date"),
                    }
                })?;
                advance(10, &mut i, &mut col);
                out.push((pos, Tok::Date(date.0)));
                continue;
            }
            let mut j = i;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == '_') {
                j += 1;
            }
            if j + 1 < chars.len() && chars[j] == '.' && chars[j + 1].is_ascii_digit() {
                j += 1;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
            }
            let text: String = chars[i..j].iter().filter(|&&c| c != '_').collect();
            let n = text.parse::<f64>().map_err(|_| SyntaxError {
                pos,
                msg: format!("{text} is not a number"),
            })?;
            advance(j - i, &mut i, &mut col);
            out.push((pos, Tok::Num(n)));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let mut j = i;
            while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                j += 1;
            }
            let text: String = chars[i..j].iter().collect();
            advance(j - i, &mut i, &mut col);
            out.push((pos, Tok::Ident(text)));
            continue;
        }
        let rest: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let Some(sym) = SYMS.iter().find(|s| rest.starts_with(**s)) else {
            return Err(SyntaxError {
                pos,
                msg: format!("unexpected character {c:?}"),
            });
        };
        advance(sym.chars().count(), &mut i, &mut col);
        out.push((pos, Tok::Sym(sym)));
    }
    out.push((at(line, col), Tok::Eof));
    Ok(out)
}

/// What a policy file holds.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    pub policies: Vec<Policy>,
    pub relations: Vec<Relation>,
}

struct Parser {
    toks: Vec<(Pos, Tok)>,
    at: usize,
}

type R<T> = Result<T, SyntaxError>;

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.at.min(self.toks.len() - 1)].1
    }
    fn peek2(&self) -> &Tok {
        &self.toks[(self.at + 1).min(self.toks.len() - 1)].1
    }
    fn pos(&self) -> Pos {
        self.toks[self.at.min(self.toks.len() - 1)].0
    }
    fn bump(&mut self) -> (Pos, Tok) {
        let t = self.toks[self.at.min(self.toks.len() - 1)].clone();
        if self.at < self.toks.len() {
            self.at += 1;
        }
        t
    }
    fn err<T>(&self, msg: impl Into<String>) -> R<T> {
        Err(SyntaxError {
            pos: self.pos(),
            msg: msg.into(),
        })
    }
    fn expected<T>(&self, what: &str) -> R<T> {
        self.err(format!("expected {what}, found {}", self.peek().describe()))
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }
    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == w)
    }
    fn eat_sym(&mut self, s: &str) -> bool {
        let yes = self.is_sym(s);
        if yes {
            self.bump();
        }
        yes
    }
    fn eat_word(&mut self, w: &str) -> bool {
        let yes = self.is_word(w);
        if yes {
            self.bump();
        }
        yes
    }
    fn sym(&mut self, s: &str) -> R<()> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            self.expected(&format!("`{s}`"))
        }
    }
    fn ident(&mut self, what: &str) -> R<String> {
        match self.peek().clone() {
            Tok::Ident(s) => {
                self.bump();
                Ok(s)
            }
            _ => self.expected(what),
        }
    }
    fn string(&mut self, what: &str) -> R<String> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => self.expected(what),
        }
    }
    fn date(&mut self) -> R<i32> {
        match self.peek().clone() {
            Tok::Date(d) => {
                self.bump();
                Ok(d)
            }
            _ => self.expected("a date (YYYY-MM-DD)"),
        }
    }
    /// A word or a string (for `domain 惠民`, `lead "民政局"`).
    fn word(&mut self, what: &str) -> R<String> {
        match self.peek().clone() {
            Tok::Ident(s) | Tok::Str(s) => {
                self.bump();
                Ok(s)
            }
            _ => self.expected(what),
        }
    }

    fn file(&mut self) -> R<ParsedFile> {
        let mut f = ParsedFile::default();
        loop {
            if matches!(self.peek(), Tok::Eof) {
                return Ok(f);
            }
            if self.is_word("policy") {
                f.policies.push(self.policy()?);
            } else if self.is_word("relation") {
                f.relations.push(self.relation()?);
            } else {
                return self.expected("`policy` or `relation`");
            }
        }
    }

    fn relation(&mut self) -> R<Relation> {
        let pos = self.pos();
        self.bump();
        let name = self.ident("the relation's name")?;
        if !self.eat_word("of") {
            return self.expected("`of` and the subject kind");
        }
        let from = self.ident("a subject kind (person, household, enterprise)")?;
        self.sym("=")?;
        let to = self.ident("the related kind (person, household, enterprise)")?;
        let direction = if self.eat_sym("->") {
            Direction::Out
        } else if self.eat_sym("<-") {
            Direction::In
        } else {
            return self.expected("`->` or `<-`");
        };
        let (table, column) = self.field_path()?;
        Ok(Relation {
            pos,
            name,
            from,
            to,
            direction,
            table,
            column,
        })
    }

    fn field_path(&mut self) -> R<(String, String)> {
        let dept = self.ident("a department code")?;
        self.sym(".")?;
        let table = self.ident("a table name")?;
        self.sym(".")?;
        let mut column = self.ident("a column name")?;
        while self.is_sym(".") && matches!(self.peek2(), Tok::Ident(_)) {
            self.bump();
            column.push('.');
            column.push_str(&self.ident("a column name")?);
        }
        Ok((format!("{dept}.{table}"), column))
    }

    fn policy(&mut self) -> R<Policy> {
        let pos = self.pos();
        self.bump();
        let id = self.ident("the policy id (like M01)")?;
        let name = self.string("the policy's name in quotes")?;
        self.sym("{")?;
        let mut p = Policy {
            pos,
            id,
            name,
            domain: String::new(),
            subject: String::new(),
            lead: String::new(),
            mode: String::new(),
            article: String::new(),
            version: 1,
            valid: None,
            params: Vec::new(),
            conditions: Vec::new(),
            amount: None,
            cases: Vec::new(),
        };
        loop {
            let pos = self.pos();
            let key = match self.peek().clone() {
                Tok::Sym("}") => {
                    self.bump();
                    break;
                }
                Tok::Ident(k) => k,
                _ => return self.expected("a policy item (subject, when, amount, …) or `}`"),
            };
            self.bump();
            match key.as_str() {
                "domain" => p.domain = self.word("a domain (惠民, 惠企, …)")?,
                "subject" => p.subject = self.ident("person, household or enterprise")?,
                "lead" => p.lead = self.word("the lead department")?,
                "mode" => p.mode = self.ident("direct, confirm or push")?,
                "article" => p.article = self.string("the article in quotes")?,
                "version" => match self.bump().1 {
                    Tok::Num(n) if n >= 1.0 && n.fract() == 0.0 => p.version = n as u32,
                    _ => {
                        return Err(SyntaxError {
                            pos,
                            msg: "version takes a whole number ≥ 1".into(),
                        });
                    }
                },
                "valid" => {
                    let from = self.date()?;
                    self.sym("..")?;
                    let to = self.date()?;
                    p.valid = Some((from, to));
                }
                "param" => {
                    let name = self.ident("the parameter's name")?;
                    self.sym("=")?;
                    let value = self.expr()?;
                    p.params.push(Param { pos, name, value });
                }
                "when" => {
                    let name = self.ident("the condition's name")?;
                    self.sym(":")?;
                    let expr = self.expr()?;
                    p.conditions.push(Condition { pos, name, expr });
                }
                "amount" => {
                    let e = self.expr()?;
                    let period = if self.eat_word("monthly") {
                        Period::Monthly
                    } else if self.eat_word("yearly") {
                        Period::Yearly
                    } else if self.eat_word("quarterly") {
                        Period::Quarterly
                    } else {
                        self.eat_word("once");
                        Period::Once
                    };
                    p.amount = Some((e, period));
                }
                "case" => p.cases.push(self.case(pos)?),
                other => {
                    return Err(SyntaxError {
                        pos,
                        msg: format!(
                            "unknown policy item `{other}`: expected domain, subject, lead, mode, article, version, valid, param, when, amount or case"
                        ),
                    });
                }
            }
        }
        Ok(p)
    }

    fn case(&mut self, pos: Pos) -> R<Case> {
        let name = self.string("the case's name in quotes")?;
        self.sym("{")?;
        let mut c = Case {
            pos,
            name,
            as_of: None,
            rows: Vec::new(),
            related: Vec::new(),
            policies: Vec::new(),
            expect: Vec::new(),
            amount: None,
        };
        loop {
            if self.eat_sym("}") {
                return Ok(c);
            }
            let key = self.ident("row, related, as_of, policy, expect or amount")?;
            match key.as_str() {
                "as_of" => c.as_of = Some(self.date()?),
                "row" | "doubtful" => c.rows.push(self.case_row(key == "doubtful")?),
                "related" => {
                    let rel = self.ident("a relation name")?;
                    self.sym("{")?;
                    let mut rows = Vec::new();
                    while !self.eat_sym("}") {
                        let k = self.ident("row")?;
                        if k != "row" && k != "doubtful" {
                            return self.err("inside related { … } only rows are allowed");
                        }
                        rows.push(self.case_row(k == "doubtful")?);
                    }
                    c.related.push((rel, rows));
                }
                "policy" => {
                    let id = self.ident("a policy id")?;
                    self.sym("=")?;
                    let t = self.tri()?;
                    c.policies.push((id, t));
                }
                "expect" => loop {
                    let pos = self.pos();
                    let cond = self.ident("a condition name")?;
                    self.sym("=")?;
                    let t = self.tri()?;
                    c.expect.push((pos, cond, t));
                    if !self.eat_sym(",") {
                        break;
                    }
                },
                "amount" => match self.bump().1 {
                    Tok::Num(n) => c.amount = Some(n),
                    _ => return self.err("amount takes a number"),
                },
                other => return self.err(format!("unknown case item `{other}`")),
            }
        }
    }

    fn tri(&mut self) -> R<Tri> {
        let w = self.ident("true, false or unknown")?;
        match w.as_str() {
            "true" | "TRUE" => Ok(Tri::True),
            "false" | "FALSE" => Ok(Tri::False),
            "unknown" | "UNKNOWN" => Ok(Tri::Unknown),
            _ => self.err("expected true, false or unknown"),
        }
    }

    fn case_row(&mut self, doubtful: bool) -> R<CaseRow> {
        let pos = self.pos();
        let dept = self.ident("a table (DEPT.table)")?;
        self.sym(".")?;
        let table = format!("{dept}.{}", self.ident("a table name")?);
        self.sym("{")?;
        let mut values = Vec::new();
        while !self.eat_sym("}") {
            let mut col = self.ident("a column name")?;
            while self.eat_sym(".") {
                col.push('.');
                col.push_str(&self.ident("a column name")?);
            }
            self.sym("=")?;
            let neg = self.eat_sym("-");
            let v = match self.bump().1 {
                Tok::Num(n) => Lit::Num(if neg { -n } else { n }),
                Tok::Str(s) => Lit::Str(s),
                Tok::Date(d) => Lit::Date(d),
                Tok::Ident(b) if b == "true" || b == "false" => Lit::Bool(b == "true"),
                _ => return self.err("a case value is a number, string, date, true or false"),
            };
            values.push((col, v));
            self.eat_sym(",");
        }
        Ok(CaseRow {
            pos,
            table,
            doubtful,
            values,
        })
    }

    // Expressions, loosest first.
    fn expr(&mut self) -> R<Expr> {
        self.logic(Self::and, "or", ExprKind::Or)
    }

    fn and(&mut self) -> R<Expr> {
        self.logic(Self::not, "and", ExprKind::And)
    }

    /// A left-associative chain of `next` joined by the word `word`.
    fn logic(
        &mut self,
        next: fn(&mut Self) -> R<Expr>,
        word: &str,
        make: fn(Box<Expr>, Box<Expr>) -> ExprKind,
    ) -> R<Expr> {
        let mut l = next(self)?;
        while self.is_word(word) {
            let pos = self.pos();
            self.bump();
            let r = next(self)?;
            l = Expr {
                pos,
                kind: make(Box::new(l), Box::new(r)),
            };
        }
        Ok(l)
    }

    fn not(&mut self) -> R<Expr> {
        if self.is_word("not") {
            let pos = self.pos();
            self.bump();
            let e = self.not()?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Not(Box::new(e)),
            });
        }
        self.cmp()
    }

    fn cmp(&mut self) -> R<Expr> {
        let l = self.sum()?;
        let pos = self.pos();
        let op = match self.peek() {
            Tok::Sym("==") => Some(CmpOp::Eq),
            Tok::Sym("!=") => Some(CmpOp::Ne),
            Tok::Sym("<") => Some(CmpOp::Lt),
            Tok::Sym("<=") => Some(CmpOp::Le),
            Tok::Sym(">") => Some(CmpOp::Gt),
            Tok::Sym(">=") => Some(CmpOp::Ge),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            let r = self.sum()?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Cmp(op, Box::new(l), Box::new(r)),
            });
        }
        if self.eat_word("in") {
            if self.eat_sym("{") {
                let mut items = Vec::new();
                while !self.eat_sym("}") {
                    items.push(self.sum()?);
                    if !self.eat_sym(",") {
                        self.sym("}")?;
                        break;
                    }
                }
                return Ok(Expr {
                    pos,
                    kind: ExprKind::InSet(Box::new(l), items),
                });
            }
            let lo = if self.is_sym("..") {
                None
            } else {
                Some(Box::new(self.sum()?))
            };
            self.sym("..")?;
            let hi = if self.starts_operand() {
                Some(Box::new(self.sum()?))
            } else {
                None
            };
            return Ok(Expr {
                pos,
                kind: ExprKind::InRange(Box::new(l), lo, hi),
            });
        }
        if self.eat_word("within") {
            let n = self.atom()?;
            let unit = self.unit()?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Within(Box::new(l), Box::new(n), unit),
            });
        }
        Ok(l)
    }

    fn starts_operand(&self) -> bool {
        match self.peek() {
            Tok::Num(_) | Tok::Str(_) | Tok::Date(_) => true,
            Tok::Sym("(") | Tok::Sym("-") => true,
            Tok::Ident(w) => !matches!(w.as_str(), "and" | "or" | "then" | "else"),
            _ => false,
        }
    }

    fn unit(&mut self) -> R<Unit> {
        let w = self.ident("days, months or years")?;
        match w.as_str() {
            "day" | "days" => Ok(Unit::Days),
            "month" | "months" => Ok(Unit::Months),
            "year" | "years" => Ok(Unit::Years),
            _ => self.err(format!("`{w}` is not a unit: days, months or years")),
        }
    }

    fn sum(&mut self) -> R<Expr> {
        self.binary(Self::prod, &[("+", ArithOp::Add), ("-", ArithOp::Sub)])
    }

    fn prod(&mut self) -> R<Expr> {
        self.binary(Self::unary, &[("*", ArithOp::Mul), ("/", ArithOp::Div)])
    }

    /// A left-associative chain of `next` joined by the operators `ops`.
    fn binary(&mut self, next: fn(&mut Self) -> R<Expr>, ops: &[(&str, ArithOp)]) -> R<Expr> {
        let mut l = next(self)?;
        loop {
            let pos = self.pos();
            let Some(&(_, op)) = ops.iter().find(|(s, _)| self.is_sym(s)) else {
                return Ok(l);
            };
            self.bump();
            let r = next(self)?;
            l = Expr {
                pos,
                kind: ExprKind::Arith(op, Box::new(l), Box::new(r)),
            };
        }
    }

    fn unary(&mut self) -> R<Expr> {
        if self.is_sym("-") {
            let pos = self.pos();
            self.bump();
            let e = self.unary()?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Neg(Box::new(e)),
            });
        }
        let e = self.atom()?;
        // `3 years`: a date offset.
        if matches!(e.kind, ExprKind::Lit(Lit::Num(_)) | ExprKind::Name(_))
            && matches!(self.peek(), Tok::Ident(w) if matches!(w.as_str(), "day" | "days" | "month" | "months" | "year" | "years"))
        {
            let pos = e.pos;
            let unit = self.unit()?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Offset(Box::new(e), unit),
            });
        }
        Ok(e)
    }

    fn atom(&mut self) -> R<Expr> {
        let pos = self.pos();
        let lit = |kind| Ok(Expr { pos, kind });
        match self.peek().clone() {
            Tok::Num(n) => {
                self.bump();
                lit(ExprKind::Lit(Lit::Num(n)))
            }
            Tok::Str(s) => {
                self.bump();
                lit(ExprKind::Lit(Lit::Str(s)))
            }
            Tok::Date(d) => {
                self.bump();
                lit(ExprKind::Lit(Lit::Date(d)))
            }
            Tok::Sym("(") => {
                self.bump();
                let e = self.expr()?;
                self.sym(")")?;
                Ok(e)
            }
            Tok::Ident(w) => {
                match w.as_str() {
                    "true" | "false" => {
                        self.bump();
                        return lit(ExprKind::Lit(Lit::Bool(w == "true")));
                    }
                    "band" => return self.band(),
                    "if" => {
                        self.bump();
                        let c = self.expr()?;
                        if !self.eat_word("then") {
                            return self.expected("`then`");
                        }
                        let a = self.expr()?;
                        if !self.eat_word("else") {
                            return self.expected("`else`");
                        }
                        let b = self.expr()?;
                        return lit(ExprKind::If(Box::new(c), Box::new(a), Box::new(b)));
                    }
                    _ => {}
                }
                // DEPT.table.column
                if matches!(self.peek2(), Tok::Sym(".")) {
                    let (table, column) = self.field_path()?;
                    return lit(ExprKind::Field { table, column });
                }
                if matches!(self.peek2(), Tok::Sym("(")) {
                    self.bump();
                    self.bump();
                    return self.call(pos, w);
                }
                self.bump();
                lit(ExprKind::Name(w))
            }
            _ => self.expected("a value, a field (DEPT.table.column), a name or `(`"),
        }
    }

    fn call(&mut self, pos: Pos, name: String) -> R<Expr> {
        let agg = Agg::from_name(&name);
        if name == "policy" {
            let id = self.ident("a policy id")?;
            self.sym(")")?;
            return Ok(Expr {
                pos,
                kind: ExprKind::Policy(id),
            });
        }
        // `count(rel: …)`, `any(rel: …)`, `all(rel: …)`: a relation.
        if matches!(agg, Some(Agg::Count | Agg::Any | Agg::All | Agg::Exists))
            && matches!(self.peek(), Tok::Ident(_))
            && matches!(self.peek2(), Tok::Sym(":") | Tok::Sym(")"))
        {
            let relation = self.ident("a relation name")?;
            let body = if self.eat_sym(":") {
                Some(Box::new(self.expr()?))
            } else {
                None
            };
            self.sym(")")?;
            return Ok(Expr {
                pos,
                kind: ExprKind::RelAgg {
                    agg: agg.unwrap_or(Agg::Count),
                    relation,
                    body,
                },
            });
        }
        let table_agg = match name.as_str() {
            "exists" | "count" => true,
            "sum" | "min" | "max" => {
                // An aggregate when the first argument is a field followed by `where` or `)`
                // and there is no comma: `max(a, b)` is the larger of two values.
                let mut depth = 0i32;
                let mut j = self.at;
                let mut comma = false;
                while j < self.toks.len() {
                    match &self.toks[j].1 {
                        Tok::Sym("(") => depth += 1,
                        Tok::Sym(")") if depth == 0 => break,
                        Tok::Sym(")") => depth -= 1,
                        Tok::Sym(",") if depth == 0 => comma = true,
                        Tok::Eof => break,
                        _ => {}
                    }
                    j += 1;
                }
                !comma
            }
            _ => false,
        };
        if let Some(agg) = agg.filter(|_| table_agg) {
            let (table, column) = if matches!(agg, Agg::Exists | Agg::Count) {
                let dept = self.ident("a table (DEPT.table)")?;
                self.sym(".")?;
                (format!("{dept}.{}", self.ident("a table name")?), None)
            } else {
                let (t, c) = self.field_path()?;
                (t, Some(c))
            };
            let filter = if self.eat_word("where") {
                Some(Box::new(self.expr()?))
            } else {
                None
            };
            self.sym(")")?;
            return Ok(Expr {
                pos,
                kind: ExprKind::TableAgg {
                    agg,
                    table,
                    column,
                    filter,
                },
            });
        }
        let Some(f) = Func::from_name(&name) else {
            let names: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
            return Err(SyntaxError {
                pos,
                msg: format!(
                    "unknown function `{name}`: functions are {}, and the aggregates exists, count, sum, min, max, any, all",
                    names.join(", ")
                ),
            });
        };
        let mut args = Vec::new();
        if !self.eat_sym(")") {
            loop {
                args.push(self.expr()?);
                if self.eat_sym(")") {
                    break;
                }
                self.sym(",")?;
            }
        }
        Ok(Expr {
            pos,
            kind: ExprKind::Call(f, args),
        })
    }

    fn band(&mut self) -> R<Expr> {
        let pos = self.pos();
        self.bump();
        let of = self.sum()?;
        self.sym("{")?;
        let mut arms = Vec::new();
        while !self.eat_sym("}") {
            let apos = self.pos();
            let lo = if self.is_sym("..") {
                None
            } else {
                Some(self.sum()?)
            };
            self.sym("..")?;
            let hi = if self.is_sym("=>") {
                None
            } else {
                Some(self.sum()?)
            };
            self.sym("=>")?;
            let value = self.sum()?;
            arms.push(BandArm {
                pos: apos,
                lo,
                hi,
                value,
            });
            self.eat_sym(",");
        }
        Ok(Expr {
            pos,
            kind: ExprKind::Band {
                of: Box::new(of),
                arms,
            },
        })
    }
}

/// Parses one policy file's text.
pub fn parse(src: &str) -> Result<ParsedFile, SyntaxError> {
    let toks = lex(src)?;
    Parser { toks, at: 0 }.file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_policy_with_every_construct() {
        let src = r#"
# comment
policy E03 "旅行社质量保证金暂退" {
  subject enterprise  lead 文旅局  domain 惠企  mode confirm
  article "《旅行社条例》第十三条"
  valid 2025-01-01 .. 2026-12-31
  param refund_rate = 0.8
  when licensed: WL.agency.licence_status == "有效"
  when cash: WL.deposit.form in {"现金"}
  when not_frozen: not WL.deposit.court_frozen
  when clean: count(SC.penalty where SC.penalty.date within 3 years and SC.penalty.type != "警告") == 0
  when people: count(employees: age(GA.person.birth_date) in 16 .. 25) >= 1
  when other: not policy(E01)
  amount refund_rate * WL.deposit.balance once
  case "ok" {
    as_of 2025-12-31
    row WL.agency { licence_status = "有效" }
    doubtful WL.deposit { form = "现金", balance = 200000, court_frozen = false }
    related employees { row GA.person { birth_date = 2003-01-01 } }
    policy E01 = false
    expect licensed = true, cash = unknown
    amount 160000
  }
}
"#;
        let f = parse(src).unwrap();
        let p = &f.policies[0];
        assert_eq!(p.id, "E03");
        assert_eq!(p.lead, "文旅局");
        assert_eq!(p.conditions.len(), 6);
        assert_eq!(p.cases[0].expect.len(), 2);
        assert!(p.cases[0].rows[1].doubtful);
        assert!(matches!(
            p.conditions[3].expr.kind,
            ExprKind::Cmp(CmpOp::Eq, ..)
        ));
    }

    proptest::proptest! {
        /// Bad policy files get an error, never a panic: arbitrary text, and the catalogue's own
        /// syntax cut and spliced at random.
        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}", cut in 0usize..400, splice in "[a-z{}()<>=.:,\" 0-9-]{0,12}") {
            let _ = parse(&text);
            let sample = "policy M \"x\" { subject person when a: count(T.t where T.t.c within 3 months) >= 1 and band age(GA.p.b) { 1 .. 2 => 3 } amount if a then 1 else 2 case \"c\" { row T.t { c = 2025-01-01 } expect a = true } }";
            let chars: Vec<char> = sample.chars().collect();
            let at = cut.min(chars.len());
            let mixed: String = chars[..at].iter().collect::<String>() + &splice + &chars[at..].iter().collect::<String>();
            let _ = parse(&mixed);
        }
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = parse("policy X \"x\" {\n  subject person\n  when a: GA.person.status == \n}")
            .unwrap_err();
        assert_eq!(e.pos, Pos { line: 4, col: 1 });
        assert!(e.msg.contains("expected a value"), "{}", e.msg);
        let e = parse("policy X \"x\" {\n  colour red\n}").unwrap_err();
        assert_eq!((e.pos.line, e.pos.col), (2, 3));
        let e = parse("policy X \"unclosed {").unwrap_err();
        assert_eq!(e.pos.line, 1);
        let e = parse("policy X \"x\" { valid 2025-02-30 .. 2025-03-01 }").unwrap_err();
        assert!(e.msg.contains("not a calendar date"));
    }
}
