//! Feeds about market entities: the enterprise register (SC), tax (SW), agricultural new
//! entities (NY), and the lead departments' registers (WL, KJ, GX, GZ, FG).

use super::super::model::{ENT_INDIVIDUAL, ENT_TYPES, eflag, flag};
use super::super::names::INDUSTRIES;
use super::super::out::{DateStyle, Out};
use super::super::tables::{Col, TableDef, Unit};
use crate::date::{Date, Month};
use crate::source::config::Role::{self, *};
use crate::source::config::{Subject, TableKind};

pub static TABLES: &[TableDef] = &[
    TableDef {
        dept: "SC",
        table: "ent",
        source: "SC.ent",
        kind: TableKind::Identity,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "市场监管局 市场主体登记 (old entities may carry only the 注册号)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("uscc", EnterpriseId, "统一社会信用代码 or legacy 注册号"),
            Col("name", OrgName, ""),
            Col("type", Category, ""),
            Col("legal_rep_pid", PersonRef, "法定代表人/经营者"),
            Col("legal_rep_name", Name, ""),
            Col("reg_capital", Amount, "yuan"),
            Col("est_date", Role::Date, ""),
            Col("status", Category, "存续/在业/吊销/注销"),
            Col("status_date", Role::Date, ""),
            Col("address", Address, ""),
            Col("region", Region, ""),
            Col("industry_code", Category, "GB/T 4754"),
            Col("phone", Phone, ""),
        ],
        emit: sc_ent,
    },
    TableDef {
        dept: "SC",
        table: "annual_report",
        source: "SC.annual_report",
        kind: TableKind::Event,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "市场监管局 年报",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("year", Integer, ""),
            Col("employees", Integer, ""),
            Col("revenue_optional", Amount, ""),
            Col("ss_insured", Integer, ""),
        ],
        emit: sc_annual,
    },
    TableDef {
        dept: "SC",
        table: "abnormal_list",
        source: "SC.abnormal_list",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "市场监管局 经营异常名录",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("in_date", Role::Date, ""),
            Col("out_date", Role::Date, ""),
            Col("reason", Category, ""),
        ],
        emit: sc_abnormal,
    },
    TableDef {
        dept: "SC",
        table: "penalty",
        source: "SC.penalty",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "市场监管局 行政处罚",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("date", Role::Date, ""),
            Col("type", Category, "警告/罚款/没收/吊销"),
            Col("amount", Amount, ""),
            Col("authority", Text, ""),
        ],
        emit: sc_penalty,
    },
    TableDef {
        dept: "SW",
        table: "reg",
        source: "SW.reg",
        kind: TableKind::Identity,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "税务局 税务登记",
        columns: &[
            Col("rid", RecordId, ""),
            Col("uscc", EnterpriseId, ""),
            Col("name", OrgName, ""),
            Col("taxpayer_type", Category, "一般纳税人/小规模"),
            Col("reg_date", Role::Date, ""),
            Col("status", Category, ""),
            Col("region", Region, ""),
        ],
        emit: sw_reg,
    },
    TableDef {
        dept: "SW",
        table: "vat_return",
        source: "SW.vat_return",
        kind: TableKind::Event,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "税务局 增值税申报 (monthly; individual businesses quarterly)",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("period", Role::Month, ""),
            Col("sales", Amount, ""),
            Col("tax", Amount, ""),
        ],
        emit: sw_vat,
    },
    TableDef {
        dept: "SW",
        table: "cit_annual",
        source: "SW.cit_annual",
        kind: TableKind::Event,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "税务局 企业所得税年度申报",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("year", Integer, ""),
            Col("revenue", Amount, ""),
            Col("profit", Amount, ""),
            Col("employees", Integer, ""),
            Col("total_assets", Amount, ""),
            Col("rd_expense", Amount, ""),
            Col("rd_super_deduction", Amount, ""),
            Col("small_low_profit_flag", Flag, ""),
            Col("hte_flag", Flag, ""),
        ],
        emit: sw_cit,
    },
    TableDef {
        dept: "SW",
        table: "invoice",
        source: "SW.invoice",
        kind: TableKind::Event,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "税务局 发票 (the high-volume rest of the 1.7 billion)",
        columns: &[
            Col("uscc", EnterpriseId, "seller"),
            Col("month", Role::Month, ""),
            Col("invoice_no", Key, ""),
            Col("amount", Amount, ""),
            Col("tax", Amount, ""),
        ],
        emit: sw_invoice,
    },
    TableDef {
        dept: "SW",
        table: "deed_tax",
        source: "SW.deed_tax",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "税务局 契税",
        columns: &[
            Col("property_unit_no", Key, ""),
            Col("buyer_pid", PersonId, ""),
            Col("amount", Amount, ""),
            Col("date", Role::Date, ""),
        ],
        emit: sw_deed_tax,
    },
    TableDef {
        dept: "NY",
        table: "new_entity",
        source: "NY.new_entity",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "农业农村局 新型农业经营主体",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("type", Category, "家庭农场/农民专业合作社/龙头企业"),
            Col("head_pid", PersonRef, ""),
            Col("scale_mu", Quantity, ""),
            Col("main_product", Text, ""),
            Col("level", Category, ""),
        ],
        emit: ny_new_entity,
    },
    TableDef {
        dept: "WL",
        table: "agency",
        source: "WL.agency",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "文旅局 旅行社",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("licence_no", Key, ""),
            Col("scope", Category, "国内入境/出境"),
            Col("licence_status", Category, "有效/注销"),
        ],
        emit: wl_agency,
    },
    TableDef {
        dept: "WL",
        table: "deposit",
        source: "WL.deposit",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "文旅局 旅行社质量保证金",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("form", Category, "现金/银行担保/保险"),
            Col("balance", Amount, ""),
            Col("court_frozen", Flag, ""),
            Col("refund_outstanding", Amount, ""),
        ],
        emit: wl_deposit,
    },
    TableDef {
        dept: "KJ",
        table: "hte",
        source: "KJ.hte",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "科技局 高新技术企业认定",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("cert_no", Key, ""),
            Col("cert_date", Role::Date, ""),
            Col("cert_type", Category, "首次/重新"),
        ],
        emit: kj_hte,
    },
    TableDef {
        dept: "KJ",
        table: "tsme",
        source: "KJ.tsme",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "科技局 科技型中小企业入库",
        columns: &[
            Col("uscc", EnterpriseId, ""),
            Col("year", Integer, ""),
            Col("entry_no", Key, ""),
        ],
        emit: kj_tsme,
    },
    TableDef {
        dept: "KJ",
        table: "commissioner",
        source: "KJ.commissioner",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "科技局 科技特派员",
        columns: &[
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("year", Integer, ""),
            Col("status", Category, "在册/退出"),
            Col("served_uscc", EnterpriseRef, ""),
        ],
        emit: kj_commissioner,
    },
    TableDef {
        dept: "GX",
        table: "above_scale",
        source: "GX.above_scale",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "工信局(统计) 规模以上工业企业名录",
        columns: &[Col("uscc", EnterpriseId, ""), Col("year", Integer, "")],
        emit: gx_above_scale,
    },
    TableDef {
        dept: "GZ",
        table: "lease",
        source: "GZ.lease",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "国资委 国有房屋租赁",
        columns: &[
            Col("lease_id", Key, ""),
            Col("property", Text, ""),
            Col("lessee_id", PartyId, ""),
            Col("monthly_rent", Amount, ""),
            Col("start", Role::Date, ""),
            Col("end", Role::Date, ""),
            Col("purpose", Category, "经营/办公/仓储"),
        ],
        emit: gz_lease,
    },
    TableDef {
        dept: "FG",
        table: "project",
        source: "FG.project",
        kind: TableKind::Reference,
        subject: Subject::Enterprise,
        unit: Unit::Enterprise,
        style: DateStyle::Iso,
        description: "发改 投资项目",
        columns: &[
            Col("code", Key, ""),
            Col("uscc", EnterpriseId, ""),
            Col("total_invest", Amount, ""),
            Col("fa_invest_done", Amount, ""),
            Col("start", Role::Date, ""),
            Col("commission_date", Role::Date, ""),
            Col("industry", Category, ""),
        ],
        emit: fg_project,
    },
];

fn as_of(o: &Out) -> Date {
    o.city.params.as_of
}

fn industry_code(i: u8) -> &'static str {
    INDUSTRIES[i as usize].0.trim_end_matches('T')
}

const ENT_STATUS: [&str; 4] = ["存续", "在业", "吊销", "注销"];

fn sc_ent(o: &mut Out, e: u32) {
    let city = o.city;
    let ent = &city.enterprises[e as usize];
    let rid = u64::from(e);
    o.u(rid)
        .uscc(e, true)
        .ent_name(e)
        .s(ENT_TYPES[ent.kind as usize]);
    o.pid(ent.rep, true).name(ent.rep);
    o.money(i64::from(ent.capital_wan) * 1_000_000)
        .date(ent.est)
        .s(ENT_STATUS[ent.status as usize]);
    o.opt_date((ent.closed != i32::MIN).then_some(Date(ent.closed)));
    o.addr(&ent.addr, 0, u64::from(e) | 1 << 40)
        .region(&ent.addr)
        .s(industry_code(ent.industry));
    let phone = city.persons[ent.rep as usize].phone;
    o.phone(phone, ent.rep);
    o.end_identity(rid, &ent.uscc());
}

fn alive_in_year(o: &Out, e: u32, y: i32) -> bool {
    let ent = &o.city.enterprises[e as usize];
    ent.est.year() <= y && (ent.closed == i32::MIN || Date(ent.closed).year() > y)
}

fn sc_annual(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if ent.kind == ENT_INDIVIDUAL {
        return;
    }
    let last = o.city.params.last_year();
    for y in (last - 2)..=last {
        if !alive_in_year(o, e, y) {
            continue;
        }
        let staff = i64::from(ent.employees) + o.rng.range(0, 5);
        o.uscc(e, false).i(i64::from(y)).i(staff);
        if o.rng.chance(0.4) {
            let rev = (staff + 1) * o.rng.range(10, 80) * 1_000_000;
            o.money(rev);
        } else {
            o.empty();
        }
        o.i(i64::from(ent.employees)).end();
    }
}

fn sc_abnormal(o: &mut Out, e: u32) {
    if !o.city.enterprises[e as usize].has(eflag::ABNORMAL) {
        return;
    }
    let d = Date(as_of(o).0 - o.rng.range(30, 1200) as i32);
    let out = o
        .rng
        .chance(0.5)
        .then(|| Date(d.0 + o.rng.range(30, 400) as i32))
        .filter(|x| *x < as_of(o));
    let reason = [
        "未按期公示年报",
        "通过登记住所无法联系",
        "公示信息隐瞒真实情况",
    ][o.rng.below(3) as usize];
    o.uscc(e, false).date(d).opt_date(out).s(reason).end();
}

fn sc_penalty(o: &mut Out, e: u32) {
    if !o.city.enterprises[e as usize].has(eflag::PENALTY) {
        return;
    }
    let n = o.rng.range(1, 2);
    for _ in 0..n {
        let d = Date(as_of(o).0 - o.rng.range(30, 1800) as i32);
        let kind = ["警告", "罚款", "罚款", "没收违法所得", "吊销许可证"][o.rng.below(5) as usize];
        let amount = if kind == "警告" {
            0
        } else {
            o.rng.range(500, 200_000) * 100
        };
        o.uscc(e, false)
            .date(d)
            .s(kind)
            .money(amount)
            .s("商丘市市场监督管理局")
            .end();
    }
}

fn sw_reg(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    let rid = u64::from(e);
    let general = ent.kind != ENT_INDIVIDUAL && (ent.capital_wan > 500 || ent.employees > 50);
    let reg = Date(ent.est.0 + o.rng.range(1, 60) as i32).min(as_of(o));
    o.u(rid)
        .uscc(e, false)
        .ent_name(e)
        .s(if general {
            "一般纳税人"
        } else {
            "小规模"
        })
        .date(reg);
    o.s(if ent.active() { "正常" } else { "注销" })
        .region(&ent.addr);
    o.end_identity(rid, &ent.uscc());
}

/// Monthly sales in fen: by size and kind.
fn monthly_sales(o: &mut Out, e: u32) -> i64 {
    let ent = &o.city.enterprises[e as usize];
    let base = if ent.kind == ENT_INDIVIDUAL {
        o.rng.lognormal(15_000.0, 0.8)
    } else if ent.has(eflag::ABOVE_SCALE) {
        o.rng.lognormal(3_000_000.0, 0.5)
    } else {
        o.rng
            .lognormal(80_000.0 + 30_000.0 * f64::from(ent.employees), 0.9)
    };
    (base.min(1e10) as i64) * 100
}

fn active_in_month(o: &Out, e: u32, m: Month) -> bool {
    let ent = &o.city.enterprises[e as usize];
    ent.est.month() <= m && (ent.closed == i32::MIN || Date(ent.closed).month() > m)
}

fn sw_vat(o: &mut Out, e: u32) {
    let city = o.city;
    let ent = &city.enterprises[e as usize];
    let quarterly = ent.kind == ENT_INDIVIDUAL;
    for m in city.params.months() {
        if !active_in_month(o, e, m) || (quarterly && m.month() % 3 != 0) {
            continue;
        }
        // Some months are not filed at all (dormant shops).
        if o.rng.chance(0.05) {
            continue;
        }
        let sales = monthly_sales(o, e) * if quarterly { 3 } else { 1 };
        let rate = if quarterly { 1 } else { 13 };
        o.uscc(e, false)
            .month(m)
            .money(sales)
            .money(sales * rate / 100)
            .end();
    }
}

fn sw_cit(o: &mut Out, e: u32) {
    let city = o.city;
    let ent = &city.enterprises[e as usize];
    if ent.kind == ENT_INDIVIDUAL || ent.kind == 5 {
        return;
    }
    let last = city.params.last_year();
    let first = city.params.months().next().map_or(last, |m| m.year());
    for y in first..=last {
        if !alive_in_year(o, e, y) {
            continue;
        }
        let revenue = monthly_sales(o, e) * 12;
        let profit = revenue * o.rng.range(-5, 15) / 100;
        let staff = i64::from(ent.employees) + o.rng.range(0, 3);
        let assets = revenue * o.rng.range(50, 200) / 100;
        let tech = ent.has(eflag::HIGH_TECH) || ent.has(eflag::TECH_SME);
        let rd = if tech {
            revenue * o.rng.range(3, 9) / 100
        } else if o.rng.chance(0.05) {
            revenue / 100
        } else {
            0
        };
        let small = staff <= 300 && revenue <= 500_000_000 && profit <= 30_000_000;
        o.uscc(e, false)
            .i(i64::from(y))
            .money(revenue)
            .money(profit.max(0))
            .i(staff)
            .money(assets);
        o.money(rd)
            .money(rd)
            .flag(small)
            .flag(ent.has(eflag::HIGH_TECH))
            .end();
    }
}

fn sw_invoice(o: &mut Out, e: u32) {
    let city = o.city;
    let ent = &city.enterprises[e as usize];
    // Calibrated so that invoices bring the full city to ~1.7 billion records (DESIGN.md §9).
    let per_month = if ent.kind == ENT_INDIVIDUAL {
        15.0
    } else {
        (24.0 + 11.0 * f64::from(ent.employees)).min(1500.0)
    };
    let mut no = u64::from(e) * 100_000;
    for m in city.params.months() {
        if !active_in_month(o, e, m) {
            continue;
        }
        let n = o.rng.range(0, (per_month * 2.0) as i64);
        for _ in 0..n {
            no += 1;
            let amount = (o.rng.lognormal(2_000.0, 1.0) as i64).max(1) * 100;
            o.uscc(e, false).month(m).u(no);
            o.money(amount).money(amount * 13 / 100).end();
        }
    }
}

fn sw_deed_tax(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::HOME_BUYER) {
        return;
    }
    let d = Date(as_of(o).0 - o.rng.range(10, 700) as i32);
    let amount = o.rng.range(3_000, 40_000) * 100;
    o.s(&format!("BDC{p:012}"))
        .pid(p, false)
        .money(amount)
        .date(d)
        .end();
}

fn ny_new_entity(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::NEW_ENTITY) {
        return;
    }
    let kind = if ent.kind == 5 {
        "农民专业合作社"
    } else if o.rng.chance(0.8) {
        "家庭农场"
    } else {
        "龙头企业"
    };
    let mu = o.rng.range(50, 5_000) as u64 * 10;
    o.uscc(e, false).s(kind).pid(ent.rep, false).tenths(mu);
    o.pick(&["小麦", "花生", "辣椒", "蔬菜", "生猪"])
        .pick(&["市级", "县级", "省级"])
        .end();
}

fn wl_agency(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::TRAVEL_AGENCY) {
        return;
    }
    let status = if ent.active() && !o.rng.chance(0.05) {
        "有效"
    } else {
        "注销"
    };
    o.uscc(e, false)
        .s(&format!("L-HEN-SQ{e:05}"))
        .s(if ent.has(eflag::OUTBOUND) {
            "出境"
        } else {
            "国内入境"
        })
        .s(status)
        .end();
}

fn wl_deposit(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::TRAVEL_AGENCY) {
        return;
    }
    let form = ["现金", "现金", "现金", "银行担保", "保险"][o.rng.below(5) as usize];
    let balance = if ent.has(eflag::OUTBOUND) {
        140_000_000
    } else {
        20_000_000
    };
    let frozen = o.rng.chance(0.05);
    let outstanding = if o.rng.chance(0.1) { balance / 2 } else { 0 };
    o.uscc(e, false)
        .s(form)
        .money(balance)
        .flag(frozen)
        .money(outstanding)
        .end();
}

fn kj_hte(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::HIGH_TECH) {
        return;
    }
    let last = o.city.params.last_year();
    let y = last - o.rng.range(0, 2) as i32;
    let d = Date::from_ymd(y, 11, 20).unwrap_or(as_of(o));
    o.uscc(e, false)
        .s(&format!("GR{y}41{e:06}"))
        .date(d)
        .either(0.6, "首次", "重新")
        .end();
}

fn kj_tsme(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::TECH_SME) {
        return;
    }
    let last = o.city.params.last_year();
    for y in (last - 1)..=last {
        o.uscc(e, false)
            .i(i64::from(y))
            .s(&format!("{y}4114{e:06}"))
            .end();
    }
}

fn kj_commissioner(o: &mut Out, p: u32) {
    let city = o.city;
    if !city.persons[p as usize].has(flag::COMMISSIONER) {
        return;
    }
    let n = city.enterprises.len() as u64;
    let served = (0..200)
        .map(|_| o.rng.below(n) as u32)
        .find(|&e| city.enterprises[e as usize].has(eflag::NEW_ENTITY));
    o.pid(p, false)
        .name(p)
        .i(i64::from(city.params.last_year()))
        .s("在册");
    match served {
        Some(e) => o.uscc(e, false),
        None => o.empty(),
    };
    o.end();
}

fn gx_above_scale(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::ABOVE_SCALE) {
        return;
    }
    let last = o.city.params.last_year();
    let first = if ent.has(eflag::NEW_ABOVE_SCALE) {
        last
    } else {
        (last - 3).max(ent.est.year() + 1)
    };
    for y in first..=last {
        o.uscc(e, false).i(i64::from(y)).end();
    }
}

fn gz_lease(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::STATE_LEASE) {
        return;
    }
    let start = Date(as_of(o).0 - o.rng.range(30, 1500) as i32);
    let end = Date(start.0 + 365 * o.rng.range(1, 5) as i32);
    let rent = o.rng.range(800, 20_000) * 100;
    let purpose = ["经营", "经营", "经营", "办公", "仓储"][o.rng.below(5) as usize];
    o.s(&format!("GZ{e:08}"))
        .s(&format!("国资房产{}号", e % 500))
        .uscc(e, false);
    o.money(rent).date(start).date(end).s(purpose).end();
}

fn fg_project(o: &mut Out, e: u32) {
    let ent = &o.city.enterprises[e as usize];
    if !ent.has(eflag::PROJECT) {
        return;
    }
    let total = o.rng.range(5, 200) * 1_000_000 * 100;
    let done = total * o.rng.range(30, 100) / 100;
    let start = Date(as_of(o).0 - o.rng.range(200, 1400) as i32);
    let commission = Date(start.0 + o.rng.range(180, 720) as i32);
    let code = format!(
        "2{}-411400-{:02}-01-{e:06}",
        start.year() % 100,
        ent.industry
    );
    o.s(&code)
        .uscc(e, false)
        .money(total)
        .money(done)
        .date(start);
    o.opt_date((commission < as_of(o)).then_some(commission))
        .s(industry_code(ent.industry))
        .end();
}
