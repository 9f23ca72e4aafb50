//! Feeds about work: 人社 (RS) enrolment, contributions, unemployment, certificates; 公积金
//! (GJJ); individual income tax withholding (SW.iit).

use super::super::model::{City, eflag, flag};
use super::super::out::{DateStyle, Out};
use super::super::tables::{Col, TableDef, Unit, entity_rng};
use crate::date::{Date, Month};
use crate::source::config::Role::{self, *};
use crate::source::config::{Subject, TableKind};

pub static TABLES: &[TableDef] = &[
    TableDef {
        dept: "RS",
        table: "insured",
        source: "RS.insured",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 参保登记 (one row per person and insurance)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("uscc_employer", EnterpriseRef, ""),
            Col("insurance", Category, "养老/失业/工伤"),
            Col("status", Category, ""),
            Col("start", Role::Date, ""),
            Col("end", Role::Date, ""),
            Col("phone", Phone, ""),
        ],
        emit: rs_insured,
    },
    TableDef {
        dept: "RS",
        table: "contrib",
        source: "RS.contrib",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 月度缴费 (the largest feed)",
        columns: &[
            Col("pid", PersonId, ""),
            Col("uscc", EnterpriseRef, ""),
            Col("month", Role::Month, ""),
            Col("insurance", Category, ""),
            Col("base", Amount, ""),
            Col("employer_amt", Amount, ""),
            Col("employee_amt", Amount, ""),
            Col("paid_flag", Flag, ""),
        ],
        emit: rs_contrib,
    },
    TableDef {
        dept: "RS",
        table: "employer_ui_year",
        source: "RS.employer_ui_year",
        kind: TableKind::Event,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Compact,
        description: "人社局 单位失业保险年度缴费",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("year", Integer, ""),
            Col("months_paid", Integer, ""),
            Col("amount_paid", Amount, ""),
            Col("avg_insured", Integer, ""),
        ],
        emit: rs_employer_year,
    },
    TableDef {
        dept: "RS",
        table: "employ_reg",
        source: "RS.employ_reg",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 就业登记/劳动合同",
        columns: &[
            Col("pid", PersonId, ""),
            Col("uscc", EnterpriseRef, ""),
            Col("contract_start", Role::Date, ""),
            Col("contract_end", Role::Date, ""),
        ],
        emit: rs_employ_reg,
    },
    TableDef {
        dept: "RS",
        table: "unemp_reg",
        source: "RS.unemp_reg",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 失业登记",
        columns: &[
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("date", Role::Date, ""),
            Col("end_date", Role::Date, ""),
        ],
        emit: rs_unemp,
    },
    TableDef {
        dept: "RS",
        table: "ui_benefit",
        source: "RS.ui_benefit",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 失业保险金领取 (last_uscc drives the E01 layoff rate)",
        columns: &[
            Col("pid", PersonId, ""),
            Col("last_uscc", EnterpriseRef, ""),
            Col("start_month", Role::Month, ""),
            Col("end_month", Role::Month, ""),
        ],
        emit: rs_ui_benefit,
    },
    TableDef {
        dept: "RS",
        table: "hardship",
        source: "RS.hardship",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 就业困难人员认定",
        columns: &[
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("category", Category, ""),
            Col("cert_date", Role::Date, ""),
            Col("end", Role::Date, ""),
        ],
        emit: rs_hardship,
    },
    TableDef {
        dept: "RS",
        table: "skill_cert",
        source: "RS.skill_cert",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 职业技能等级证书",
        columns: &[
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("cert_no", Key, ""),
            Col("occupation_code", Category, ""),
            Col("level", Integer, "1-5 (5 = 初级)"),
            Col("issue_date", Role::Date, ""),
        ],
        emit: rs_skill,
    },
    TableDef {
        dept: "RS",
        table: "pension_recipient",
        source: "RS.pension_recipient",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "人社局 养老金领取",
        columns: &[
            Col("pid", PersonId, ""),
            Col("start", Role::Date, ""),
            Col("monthly", Amount, ""),
        ],
        emit: rs_pension,
    },
    TableDef {
        dept: "GJJ",
        table: "account",
        source: "GJJ.account",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Slash,
        description: "住房公积金中心 个人账户",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, "older accounts keep 15-digit ids"),
            Col("name", Name, ""),
            Col("uscc_employer", EnterpriseRef, ""),
            Col("status", Category, "正常/封存/销户"),
            Col("open_date", Role::Date, ""),
        ],
        emit: gjj_account,
    },
    TableDef {
        dept: "GJJ",
        table: "deposit",
        source: "GJJ.deposit",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Slash,
        description: "住房公积金中心 月度缴存",
        columns: &[
            Col("pid", PersonId, ""),
            Col("month", Role::Month, ""),
            Col("base", Amount, ""),
            Col("rate", Quantity, "percent"),
            Col("employer_amt", Amount, ""),
            Col("employee_amt", Amount, ""),
        ],
        emit: gjj_deposit,
    },
    TableDef {
        dept: "SW",
        table: "iit_withholding",
        source: "SW.iit_withholding",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "税务局 个人所得税扣缴 (HIGH sensitivity)",
        columns: &[
            Col("pid", PersonId, ""),
            Col("uscc", EnterpriseRef, ""),
            Col("month", Role::Month, ""),
            Col("wage_income", Amount, ""),
        ],
        emit: sw_iit,
    },
];

/// The day a person joined their current employer (shared by every RS, GJJ and SW table).
pub fn hire_date(city: &City, p: u32) -> Date {
    let person = &city.persons[p as usize];
    let mut r = entity_rng(city, "hire", p);
    let earliest = person.birth.add_years(18).unwrap_or(person.birth);
    Date((city.params.as_of.0 - r.range(20, 3650) as i32).max(earliest.0))
}

/// A person's monthly contribution base in fen.
pub fn wage(city: &City, p: u32) -> i64 {
    let mut r = entity_rng(city, "wage", p);
    (r.lognormal(4200.0, 0.45).clamp(2100.0, 40_000.0) as i64) * 100
}

/// Months of the history a person was employed by their employer (hire month to as-of, or to
/// the employer's closing).
fn employed_months(city: &City, p: u32) -> impl Iterator<Item = Month> + '_ {
    let person = &city.persons[p as usize];
    let hire = hire_date(city, p).month();
    let end = if person.employer > 0 {
        let e = &city.enterprises[person.employer as usize - 1];
        if e.closed == i32::MIN {
            city.params.as_of.month()
        } else {
            Date(e.closed).month()
        }
    } else {
        Month(i32::MIN)
    };
    let death = if person.alive() {
        Month(i32::MAX)
    } else {
        Date(person.death).month()
    };
    city.params
        .months()
        .filter(move |&m| person.employer > 0 && m >= hire && m <= end && m < death)
}

const INSURANCES: [(&str, i64, i64); 3] = [("养老", 160, 80), ("失业", 7, 3), ("工伤", 4, 0)];

fn rs_insured(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if person.employer == 0 {
        return;
    }
    let hire = hire_date(city, p);
    for (k, (ins, _, _)) in INSURANCES.iter().enumerate() {
        let rid = u64::from(p) * 16 + k as u64;
        o.u(rid)
            .pid(p, false)
            .name(p)
            .uscc(person.employer - 1, false)
            .s(ins)
            .s("参保缴费")
            .date(hire)
            .empty();
        o.phone(person.phone, p);
        o.end_identity(rid, &person.pid());
    }
}

fn rs_contrib(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if person.employer == 0 {
        return;
    }
    let base = wage(city, p);
    let employer = person.employer - 1;
    for m in employed_months(city, p) {
        for (ins, er, ee) in INSURANCES {
            let paid = !o.rng.chance(0.004);
            o.pid(p, false)
                .uscc(employer, false)
                .month(m)
                .s(ins)
                .money(base);
            o.money(base * er / 1000)
                .money(base * ee / 1000)
                .flag(paid)
                .end();
        }
    }
}

fn rs_employer_year(o: &mut Out, e: u32) {
    let city = o.city;
    let ent = &city.enterprises[e as usize];
    if !ent.has(eflag::UI_EMPLOYER) || ent.employees == 0 {
        return;
    }
    let last = city.params.last_year();
    let first = city.params.months().next().map_or(last, |m| m.year());
    for y in first..=last {
        if ent.est.year() > y || (ent.closed != i32::MIN && Date(ent.closed).year() < y) {
            continue;
        }
        let months = if o.rng.chance(0.92) {
            12
        } else {
            o.rng.range(6, 11)
        };
        let avg = (i64::from(ent.employees) * o.rng.range(85, 110) / 100).max(1);
        let amount = avg * months * 4200 * 7;
        o.uscc(e, false)
            .i(i64::from(y))
            .i(months)
            .money(amount)
            .i(avg)
            .end();
    }
}

fn rs_employ_reg(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if person.employer == 0 {
        return;
    }
    let start = hire_date(city, p);
    let end = start.add_years(3).unwrap_or(start);
    o.pid(p, false)
        .uscc(person.employer - 1, false)
        .date(start)
        .date(end)
        .end();
}

fn rs_unemp(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::UNEMPLOYED) {
        return;
    }
    let d = Date(o.city.params.as_of.0 - o.rng.range(30, 1000) as i32);
    let end = o
        .rng
        .chance(0.5)
        .then(|| Date(d.0 + o.rng.range(30, 300) as i32));
    let as_of = o.city.params.as_of;
    o.pid(p, false)
        .name(p)
        .date(d)
        .opt_date(end.filter(|e| *e < as_of))
        .end();
}

/// Some enterprise that pays unemployment insurance, for the last employer of a laid-off
/// person.
fn some_ui_employer(city: &City, p: u32) -> Option<u32> {
    let n = city.enterprises.len() as u64;
    let mut r = entity_rng(city, "last-employer", p);
    (0..64)
        .map(|_| r.below(n) as u32)
        .find(|&e| city.enterprises[e as usize].has(eflag::UI_EMPLOYER))
}

fn rs_ui_benefit(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if !person.has(flag::UNEMPLOYED) || person.employer != 0 || p.is_multiple_of(2) {
        return;
    }
    let Some(e) = some_ui_employer(city, p) else {
        return;
    };
    let start = Month(city.params.as_of.month().0 - o.rng.range(1, 30) as i32);
    let end = Month(start.0 + o.rng.range(3, 12) as i32);
    o.pid(p, false).uscc(e, false).month(start).month(end).end();
}

fn rs_hardship(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::HARDSHIP) {
        return;
    }
    let d = Date(o.city.params.as_of.0 - o.rng.range(30, 1500) as i32);
    let cat = ["大龄失业人员", "残疾人", "零就业家庭成员", "低保家庭成员"][o.rng.below(4) as usize];
    o.pid(p, false)
        .name(p)
        .s(cat)
        .date(d)
        .date(Date(d.0 + 1095))
        .end();
}

fn rs_skill(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::SKILL_CERT) {
        return;
    }
    let d = Date(o.city.params.as_of.0 - o.rng.range(1, 900) as i32);
    let occ = [
        "6-18-01-01",
        "4-03-02-01",
        "6-29-01-03",
        "4-10-01-01",
        "6-31-01-03",
    ][o.rng.below(5) as usize];
    let level = o.rng.range(3, 5);
    o.pid(p, false)
        .name(p)
        .s(&format!("S{p:011}"))
        .s(occ)
        .i(level)
        .date(d)
        .end();
}

fn rs_pension(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::PENSIONER) || !person.alive() {
        return;
    }
    let start = person
        .birth
        .add_years(if person.male { 60 } else { 55 })
        .unwrap_or(person.birth);
    let monthly = o.rng.range(1500, 5000) * 100;
    o.pid(p, false).date(start).money(monthly).end();
}

fn gjj_account(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if !person.has(flag::GJJ) || person.employer == 0 {
        return;
    }
    let open = hire_date(city, p);
    let rid = u64::from(p) * 16;
    o.u(rid)
        .pid(p, true)
        .name(p)
        .uscc(person.employer - 1, false)
        .s("正常")
        .date(open);
    o.end_identity(rid, &person.pid());
}

fn gjj_deposit(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if !person.has(flag::GJJ) || person.employer == 0 {
        return;
    }
    let base = wage(city, p);
    let rate = [5, 8, 12][p as usize % 3];
    let amt = base * rate / 100;
    for m in employed_months(city, p) {
        o.pid(p, true)
            .month(m)
            .money(base)
            .i(rate)
            .money(amt)
            .money(amt)
            .end();
    }
}

fn sw_iit(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if person.employer == 0 {
        return;
    }
    let base = wage(city, p);
    if base < 500_000 {
        return;
    }
    for m in employed_months(city, p) {
        let income = base + o.rng.range(0, base / 5);
        o.pid(p, false)
            .uscc(person.employer - 1, false)
            .month(m)
            .money(income)
            .end();
    }
}
