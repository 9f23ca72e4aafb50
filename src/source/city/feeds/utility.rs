//! Utility feeds: electricity (DL), water (SS), gas (RQ), heating (RL). Accounts are held by
//! one household member or by an enterprise, usually without an id number: matching them by
//! name, phone and address is the main entity-resolution test. Bills join to accounts by
//! account number.

use super::super::model::{City, HouseRole, eflag};
use super::super::out::{DateStyle, Out};
use super::super::tables::{Col, TableDef, Unit, entity_rng};
use crate::date::{Date, Month};
use crate::source::config::Role::{self, *};
use crate::source::config::{Subject, TableKind};

const ACCOUNT_COLS: &[Col] = &[
    Col("rid", RecordId, ""),
    Col("account_no", Key, "户号"),
    Col("holder_name", Name, "户名 (a person or an enterprise)"),
    Col("holder_id", PartyId, "often empty"),
    Col("address", Address, "用电地址"),
    Col("region", Region, ""),
    Col("customer_type", Category, "居民/一般工商业/大工业/农业"),
    Col("capacity_kva", Integer, ""),
    Col("connect_date", Role::Date, ""),
    Col("status", Category, "正常/销户"),
    Col("phone", Phone, ""),
];

pub static TABLES: &[TableDef] = &[
    TableDef {
        dept: "DL",
        table: "account",
        source: "DL.account",
        kind: TableKind::Identity,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Compact,
        description: "供电公司 用电户 (mostly no id number)",
        columns: ACCOUNT_COLS,
        emit: dl_account,
    },
    TableDef {
        dept: "DL",
        table: "bill",
        source: "DL.bill",
        kind: TableKind::Event,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Compact,
        description: "供电公司 月度电费",
        columns: &[
            Col("account_no", Key, ""),
            Col("month", Role::Month, ""),
            Col("kwh", Quantity, ""),
            Col("amount", Amount, ""),
            Col("arrears", Amount, ""),
        ],
        emit: dl_bill,
    },
    TableDef {
        dept: "SS",
        table: "account",
        source: "SS.account",
        kind: TableKind::Identity,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Slash,
        description: "供水公司 用水户 (no id numbers at all)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("account_no", Key, ""),
            Col("holder_name", Name, ""),
            Col("address", Address, ""),
            Col("type", Category, "居民/非居民"),
            Col("status", Category, ""),
            Col("phone", Phone, ""),
        ],
        emit: ss_account,
    },
    TableDef {
        dept: "SS",
        table: "bill",
        source: "SS.bill",
        kind: TableKind::Event,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Slash,
        description: "供水公司 月度水费",
        columns: &[
            Col("account_no", Key, ""),
            Col("month", Role::Month, ""),
            Col("m3", Quantity, ""),
            Col("amount", Amount, ""),
            Col("arrears", Amount, ""),
        ],
        emit: ss_bill,
    },
    TableDef {
        dept: "RQ",
        table: "account",
        source: "RQ.account",
        kind: TableKind::Identity,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Chinese,
        description: "燃气公司 用气户 (id number optional)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("account_no", Key, ""),
            Col("holder_name", Name, ""),
            Col("holder_pid", PartyId, ""),
            Col("address", Address, ""),
            Col("type", Category, ""),
            Col("status", Category, ""),
            Col("safety_check_date", Role::Date, ""),
        ],
        emit: rq_account,
    },
    TableDef {
        dept: "RQ",
        table: "bill",
        source: "RQ.bill",
        kind: TableKind::Event,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Chinese,
        description: "燃气公司 月度气费",
        columns: &[
            Col("account_no", Key, ""),
            Col("month", Role::Month, ""),
            Col("m3", Quantity, ""),
            Col("amount", Amount, ""),
        ],
        emit: rq_bill,
    },
    TableDef {
        dept: "RL",
        table: "account",
        source: "RL.account",
        kind: TableKind::Identity,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Iso,
        description: "热力公司 供暖户 (central heating in a few districts only)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("account_no", Key, ""),
            Col("holder_name", Name, ""),
            Col("address", Address, ""),
            Col("heated_area_m2", Quantity, ""),
            Col("status", Category, ""),
        ],
        emit: rl_account,
    },
    TableDef {
        dept: "RL",
        table: "season_bill",
        source: "RL.season_bill",
        kind: TableKind::Event,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Iso,
        description: "热力公司 采暖季费用",
        columns: &[
            Col("account_no", Key, ""),
            Col("season", Text, "e.g. 2024-2025"),
            Col("amount", Amount, ""),
            Col("paid", Flag, ""),
        ],
        emit: rl_bill,
    },
];

/// Whose account a unit is: a household (through its head's unit) or an enterprise.
enum Holder {
    Household(u32),
    Enterprise(u32),
}

fn holder(city: &City, u: u32) -> Option<Holder> {
    let n = city.persons.len() as u32;
    if u < n {
        let p = &city.persons[u as usize];
        (p.role == HouseRole::Head && city.households[p.household as usize].first == u)
            .then_some(Holder::Household(p.household))
    } else {
        Some(Holder::Enterprise(u - n))
    }
}

/// The household member who holds a utility account (the head mostly, sometimes the spouse or
/// a parent), drawn per utility so different utilities may name different members.
fn member_holder(city: &City, h: u32, utility: &str) -> u32 {
    let hh = &city.households[h as usize];
    let mut r = entity_rng(city, utility, h);
    let adults: Vec<u32> = city
        .household_members(h)
        .filter(|&m| city.persons[m as usize].age_on(city.params.as_of) >= 18)
        .collect();
    if adults.len() > 1 && r.chance(0.3) {
        adults[1 + r.below(adults.len() as u64 - 1) as usize]
    } else {
        hh.first
    }
}

fn connect_date(city: &City, u: u32, utility: &str) -> Date {
    let mut r = entity_rng(city, utility, u ^ 0x5555_5555);
    Date(city.params.as_of.0 - r.range(200, 6000) as i32)
}

fn account_no(prefix: &str, u: u32) -> String {
    format!("{prefix}{u:010}")
}

fn dl_account(o: &mut Out, u: u32) {
    let city = o.city;
    let Some(h) = holder(city, u) else { return };
    let connect = connect_date(city, u, "DL");
    let rid = u64::from(u);
    o.u(rid).s(&account_no("41", u));
    match h {
        Holder::Household(hh) => {
            let m = member_holder(city, hh, "DL");
            let house = &city.households[hh as usize];
            o.name(m);
            if o.rng.chance(0.3) {
                o.pid(m, true)
            } else {
                o.empty()
            };
            o.addr(&house.addr, house.village, u64::from(hh))
                .region(&house.addr);
            if house.addr.rural {
                o.either(0.1, "农业", "居民")
            } else {
                o.s("居民")
            };
            o.i(8).date(connect).s("正常");
            o.phone(city.persons[m as usize].phone, m);
            o.end_identity(rid, &city.persons[m as usize].pid());
        }
        Holder::Enterprise(e) => {
            let ent = &city.enterprises[e as usize];
            // Shops are often registered under the operator's own name.
            let under_person = ent.kind == super::super::model::ENT_INDIVIDUAL && o.rng.chance(0.4);
            if under_person {
                o.name(ent.rep)
            } else {
                o.ent_name(e)
            };
            if under_person || o.rng.chance(0.4) {
                o.empty()
            } else {
                o.uscc(e, false)
            };
            o.addr(&ent.addr, 0, u64::from(u)).region(&ent.addr);
            let big = ent.has(eflag::ABOVE_SCALE) || ent.employees > 200;
            o.s(if big { "大工业" } else { "一般工商业" })
                .i(if big { 1000 } else { 50 })
                .date(connect);
            o.s(if ent.active() { "正常" } else { "销户" });
            o.phone(city.persons[ent.rep as usize].phone, ent.rep);
            // Truth: an account in a person's name belongs to that person's business.
            o.end_identity(rid, &ent.uscc());
        }
    }
}

fn bill_months(o: &Out, u: u32, utility: &str) -> impl Iterator<Item = Month> + use<> {
    let city = o.city;
    let connect = connect_date(city, u, utility).month();
    let closed = match holder(city, u) {
        Some(Holder::Enterprise(e)) => {
            let ent = &city.enterprises[e as usize];
            if ent.closed == i32::MIN {
                Month(i32::MAX)
            } else {
                Date(ent.closed).month()
            }
        }
        _ => Month(i32::MAX),
    };
    let months: Vec<Month> = city
        .params
        .months()
        .filter(|&m| m >= connect && m < closed)
        .collect();
    months.into_iter()
}

fn kwh_base(o: &Out, u: u32) -> f64 {
    match holder(o.city, u) {
        Some(Holder::Enterprise(e)) => {
            let ent = &o.city.enterprises[e as usize];
            if ent.has(eflag::ABOVE_SCALE) {
                200_000.0
            } else {
                800.0 + 400.0 * f64::from(ent.employees)
            }
        }
        _ => 160.0,
    }
}

fn dl_bill(o: &mut Out, u: u32) {
    if holder(o.city, u).is_none() {
        return;
    }
    let base = kwh_base(o, u);
    let acct = account_no("41", u);
    for m in bill_months(o, u, "DL") {
        let season = if matches!(m.month(), 1 | 7 | 8 | 12) {
            1.4
        } else {
            1.0
        };
        let kwh = (o.rng.lognormal(base * season, 0.3) * 10.0) as u64;
        let amount = (kwh as i64) * 56 / 100;
        let arrears = if o.rng.chance(0.02) { amount } else { 0 };
        o.s(&acct)
            .month(m)
            .tenths(kwh)
            .money(amount)
            .money(arrears)
            .end();
    }
}

fn has_water(city: &City, u: u32) -> bool {
    match holder(city, u) {
        Some(Holder::Household(h)) => !city.households[h as usize].addr.rural,
        Some(Holder::Enterprise(e)) => e % 2 == 0,
        None => false,
    }
}

fn ss_account(o: &mut Out, u: u32) {
    let city = o.city;
    if !has_water(city, u) {
        return;
    }
    let rid = u64::from(u);
    o.u(rid).s(&account_no("SS", u));
    match holder(city, u) {
        Some(Holder::Household(h)) => {
            let m = member_holder(city, h, "SS");
            let house = &city.households[h as usize];
            o.name(m)
                .addr(&house.addr, house.village, u64::from(h))
                .s("居民")
                .s("正常");
            o.phone(city.persons[m as usize].phone, m);
            o.end_identity(rid, &city.persons[m as usize].pid());
        }
        Some(Holder::Enterprise(e)) => {
            let ent = &city.enterprises[e as usize];
            o.ent_name(e)
                .addr(&ent.addr, 0, u64::from(u))
                .s("非居民")
                .s(if ent.active() { "正常" } else { "销户" });
            o.phone(city.persons[ent.rep as usize].phone, ent.rep);
            o.end_identity(rid, &ent.uscc());
        }
        None => {}
    }
}

fn ss_bill(o: &mut Out, u: u32) {
    if !has_water(o.city, u) {
        return;
    }
    let acct = account_no("SS", u);
    let base = if u < o.city.persons.len() as u32 {
        9.0
    } else {
        40.0
    };
    for m in bill_months(o, u, "SS") {
        let m3 = (o.rng.lognormal(base, 0.35) * 10.0) as u64;
        let amount = m3 as i64 * 38 / 10;
        let arrears = if o.rng.chance(0.02) { amount } else { 0 };
        o.s(&acct)
            .month(m)
            .tenths(m3)
            .money(amount)
            .money(arrears)
            .end();
    }
}

fn has_gas(city: &City, u: u32) -> bool {
    match holder(city, u) {
        Some(Holder::Household(h)) => !city.households[h as usize].addr.rural && h % 5 != 0,
        Some(Holder::Enterprise(e)) => {
            let i = city.enterprises[e as usize].industry as usize;
            super::super::names::INDUSTRIES[i].0 == "H62"
                || super::super::names::INDUSTRIES[i].0 == "C13"
        }
        None => false,
    }
}

fn rq_account(o: &mut Out, u: u32) {
    let city = o.city;
    if !has_gas(city, u) {
        return;
    }
    let rid = u64::from(u);
    let check = Date(city.params.as_of.0 - o.rng.range(10, 700) as i32);
    o.u(rid).s(&account_no("RQ", u));
    match holder(city, u) {
        Some(Holder::Household(h)) => {
            let m = member_holder(city, h, "RQ");
            let house = &city.households[h as usize];
            o.name(m);
            if o.rng.chance(0.6) {
                o.pid(m, true)
            } else {
                o.empty()
            };
            o.addr(&house.addr, house.village, u64::from(h))
                .s("居民")
                .s("正常")
                .date(check);
            o.end_identity(rid, &city.persons[m as usize].pid());
        }
        Some(Holder::Enterprise(e)) => {
            let ent = &city.enterprises[e as usize];
            o.ent_name(e);
            if o.rng.chance(0.5) {
                o.uscc(e, false)
            } else {
                o.empty()
            };
            o.addr(&ent.addr, 0, u64::from(u))
                .s("商业")
                .s(if ent.active() { "正常" } else { "销户" })
                .date(check);
            o.end_identity(rid, &ent.uscc());
        }
        None => {}
    }
}

fn rq_bill(o: &mut Out, u: u32) {
    if !has_gas(o.city, u) {
        return;
    }
    let acct = account_no("RQ", u);
    let base = if u < o.city.persons.len() as u32 {
        14.0
    } else {
        300.0
    };
    for m in bill_months(o, u, "RQ") {
        let winter = if matches!(m.month(), 1 | 2 | 11 | 12) {
            1.8
        } else {
            1.0
        };
        let m3 = (o.rng.lognormal(base * winter, 0.3) * 10.0) as u64;
        o.s(&acct)
            .month(m)
            .tenths(m3)
            .money(m3 as i64 * 27 / 10)
            .end();
    }
}

fn has_heating(city: &City, u: u32) -> bool {
    match holder(city, u) {
        Some(Holder::Household(h)) => city.households[h as usize].central_heating,
        _ => false,
    }
}

fn rl_account(o: &mut Out, u: u32) {
    let city = o.city;
    if !has_heating(city, u) {
        return;
    }
    let Some(Holder::Household(h)) = holder(city, u) else {
        return;
    };
    let m = member_holder(city, h, "RL");
    let house = &city.households[h as usize];
    let rid = u64::from(u);
    let area = o.rng.range(600, 1500) as u64;
    o.u(rid)
        .s(&account_no("RL", u))
        .name(m)
        .addr(&house.addr, house.village, u64::from(h))
        .tenths(area)
        .s("正常");
    o.end_identity(rid, &city.persons[m as usize].pid());
}

fn rl_bill(o: &mut Out, u: u32) {
    let city = o.city;
    if !has_heating(city, u) {
        return;
    }
    let acct = account_no("RL", u);
    let last = city.params.last_year();
    let first = city.params.months().next().map_or(last, |m| m.year());
    for y in first..last {
        let amount = o.rng.range(1_500, 3_000) * 100;
        let paid = !o.rng.chance(0.05);
        o.s(&acct)
            .s(&format!("{y}-{}", y + 1))
            .money(amount)
            .flag(paid)
            .end();
    }
}
