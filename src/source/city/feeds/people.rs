//! Feeds about people: 户籍 (GA), 民政 (MZ), 卫健 (WJ), 残联 (CL), 教育 (JY), 医保 (YB),
//! 农业农村 poverty monitoring (NY), the credit platform (XY), 人才办 (RC), 不动产 (BDC) and
//! the guaranteed-loan register (JR).

use super::super::model::{HouseRole, STATUS_NAMES, flag};
use super::super::out::{DateStyle, Out, household_no, hukou_division};
use super::super::tables::{Col, TableDef, Unit, entity_rng};
use crate::date::{Date, Month};
use crate::source::config::Role::{self, *};
use crate::source::config::{Subject, TableKind};

pub static TABLES: &[TableDef] = &[
    TableDef {
        dept: "GA",
        table: "person",
        source: "GA.person",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "公安局 户籍人口: the population register, authoritative for id numbers",
        columns: &[
            Col("rid", RecordId, "row id"),
            Col("pid", PersonId, "公民身份号码"),
            Col("name", Name, "姓名"),
            Col("gender", Gender, "性别"),
            Col("birth_date", BirthDate, "出生日期"),
            Col("ethnicity", Category, "民族"),
            Col("hukou_region", Region, "户籍地统计用区划代码 (12 digits)"),
            Col("hukou_address", Address, "户籍地址"),
            Col("hukou_type", Category, "户口性质 农业/非农/居民"),
            Col("household_no", Key, "户号"),
            Col("relation_to_head", Category, "与户主关系"),
            Col("status", Category, "人口状态 正常/迁出/死亡注销/服兵役"),
            Col("status_date", Role::Date, "状态变更日期"),
            Col("education_level", Category, "文化程度 (stale)"),
            Col("marital_status", Category, "婚姻状况 (stale)"),
            Col("phone", Phone, "联系电话"),
        ],
        emit: ga_person,
    },
    TableDef {
        dept: "GA",
        table: "household",
        source: "GA.household",
        kind: TableKind::Identity,
        subject: Subject::Household,
        unit: Unit::Household,
        style: DateStyle::Iso,
        description: "公安局 户: one row per household",
        columns: &[
            Col("household_no", RecordId, "户号"),
            Col("head_pid", PersonRef, "户主身份号码"),
            Col("address", Address, "住址"),
            Col("region", Region, "区划代码"),
            Col("members", Integer, "户内人数"),
        ],
        emit: ga_household,
    },
    TableDef {
        dept: "GA",
        table: "move_event",
        source: "GA.move_event",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "公安局 迁移/出生/死亡登记",
        columns: &[
            Col("pid", PersonId, ""),
            Col("type", Category, "迁入/迁出/出生登记/死亡注销"),
            Col("date", Role::Date, ""),
            Col("from_region", Region, ""),
            Col("to_region", Region, ""),
        ],
        emit: ga_move,
    },
    TableDef {
        dept: "MZ",
        table: "marriage",
        source: "MZ.marriage",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Household,
        style: DateStyle::Compact,
        description: "民政局 婚姻登记",
        columns: &[
            Col("event_id", Key, ""),
            Col("pid_a", PersonId, "一方"),
            Col("pid_b", PersonRef, "另一方"),
            Col("type", Category, "结婚/离婚"),
            Col("date", Role::Date, ""),
        ],
        emit: mz_marriage,
    },
    TableDef {
        dept: "MZ",
        table: "dibao_case",
        source: "MZ.dibao_case",
        kind: TableKind::Reference,
        subject: Subject::Household,
        unit: Unit::Household,
        style: DateStyle::Compact,
        description: "民政局 低保案件 (a household grouping of civil affairs)",
        columns: &[
            Col("case_id", Key, ""),
            Col("head_pid", PersonRef, ""),
            Col("head_name", Name, ""),
            Col("urban_rural", Category, "城市/农村"),
            Col("start", Role::Date, ""),
            Col("end", Role::Date, ""),
            Col("monthly_amount", Amount, ""),
            Col("address", Address, ""),
        ],
        emit: mz_dibao_case,
    },
    TableDef {
        dept: "MZ",
        table: "dibao_member",
        source: "MZ.dibao_member",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Household,
        style: DateStyle::Compact,
        description: "民政局 低保成员",
        columns: &[
            Col("rid", RecordId, ""),
            Col("case_id", Key, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
        ],
        emit: mz_dibao_member,
    },
    TableDef {
        dept: "MZ",
        table: "tekun",
        source: "MZ.tekun",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "民政局 特困人员供养",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("type", Category, "集中/分散"),
            Col("start", Role::Date, ""),
            Col("end", Role::Date, ""),
        ],
        emit: mz_tekun,
    },
    TableDef {
        dept: "MZ",
        table: "unsupported_child",
        source: "MZ.unsupported_child",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "民政局 孤儿/事实无人抚养儿童",
        columns: &[
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("category", Category, "孤儿/事实无人抚养"),
            Col("start", Role::Date, ""),
        ],
        emit: mz_unsupported_child,
    },
    TableDef {
        dept: "MZ",
        table: "elderly_allowance_paid",
        source: "MZ.elderly_allowance_paid",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Compact,
        description: "民政局 高龄津贴发放 (last 12 months)",
        columns: &[
            Col("pid", PersonId, ""),
            Col("month", Role::Month, ""),
            Col("amount", Amount, ""),
        ],
        emit: mz_elderly_paid,
    },
    TableDef {
        dept: "WJ",
        table: "birth_cert",
        source: "WJ.birth_cert",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Slash,
        description: "卫健委 出生医学证明",
        columns: &[
            Col("cert_no", RecordId, ""),
            Col("child_name", Name, ""),
            Col("child_pid", PersonId, "filled once registered"),
            Col("mother_pid", PersonRef, ""),
            Col("father_pid", PersonRef, ""),
            Col("birth_date", BirthDate, ""),
            Col("hospital", Text, ""),
        ],
        emit: wj_birth,
    },
    TableDef {
        dept: "WJ",
        table: "death_cert",
        source: "WJ.death_cert",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Slash,
        description: "卫健委 死亡医学证明 (arrives before the 户籍 cancellation)",
        columns: &[
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("date", Role::Date, ""),
            Col("cause_category", Category, ""),
        ],
        emit: wj_death,
    },
    TableDef {
        dept: "WJ",
        table: "family_planning",
        source: "WJ.family_planning",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Slash,
        description: "卫健委 计划生育家庭",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("family_type", Category, "独生子女/双女"),
            Col("children_count", Integer, ""),
            Col("cert_no", Key, ""),
        ],
        emit: wj_family_planning,
    },
    TableDef {
        dept: "CL",
        table: "cert",
        source: "CL.cert",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Chinese,
        description: "残联 残疾人证",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("cert_no", Key, ""),
            Col("category", Category, "视力/听力/言语/肢体/智力/精神/多重"),
            Col("grade", Integer, "1-4"),
            Col("issue_date", Role::Date, ""),
            Col("review_due", Role::Date, ""),
            Col("status", Category, "有效/过期/注销"),
        ],
        emit: cl_cert,
    },
    TableDef {
        dept: "JY",
        table: "grad",
        source: "JY.grad",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "教育 高校毕业生 (from the provincial graduate feed)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("university", Text, ""),
            Col("degree", Category, "专科/本科/硕士/博士"),
            Col("major", Text, ""),
            Col("grad_date", Role::Date, ""),
            Col("origin_region", Region, ""),
        ],
        emit: jy_grad,
    },
    TableDef {
        dept: "YB",
        table: "enrol",
        source: "YB.enrol",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "医保局 参保登记 per year",
        columns: &[
            Col("pid", PersonId, ""),
            Col("year", Integer, ""),
            Col("scheme", Category, "职工/城乡居民"),
            Col("status", Category, ""),
            Col("region", Region, ""),
            Col("premium_individual", Amount, ""),
            Col("subsidy_type", Category, "特困/低保/监测户/none"),
        ],
        emit: yb_enrol,
    },
    TableDef {
        dept: "YB",
        table: "settlement",
        source: "YB.settlement",
        kind: TableKind::Event,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "医保局 结算 (high volume, HIGH sensitivity)",
        columns: &[
            Col("pid", PersonId, ""),
            Col("date", Role::Date, ""),
            Col("hospital_level", Category, ""),
            Col("total", Amount, ""),
            Col("fund_paid", Amount, ""),
            Col("self_paid", Amount, ""),
        ],
        emit: yb_settlement,
    },
    TableDef {
        dept: "NY",
        table: "poverty_monitor",
        source: "NY.poverty_monitor",
        kind: TableKind::Reference,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "农业农村局 防返贫监测",
        columns: &[
            Col("pid", PersonId, ""),
            Col("household_no", Key, "not always identical to GA's"),
            Col("type", Category, "脱贫户/监测户"),
            Col("status", Category, ""),
        ],
        emit: ny_poverty,
    },
    TableDef {
        dept: "XY",
        table: "blacklist",
        source: "XY.blacklist",
        kind: TableKind::Reference,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Iso,
        description: "社会信用 严重失信/失信被执行人名单",
        columns: &[
            Col("subject_id", PartyId, "身份号码或统一社会信用代码"),
            Col("subject_name", Name, ""),
            Col("list_type", Category, ""),
            Col("source_dept", Category, ""),
            Col("in_date", Role::Date, ""),
            Col("out_date", Role::Date, ""),
        ],
        emit: xy_blacklist,
    },
    TableDef {
        dept: "RC",
        table: "high_talent",
        source: "RC.high_talent",
        kind: TableKind::Identity,
        subject: Subject::Person,
        unit: Unit::Person,
        style: DateStyle::Iso,
        description: "人才办 高层次人才名录",
        columns: &[
            Col("rid", RecordId, ""),
            Col("pid", PersonId, ""),
            Col("name", Name, ""),
            Col("tier", Category, "A/B/C/D"),
        ],
        emit: rc_high_talent,
    },
    TableDef {
        dept: "BDC",
        table: "ownership",
        source: "BDC.ownership",
        kind: TableKind::Identity,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Iso,
        description: "不动产登记中心 权属 (unit and owner)",
        columns: &[
            Col("rid", RecordId, ""),
            Col("unit_no", Key, "不动产单元号"),
            Col("address", Address, ""),
            Col("region", Region, ""),
            Col("use", Category, "住宅/商业/工业"),
            Col("area_m2", Quantity, ""),
            Col("owner_id", PartyId, ""),
            Col("owner_name", Name, ""),
            Col("share", Quantity, ""),
            Col("acquire_date", Role::Date, ""),
            Col("acquire_type", Category, "买卖/继承/赠与/自建"),
            Col("price", Amount, ""),
        ],
        emit: bdc_ownership,
    },
    TableDef {
        dept: "JR",
        table: "guaranteed_loan",
        source: "JR.guaranteed_loan",
        kind: TableKind::Reference,
        subject: Subject::Party,
        unit: Unit::Party,
        style: DateStyle::Iso,
        description: "金融/经办银行 创业担保贷款",
        columns: &[
            Col("loan_id", Key, ""),
            Col("borrower_id", PartyId, ""),
            Col("borrower_name", Name, ""),
            Col("principal", Amount, ""),
            Col("rate", Quantity, "annual, percent"),
            Col("start", Role::Date, ""),
            Col("end", Role::Date, ""),
            Col("overdue_days", Integer, ""),
            Col("interest_paid", Amount, ""),
            Col("first_loan", Flag, ""),
        ],
        emit: jr_loan,
    },
];

fn as_of(o: &Out) -> Date {
    o.city.params.as_of
}

fn rid(u: u32, k: u32) -> u64 {
    u64::from(u) * 16 + u64::from(k)
}

const ETHNICITIES: [&str; 4] = ["汉族", "回族", "满族", "蒙古族"];
const EDUCATION: [&str; 8] = [
    "学龄前",
    "小学",
    "初中",
    "高中",
    "中专",
    "大学专科",
    "大学本科",
    "研究生",
];

fn ga_person(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    let hh = &city.households[person.household as usize];
    let age = person.age_on(as_of(o));
    o.u(rid(p, 0));
    // The register is authoritative: its id numbers are right.
    o.b(&person.pid());
    let mut name = String::new();
    person.name(&mut name);
    o.s(&name);
    let g = if o.rng.chance(0.1) {
        if person.male { "1" } else { "2" }
    } else if person.male {
        "男"
    } else {
        "女"
    };
    o.s(g);
    o.date(person.birth);
    let eth = if o.rng.chance(0.97) {
        0
    } else {
        1 + o.rng.below(3) as usize
    };
    o.s(ETHNICITIES[eth]);
    o.region(&hh.addr);
    o.addr(&hh.addr, hh.village, u64::from(person.household));
    let hukou_type = match (hh.addr.rural, age > 20) {
        (true, true) => "农业",
        (false, true) => "非农",
        _ => "居民",
    };
    o.s(hukou_type);
    o.b(&household_no(city, person.household));
    o.s(person.role.as_str());
    o.s(STATUS_NAMES[person.status as usize]);
    match person.status {
        2 => o.date(Date(person.death + 30)),
        1 | 3 => {
            let d = as_of(o).0 - o.rng.range(30, 1500) as i32;
            o.date(Date(d))
        }
        _ => o.empty(),
    };
    o.s(EDUCATION[person.education as usize % EDUCATION.len()]);
    let members = city.household_members(person.household);
    let has_spouse = members
        .clone()
        .any(|m| city.persons[m as usize].role == HouseRole::Spouse);
    let married = match person.role {
        HouseRole::Head | HouseRole::Spouse => has_spouse,
        HouseRole::Parent => true,
        HouseRole::Child => age > 30 && o.rng.chance(0.5),
    };
    o.s(if married {
        "已婚"
    } else if age >= 70 {
        "丧偶"
    } else {
        "未婚"
    });
    o.phone(person.phone, p);
    o.end_identity(rid(p, 0), &person.pid());
}

fn ga_household(o: &mut Out, h: u32) {
    let city = o.city;
    let hh = &city.households[h as usize];
    let no = household_no(city, h);
    o.b(&no);
    o.b(&city.persons[hh.first as usize].pid());
    o.addr(&hh.addr, hh.village, u64::from(h));
    o.region(&hh.addr);
    o.u(u64::from(hh.size));
    // The household number is the table's record id.
    let rid = no.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    o.end_identity(rid, &no);
}

fn ga_move(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    let div = u64::from(hukou_division(city, person)) * 1_000_000;
    let age = person.age_on(as_of(o));
    if age < 18 {
        o.b(&person.pid())
            .s("出生登记")
            .date(person.birth)
            .empty()
            .u(div)
            .end();
    }
    match person.status {
        1 => {
            let d = Date(as_of(o).0 - o.rng.range(30, 1500) as i32);
            o.b(&person.pid())
                .s("迁出")
                .date(d)
                .u(div)
                .u(410_102_000_000)
                .end();
        }
        2 => {
            o.b(&person.pid())
                .s("死亡注销")
                .date(Date(person.death + 30))
                .u(div)
                .empty()
                .end();
        }
        _ => {}
    }
}

fn mz_marriage(o: &mut Out, h: u32) {
    let city = o.city;
    let hh = &city.households[h as usize];
    let members = city.household_members(h);
    let Some(spouse) = members
        .clone()
        .find(|&m| city.persons[m as usize].role == HouseRole::Spouse)
    else {
        return;
    };
    let head = hh.first;
    let young = city.persons[head as usize]
        .birth
        .add_years(24 + o.rng.range(0, 6) as i32);
    let Some(date) = young.filter(|d| *d < as_of(o)) else {
        return;
    };
    o.s(&format!("HY{h:010}"))
        .pid(head, false)
        .pid(spouse, false)
        .s("结婚")
        .date(date)
        .end();
}

fn case_id(h: u32) -> String {
    format!("DB{h:010}")
}

fn dibao_start(o: &Out, h: u32) -> Date {
    let mut r = entity_rng(o.city, "dibao-start", h);
    Date(o.city.params.as_of.0 - r.range(60, 2500) as i32)
}

fn mz_dibao_case(o: &mut Out, h: u32) {
    let city = o.city;
    let hh = &city.households[h as usize];
    if !hh.dibao {
        return;
    }
    let start = dibao_start(o, h);
    // Monthly amount in fen: 320 (rural) or 520 (urban) yuan per member.
    let amount = i64::from(hh.size) * if hh.addr.rural { 32_000 } else { 52_000 };
    o.s(&case_id(h)).pid(hh.first, false).name(hh.first);
    o.s(if hh.addr.rural { "农村" } else { "城市" })
        .date(start)
        .empty()
        .money(amount);
    o.addr(&hh.addr, hh.village, u64::from(h));
    o.end();
}

fn mz_dibao_member(o: &mut Out, h: u32) {
    let city = o.city;
    let hh = &city.households[h as usize];
    if !hh.dibao {
        return;
    }
    for (k, m) in city.household_members(h).enumerate() {
        let person = &city.persons[m as usize];
        if !person.alive() {
            continue;
        }
        o.u(rid(h, k as u32)).s(&case_id(h)).pid(m, false).name(m);
        o.end_identity(rid(h, k as u32), &person.pid());
    }
}

fn mz_tekun(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::TEKUN) {
        return;
    }
    let start = Date(as_of(o).0 - o.rng.range(100, 3000) as i32);
    o.u(rid(p, 0)).pid(p, true).name(p);
    o.s(if person.has(flag::TEKUN_CENTRAL) {
        "集中"
    } else {
        "分散"
    })
    .date(start);
    if person.alive() {
        o.empty()
    } else {
        o.date(Date(person.death))
    };
    o.end_identity(rid(p, 0), &person.pid());
}

fn mz_unsupported_child(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::UNSUPPORTED_CHILD) || person.age_on(as_of(o)) >= 18 {
        return;
    }
    let start = Date(person.birth.0.max(as_of(o).0 - 2000) + o.rng.range(1, 300) as i32);
    o.pid(p, false)
        .name(p)
        .either(0.4, "孤儿", "事实无人抚养")
        .date(start)
        .end();
}

fn mz_elderly_paid(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    let as_of = as_of(o);
    if !person.alive() || person.status != 0 || person.age_on(as_of) < 80 {
        return;
    }
    let last = as_of.month().0;
    for m in (last - 11)..=last {
        let day = Month(m).first_day();
        let age = person.age_on(day);
        if age < 80 {
            continue;
        }
        let amount = match age {
            80..=89 => 5_000,
            90..=99 => 10_000,
            _ => 30_000,
        };
        o.pid(p, false).month(Month(m)).money(amount).end();
    }
}

fn wj_birth(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if person.role != HouseRole::Child || person.age_on(as_of(o)) >= 18 {
        return;
    }
    let members = city.household_members(person.household);
    let parents: Vec<u32> = members
        .filter(|&m| {
            matches!(
                city.persons[m as usize].role,
                HouseRole::Head | HouseRole::Spouse
            )
        })
        .collect();
    let mother = parents
        .iter()
        .copied()
        .find(|&m| !city.persons[m as usize].male);
    let father = parents
        .iter()
        .copied()
        .find(|&m| city.persons[m as usize].male);
    let cert = rid(p, 0);
    o.u(cert).name(p);
    // Registered children carry their id; the newest certificates do not yet.
    if person.age_on(as_of(o)) == 0 && o.rng.chance(0.5) {
        o.empty()
    } else {
        o.pid(p, false)
    };
    match mother {
        Some(m) => o.pid(m, false),
        None => o.empty(),
    };
    match father {
        Some(f) => o.pid(f, false),
        None => o.empty(),
    };
    o.date(person.birth).s([
        "商丘市第一人民医院",
        "商丘市妇幼保健院",
        "永城市人民医院",
        "县人民医院",
    ][p as usize % 4]);
    o.end_identity(cert, &person.pid());
}

fn wj_death(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if person.alive() {
        return;
    }
    let cause = ["循环系统疾病", "肿瘤", "呼吸系统疾病", "损伤和中毒", "其他"][p as usize % 5];
    o.pid(p, false)
        .name(p)
        .date(Date(person.death))
        .s(cause)
        .end();
}

fn wj_family_planning(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::FAMILY_PLANNING) {
        return;
    }
    let two_girls = o.rng.chance(0.3);
    o.u(rid(p, 0))
        .pid(p, true)
        .name(p)
        .s(if two_girls { "双女" } else { "独生子女" });
    o.u(if two_girls { 2 } else { 1 }).s(&format!("JS{p:010}"));
    o.end_identity(rid(p, 0), &person.pid());
}

const DISABILITY: [&str; 7] = ["视力", "听力", "言语", "肢体", "智力", "精神", "多重"];

fn cl_cert(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::DISABLED) {
        return;
    }
    let issue = Date(as_of(o).0 - o.rng.range(100, 3600) as i32);
    let due = issue
        .add_years(if o.rng.chance(0.8) { 10 } else { 5 })
        .unwrap_or(issue);
    let status = if !person.alive() {
        "注销"
    } else if due < as_of(o) {
        "过期"
    } else {
        "有效"
    };
    o.u(rid(p, 0)).pid(p, true).name(p);
    let mut cert = person.pid().to_vec();
    cert.extend_from_slice(
        format!("{}{}", person.disability % 16 + 1, person.disability / 16).as_bytes(),
    );
    o.b(&cert);
    o.s(DISABILITY[(person.disability % 16) as usize % 7])
        .u(u64::from(person.disability / 16));
    o.date(issue).date(due).s(status);
    o.end_identity(rid(p, 0), &person.pid());
}

const UNIVERSITIES: [&str; 6] = [
    "郑州大学",
    "河南大学",
    "商丘师范学院",
    "河南理工大学",
    "华中科技大学",
    "商丘工学院",
];
const MAJORS: [&str; 6] = [
    "计算机科学与技术",
    "会计学",
    "机械工程",
    "汉语言文学",
    "临床医学",
    "电子信息工程",
];

fn jy_grad(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if !person.has(flag::GRADUATE) {
        return;
    }
    let u = entity_rng(city, "degree", p).unit();
    let (degree, years) = if u < 0.35 {
        ("专科", 21)
    } else if u < 0.85 {
        ("本科", 22)
    } else if u < 0.97 {
        ("硕士", 25)
    } else {
        ("博士", 28)
    };
    let grad = person
        .birth
        .add_years(years)
        .and_then(|d| Date::from_ymd(d.year(), 6, 30))
        .unwrap_or(person.birth);
    if grad > as_of(o) {
        return;
    }
    o.u(rid(p, 0))
        .pid(p, false)
        .name(p)
        .s(UNIVERSITIES[p as usize % 6])
        .s(degree)
        .s(MAJORS[(p / 7) as usize % 6]);
    o.date(grad)
        .u(u64::from(hukou_division(city, person)) * 1_000_000);
    o.end_identity(rid(p, 0), &person.pid());
}

fn yb_enrol(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    let last = city.params.last_year();
    let years = (city.params.history_months / 12).max(1) as i32;
    let div = u64::from(hukou_division(city, person)) * 1_000_000;
    for y in (last - years + 1)..=last {
        let Some(jan) = Date::from_ymd(y, 1, 1) else {
            continue;
        };
        if person.birth > jan || (!person.alive() && person.death < jan.0) || person.status == 1 {
            continue;
        }
        let employee = person.employer > 0;
        let subsidy = if person.has(flag::TEKUN) {
            "特困"
        } else if person.has(flag::DIBAO) {
            "低保"
        } else if person.has(flag::POVERTY_MONITOR) {
            "监测户"
        } else {
            "none"
        };
        let premium = if employee {
            0
        } else {
            32_000 + i64::from(y - 2021) * 2_000
        };
        o.pid(p, false)
            .i(i64::from(y))
            .s(if employee { "职工" } else { "城乡居民" })
            .s("参保缴费")
            .u(div);
        o.money(premium).s(subsidy).end();
    }
}

fn yb_settlement(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    let age = person.age_on(city.params.as_of);
    let rate = if age >= 60 {
        0.85
    } else if age >= 40 {
        0.45
    } else {
        0.2
    };
    let rate = if person.has(flag::CHRONIC) {
        rate + 0.6
    } else {
        rate
    };
    for m in city.params.months() {
        let first = m.first_day();
        if person.birth > first || (!person.alive() && person.death < first.0) {
            continue;
        }
        let mut visits = 0;
        let mut r: f64 = rate;
        while r > 0.0 && o.rng.chance(r.min(1.0)) {
            visits += 1;
            r -= 1.0;
        }
        for _ in 0..visits {
            let day = Date(first.0 + o.rng.range(0, 27) as i32);
            let total = (o.rng.lognormal(260.0, 1.2) * 100.0) as i64;
            let fund = total * o.rng.range(40, 80) / 100;
            o.pid(p, false)
                .date(day)
                .pick(&["一级", "二级", "三级", "社区"]);
            o.money(total).money(fund).money(total - fund).end();
        }
    }
}

fn ny_poverty(o: &mut Out, p: u32) {
    let city = o.city;
    let person = &city.persons[p as usize];
    if !person.has(flag::POVERTY_MONITOR) {
        return;
    }
    let mut no = household_no(city, person.household).to_vec();
    if o.rng.chance(0.2) {
        // 农业 household numbers drift from 户籍's.
        no.insert(6, b'0');
    }
    o.pid(p, true)
        .b(&no)
        .either(0.7, "脱贫户", "监测户")
        .s("正常")
        .end();
}

fn xy_blacklist(o: &mut Out, u: u32) {
    let city = o.city;
    let n = city.persons.len() as u32;
    let in_date = Date(as_of(o).0 - o.rng.range(30, 1800) as i32);
    let out_date = o
        .rng
        .chance(0.3)
        .then(|| Date(in_date.0 + o.rng.range(180, 700) as i32))
        .filter(|d| *d < as_of(o));
    if u < n {
        if !city.persons[u as usize].has(flag::BLACKLISTED) {
            return;
        }
        o.pid(u, false).name(u).s("失信被执行人").s("法院");
    } else {
        let e = u - n;
        if !city.enterprises[e as usize].has(super::super::model::eflag::BLACKLISTED) {
            return;
        }
        o.uscc(e, false)
            .ent_name(e)
            .either(0.5, "严重失信主体", "重大税收违法");
        o.either(0.5, "市场监管", "税务");
    }
    o.date(in_date).opt_date(out_date).end();
}

fn rc_high_talent(o: &mut Out, p: u32) {
    let person = &o.city.persons[p as usize];
    if !person.has(flag::HIGH_TALENT) {
        return;
    }
    o.u(rid(p, 0))
        .pid(p, false)
        .name(p)
        .pick(&["A", "B", "C", "D"]);
    o.end_identity(rid(p, 0), &person.pid());
}

fn bdc_ownership(o: &mut Out, u: u32) {
    let city = o.city;
    let n = city.persons.len() as u32;
    let as_of = as_of(o);
    if u < n {
        let person = &city.persons[u as usize];
        let hh = &city.households[person.household as usize];
        // Urban heads own their home; recent buyers bought within two years.
        let owner = person.role == HouseRole::Head && !hh.addr.rural && person.age_on(as_of) >= 22;
        if !owner && !person.has(flag::HOME_BUYER) {
            return;
        }
        let buyer = person.has(flag::HOME_BUYER);
        let acquired = if buyer {
            Date(as_of.0 - o.rng.range(10, 700) as i32)
        } else {
            Date(as_of.0 - o.rng.range(800, 9000) as i32)
                .max(person.birth.add_years(22).unwrap_or(person.birth))
        };
        let area = o.rng.range(600, 1600) as u64;
        let unit_no = format!("BDC{u:012}");
        o.u(rid(u, 0))
            .s(&unit_no)
            .addr(&hh.addr, hh.village, u64::from(person.household))
            .region(&hh.addr);
        o.s("住宅")
            .tenths(area)
            .pid(u, true)
            .name(u)
            .s("100.0")
            .date(acquired);
        if buyer {
            o.s("买卖")
        } else {
            o.pick(&["买卖", "自建", "继承"])
        };
        let price = area as i64 * o.rng.range(400, 900) * 100;
        o.money(price);
        o.end_identity(rid(u, 0), &person.pid());
    } else {
        let e = u - n;
        let ent = &city.enterprises[e as usize];
        if !ent.active() || !o.rng.chance(0.08) {
            return;
        }
        let area = o.rng.range(500, 50_000) as u64;
        let unit_no = format!("BDC{u:012}");
        o.u(rid(u, 0))
            .s(&unit_no)
            .addr(&ent.addr, 0, u64::from(u))
            .region(&ent.addr);
        o.s(if ent.industry < 8 { "工业" } else { "商业" })
            .tenths(area)
            .uscc(e, false)
            .ent_name(e)
            .s("100.0");
        let acquired = Date(ent.est.0 + o.rng.range(0, 400) as i32).min(as_of);
        let price = area as i64 * o.rng.range(200, 600) * 10;
        o.date(acquired).s("买卖").money(price);
        o.end_identity(rid(u, 0), &ent.uscc());
    }
}

fn jr_loan(o: &mut Out, u: u32) {
    let city = o.city;
    let n = city.persons.len() as u32;
    let as_of = as_of(o);
    let start = Date(as_of.0 - o.rng.range(60, 900) as i32);
    let end = Date(start.0 + 730);
    let overdue = if o.rng.chance(0.08) {
        o.rng.range(1, 90)
    } else {
        0
    };
    if u < n {
        if !city.persons[u as usize].has(flag::LOAN) {
            return;
        }
        let principal = o.rng.range(5, 30) * 1_000_000;
        o.s(&format!("DB{u:011}"))
            .pid(u, false)
            .name(u)
            .money(principal);
    } else {
        let e = u - n;
        if !city.enterprises[e as usize].has(super::super::model::eflag::GUARANTEED_LOAN) {
            return;
        }
        let principal = o.rng.range(30, 300) * 1_000_000;
        o.s(&format!("DB{u:011}"))
            .uscc(e, false)
            .ent_name(e)
            .money(principal);
    }
    let first =
        u >= n && city.enterprises[(u - n) as usize].has(super::super::model::eflag::FIRST_LOAN);
    o.pick(&["3.45", "3.65", "4.35"])
        .date(start)
        .date(end)
        .i(overdue);
    let interest = o.rng.range(500, 20_000) * 100;
    o.money(interest).flag(first).end();
}
