//! The city as the generator knows it: the true persons, households and enterprises, built in
//! memory (about 60 bytes a person, 80 an enterprise) before any department feed is written.
//! Feeds are views of this model, made dirty on the way out; the truth files name the model's
//! keys.

use rayon::prelude::*;

use super::names;
use super::params::CityParams;
use super::rng::{Rng, cumulative, label};
use crate::date::Date;
use crate::ids::{DIVISIONS, make_pid, make_uscc};

/// Persons per generation chunk: fixed, so output never depends on the thread count.
pub const PERSON_CHUNK: u64 = 8192;
pub const ENTERPRISE_CHUNK: u64 = 4096;

/// Division codes used in id numbers of people born outside the city.
pub const OUTSIDE_DIVISIONS: [u32; 4] = [410102, 410302, 320102, 340102];

/// Population weights of the districts and counties, in [`DIVISIONS`] order (per mille).
pub const DISTRICT_WEIGHTS: [u32; 9] = [95, 100, 105, 105, 80, 110, 140, 135, 130];

pub mod flag {
    pub const DIBAO: u32 = 1 << 0;
    pub const TEKUN: u32 = 1 << 1;
    pub const TEKUN_CENTRAL: u32 = 1 << 2;
    pub const DISABLED: u32 = 1 << 3;
    pub const GRADUATE: u32 = 1 << 4;
    pub const HARDSHIP: u32 = 1 << 5;
    pub const UNEMPLOYED: u32 = 1 << 6;
    pub const GJJ: u32 = 1 << 7;
    pub const SKILL_CERT: u32 = 1 << 8;
    pub const HIGH_TALENT: u32 = 1 << 9;
    pub const COMMISSIONER: u32 = 1 << 10;
    pub const FAMILY_PLANNING: u32 = 1 << 11;
    pub const POVERTY_MONITOR: u32 = 1 << 12;
    pub const UNSUPPORTED_CHILD: u32 = 1 << 13;
    pub const DEATH_CERT_ONLY: u32 = 1 << 14;
    pub const HOME_BUYER: u32 = 1 << 15;
    pub const BLACKLISTED: u32 = 1 << 16;
    pub const TWIN: u32 = 1 << 17;
    pub const PENSIONER: u32 = 1 << 18;
    pub const LOAN: u32 = 1 << 19;
    pub const CHRONIC: u32 = 1 << 20;
    pub const RETURNEE: u32 = 1 << 21;
}

pub mod eflag {
    pub const UI_EMPLOYER: u32 = 1 << 0;
    pub const TRAVEL_AGENCY: u32 = 1 << 1;
    pub const HIGH_TECH: u32 = 1 << 2;
    pub const TECH_SME: u32 = 1 << 3;
    pub const ABOVE_SCALE: u32 = 1 << 4;
    pub const NEW_ABOVE_SCALE: u32 = 1 << 5;
    pub const LEGACY_REG_NO: u32 = 1 << 6;
    pub const STATE_LEASE: u32 = 1 << 7;
    pub const PROJECT: u32 = 1 << 8;
    pub const GUARANTEED_LOAN: u32 = 1 << 9;
    pub const FIRST_LOAN: u32 = 1 << 10;
    pub const ABNORMAL: u32 = 1 << 11;
    pub const PENALTY: u32 = 1 << 12;
    pub const BLACKLISTED: u32 = 1 << 13;
    pub const NEW_ENTITY: u32 = 1 << 14;
    pub const OUTBOUND: u32 = 1 << 15;
    pub const RESEARCH_EMPLOYER: u32 = 1 << 16;
}

/// Role of a person in their household (户籍 与户主关系).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HouseRole {
    Head,
    Spouse,
    Child,
    Parent,
}

impl HouseRole {
    pub fn as_str(self) -> &'static str {
        match self {
            HouseRole::Head => "户主",
            HouseRole::Spouse => "配偶",
            HouseRole::Child => "子女",
            HouseRole::Parent => "父母",
        }
    }
}

/// Hukou status codes.
pub const STATUS_NAMES: [&str; 4] = ["正常", "迁出", "死亡注销", "服兵役"];

/// A true person.
#[derive(Debug, Clone)]
pub struct Person {
    pub birth: Date,
    /// Day of death, or `i32::MIN` when alive.
    pub death: i32,
    pub household: u32,
    /// Enterprise index + 1, 0 when not formally employed.
    pub employer: u32,
    /// Mobile number (11 digits), 0 when none.
    pub phone: u64,
    pub flags: u32,
    pub given: [u16; 2],
    pub seq: u16,
    pub surname: u16,
    /// Index into [`DIVISIONS`] then [`OUTSIDE_DIVISIONS`] for the id number's division.
    pub id_div: u8,
    pub male: bool,
    pub role: HouseRole,
    pub status: u8,
    /// Disability: grade (1-4) × 16 + category (0-6), 0 when none.
    pub disability: u8,
    pub education: u8,
}

impl Person {
    pub fn pid(&self) -> [u8; 18] {
        make_pid(division_code(self.id_div), self.birth, self.seq)
    }
    pub fn alive(&self) -> bool {
        self.death == i32::MIN
    }
    pub fn age_on(&self, d: Date) -> i32 {
        self.birth.age_on(d)
    }
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }
    pub fn name(&self, out: &mut String) {
        names::full_name(self.surname, self.given, self.male, out);
    }
}

pub fn division_code(i: u8) -> u32 {
    let i = i as usize;
    if i < DIVISIONS.len() {
        DIVISIONS[i].0
    } else {
        OUTSIDE_DIVISIONS[(i - DIVISIONS.len()) % OUTSIDE_DIVISIONS.len()]
    }
}

/// An address in the city: urban (road, number, estate, building, unit, room) or rural
/// (town, village, group, number).
#[derive(Debug, Clone, Copy, Default)]
pub struct Addr {
    pub district: u8,
    pub rural: bool,
    pub road: u16,
    pub number: u16,
    pub estate: u16,
    pub building: u8,
    pub unit: u8,
    pub room: u16,
}

impl Addr {
    pub fn random(rng: &mut Rng, district: u8, rural: bool) -> Addr {
        Addr {
            district,
            rural,
            road: rng.below(if rural {
                names::TOWNS.len()
            } else {
                names::ROADS.len()
            } as u64) as u16,
            number: rng.range(1, if rural { 60 } else { 399 }) as u16,
            estate: rng.below((names::ESTATE_STEMS.len() * names::ESTATE_SUFFIXES.len()) as u64)
                as u16,
            building: rng.range(1, 30) as u8,
            unit: rng.range(1, 6) as u8,
            room: (rng.range(1, 28) * 100 + rng.range(1, 4)) as u16,
        }
    }
}

/// A true household (户).
#[derive(Debug, Clone)]
pub struct Household {
    pub first: u32,
    pub size: u8,
    pub addr: Addr,
    /// The village's surname (rural addresses).
    pub village: u16,
    pub central_heating: bool,
    pub dibao: bool,
    pub tekun: bool,
}

/// Enterprise types as registered (SC.ent.type).
pub const ENT_TYPES: [&str; 7] = [
    "有限责任公司",
    "股份有限公司",
    "个人独资企业",
    "合伙企业",
    "个体工商户",
    "农民专业合作社",
    "外商投资企业",
];
pub const ENT_INDIVIDUAL: u8 = 4;
pub const ENT_COOP: u8 = 5;

/// A true market entity.
#[derive(Debug, Clone)]
pub struct Enterprise {
    pub est: Date,
    /// Day the entity was deregistered or revoked, or `i32::MIN`.
    pub closed: i32,
    pub rep: u32,
    pub org: u32,
    pub capital_wan: u32,
    /// Insured employees (RS), filled by employment assignment.
    pub employees: u32,
    /// Target size used to assign employees.
    pub size_target: u32,
    pub flags: u32,
    pub trade: u16,
    pub addr: Addr,
    pub kind: u8,
    pub industry: u8,
    /// 0 存续, 1 在业, 2 吊销, 3 注销.
    pub status: u8,
}

impl Enterprise {
    pub fn uscc(&self) -> [u8; 18] {
        let prefix = match self.kind {
            ENT_INDIVIDUAL => *b"92",
            ENT_COOP => *b"93",
            _ => *b"91",
        };
        make_uscc(
            prefix,
            DIVISIONS[self.addr.district as usize % 9].0,
            self.org,
        )
    }
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }
    pub fn active(&self) -> bool {
        self.status <= 1
    }
    pub fn name(&self, out: &mut String) {
        let district = DIVISIONS[self.addr.district as usize % 9].1;
        out.push_str("商丘市");
        if self.trade.is_multiple_of(3) {
            out.push_str(district.trim_end_matches(['区', '县', '市']));
        }
        out.push_str(names::TRADE_NAMES[self.trade as usize % names::TRADE_NAMES.len()]);
        out.push_str(names::INDUSTRIES[self.industry as usize].1);
        out.push_str(match self.kind {
            0 | 6 => "有限公司",
            1 => "股份有限公司",
            2 => "商行",
            3 => "合伙企业",
            ENT_INDIVIDUAL => "店",
            _ => "专业合作社",
        });
        if self.kind == ENT_INDIVIDUAL || self.trade > 200 {
            // Distinguish same-name shops: real registers do it with a branch or a number.
            let _ = std::fmt::Write::write_fmt(out, format_args!("{}", self.org % 97));
        }
    }
}

/// The whole true city.
#[derive(Debug)]
pub struct City {
    pub params: CityParams,
    pub persons: Vec<Person>,
    pub households: Vec<Household>,
    pub enterprises: Vec<Enterprise>,
}

impl City {
    pub fn build(params: &CityParams) -> City {
        let seed = params.seed;
        let as_of = params.as_of;
        let n = params.persons;
        let chunks = n.div_ceil(PERSON_CHUNK);
        let parts: Vec<(Vec<Household>, Vec<Person>)> = (0..chunks)
            .into_par_iter()
            .map(|c| {
                let lo = c * PERSON_CHUNK;
                let hi = ((c + 1) * PERSON_CHUNK).min(n);
                people_chunk(seed, c, (hi - lo) as usize, as_of)
            })
            .collect();
        let mut persons = Vec::with_capacity(n as usize);
        let mut households = Vec::new();
        for (hs, ps) in parts {
            let hbase = households.len() as u32;
            let pbase = persons.len() as u32;
            for mut h in hs {
                h.first += pbase;
                households.push(h);
            }
            for mut p in ps {
                p.household += hbase;
                persons.push(p);
            }
        }
        make_pids_unique(&mut persons);
        let mut city = City {
            params: params.clone(),
            persons,
            households,
            enterprises: Vec::new(),
        };
        city.enterprises = build_enterprises(&city);
        convert_individual_businesses(&mut city);
        assign_employment(&mut city);
        city
    }

    pub fn household_members(&self, h: u32) -> std::ops::Range<u32> {
        let hh = &self.households[h as usize];
        hh.first..hh.first + u32::from(hh.size)
    }

    pub fn head_of(&self, p: u32) -> u32 {
        self.households[self.persons[p as usize].household as usize].first
    }
}

fn draw_district(rng: &mut Rng) -> u8 {
    static CUM: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
    let cum = CUM.get_or_init(|| cumulative(DISTRICT_WEIGHTS));
    rng.weighted(cum) as u8
}

fn birth_for_age(rng: &mut Rng, as_of: Date, age: i64) -> Date {
    let days = age * 365 + rng.range(0, 364);
    Date(as_of.0 - days as i32)
}

fn people_chunk(
    seed: u64,
    chunk: u64,
    budget: usize,
    as_of: Date,
) -> (Vec<Household>, Vec<Person>) {
    let mut rng = Rng::new(seed, label("people"), chunk);
    let mut persons: Vec<Person> = Vec::with_capacity(budget);
    let mut households = Vec::new();
    while persons.len() < budget {
        let district = draw_district(&mut rng);
        let rural = rng.chance(0.55);
        let h = households.len() as u32;
        let first = persons.len() as u32;
        let addr = Addr::random(&mut rng, district, rural);
        let village = names::surname(&mut rng);
        // Household shape by the head's age.
        let head_age = {
            let u = rng.unit();
            if u < 0.07 {
                // Old heads, fewer the older (the oldest-old are few).
                68 + (rng.unit().powf(1.6) * 30.0) as i64
            } else if u < 0.25 {
                rng.range(56, 75)
            } else {
                rng.range(22, 60)
            }
        };
        let mut members: Vec<(i64, bool, HouseRole)> = Vec::new();
        let head_male = rng.chance(0.78);
        members.push((head_age, head_male, HouseRole::Head));
        let married = if head_age > 70 {
            rng.chance(0.55)
        } else {
            rng.chance(0.82)
        };
        if married {
            let spouse_age = (head_age + rng.range(-5, 3)).max(20);
            members.push((spouse_age, !head_male, HouseRole::Spouse));
        }
        if (24..=60).contains(&head_age) && married {
            let kids = [0, 0, 1, 1, 2, 2, 3][rng.below(7) as usize];
            let mut k = 0;
            while k < kids {
                let age = (head_age - rng.range(22, 34)).max(0);
                let twins = rng.chance(0.012);
                members.push((age, rng.chance(0.52), HouseRole::Child));
                if twins {
                    members.push((age, rng.chance(0.5), HouseRole::Child));
                    k += 1;
                }
                k += 1;
            }
            if rng.chance(0.18) {
                let p_age = (head_age + rng.range(22, 32)).min(102);
                members.push((p_age, rng.chance(0.4), HouseRole::Parent));
                if rng.chance(0.5) {
                    members.push((
                        (p_age + rng.range(-4, 4)).min(104),
                        !members[members.len() - 1].1,
                        HouseRole::Parent,
                    ));
                }
            }
        }
        members.truncate(budget - persons.len());
        let surname = names::surname(&mut rng);
        let spouse_surname = names::surname(&mut rng);
        let parent_surname = if head_male { surname } else { spouse_surname };
        let mut prev_child: Option<(Date, [u16; 2])> = None;
        for &(age, male, role) in &members {
            let twin_of = match (role, prev_child) {
                (HouseRole::Child, Some((b, g)))
                    if b.age_on(as_of) == age as i32 && rng.chance(0.9) =>
                {
                    Some((b, g))
                }
                _ => None,
            };
            let birth = twin_of.map_or_else(|| birth_for_age(&mut rng, as_of, age), |t| t.0);
            let mut given = names::given_name(&mut rng, male);
            if let Some((_, g)) = twin_of {
                // Twins share the first character of the given name.
                given[0] = g[0];
                if given[1] == u16::MAX {
                    given[1] = (g[0] + 1) % 40;
                }
            }
            let s = match role {
                HouseRole::Head if head_male => surname,
                HouseRole::Head => spouse_surname,
                HouseRole::Spouse if head_male => spouse_surname,
                HouseRole::Spouse => surname,
                HouseRole::Child => parent_surname,
                HouseRole::Parent => names::surname(&mut rng),
            };
            let id_div = if rng.chance(0.05) {
                (DIVISIONS.len() + rng.below(OUTSIDE_DIVISIONS.len() as u64) as usize) as u8
            } else {
                district
            };
            let seq_base = rng.below(500) as u16 * 2;
            let seq = if male { seq_base + 1 } else { seq_base };
            let adult = age >= 18;
            let phone = if adult && age < 85 && rng.chance(0.96) {
                let prefix = [
                    130, 131, 132, 135, 136, 137, 138, 139, 150, 151, 152, 155, 158, 159, 176, 177,
                    185, 186, 187, 188, 189, 199,
                ];
                *rng.pick(&prefix) * 100_000_000 + rng.below(100_000_000)
            } else {
                0
            };
            let mut flags = 0u32;
            if twin_of.is_some() {
                flags |= flag::TWIN;
                if let Some(last) = persons.last_mut() {
                    last.flags |= flag::TWIN;
                }
            }
            // Status: a few moved out, died, serve in the army. Deaths are mostly of the old.
            let death_p = if age >= 85 {
                0.08
            } else if age >= 70 {
                0.025
            } else {
                0.002
            };
            let (status, death) = if rng.chance(death_p) {
                let d = as_of.0 - rng.range(10, 1500) as i32;
                if rng.chance(0.15) {
                    // Death certificate issued, register not yet cancelled (the lag).
                    flags |= flag::DEATH_CERT_ONLY;
                    (0, d)
                } else {
                    (2, d)
                }
            } else if rng.chance(0.03) {
                (1, i32::MIN)
            } else if (18..=24).contains(&age) && male && rng.chance(0.02) {
                (3, i32::MIN)
            } else {
                (0, i32::MIN)
            };
            let education = match age {
                0..=5 => 0,
                6..=17 => 1,
                _ => rng.weighted(&[30, 55, 75, 88, 97, 100]) as u8 + 1,
            };
            persons.push(Person {
                birth,
                death,
                household: h,
                employer: 0,
                phone,
                flags,
                given,
                seq,
                surname: s,
                id_div,
                male,
                role,
                status,
                disability: 0,
                education,
            });
            if role == HouseRole::Child {
                prev_child = Some((birth, given));
            }
        }
        let size = persons.len() as u32 - first;
        // Household-level programmes: 低保 (more in the countryside), 特困 (the old alone).
        let dibao = rng.chance(if rural { 0.045 } else { 0.018 });
        let tekun = !dibao && size == 1 && head_age >= 60 && rng.chance(0.24);
        households.push(Household {
            first,
            size: size as u8,
            addr,
            village,
            central_heating: !rural && district <= 1 && rng.chance(0.35),
            dibao,
            tekun,
        });
        // Person-level attributes that depend on the household.
        for p in &mut persons[first as usize..] {
            let age = p.birth.age_on(as_of) as i64;
            if dibao {
                p.flags |= flag::DIBAO;
            }
            if tekun {
                p.flags |= flag::TEKUN;
                if rng.chance(0.3) {
                    p.flags |= flag::TEKUN_CENTRAL;
                }
            }
            let disabled_p = if age >= 60 { 0.05 } else { 0.018 };
            if rng.chance(disabled_p) {
                p.flags |= flag::DISABLED;
                let grade = rng.range(1, 4) as u8;
                let category = rng.below(7) as u8;
                p.disability = grade * 16 + category;
            }
            if (21..=27).contains(&age) && rng.chance(0.4) {
                p.flags |= flag::GRADUATE;
            }
            if (18..=59).contains(&age) {
                if rng.chance(0.012) {
                    p.flags |= flag::HARDSHIP;
                }
                if rng.chance(0.02) {
                    p.flags |= flag::UNEMPLOYED;
                }
                if rng.chance(0.025) {
                    p.flags |= flag::SKILL_CERT;
                }
                if rng.chance(0.0015) {
                    p.flags |= flag::HIGH_TALENT;
                }
                if rng.chance(0.0004) {
                    p.flags |= flag::COMMISSIONER;
                }
                if rural && rng.chance(0.04) {
                    p.flags |= flag::RETURNEE;
                }
                if rng.chance(0.01) {
                    p.flags |= flag::LOAN;
                }
            }
            if rural && age >= 60 && rng.chance(0.2) {
                p.flags |= flag::FAMILY_PLANNING;
            }
            if rural && rng.chance(0.02) {
                p.flags |= flag::POVERTY_MONITOR;
            }
            if age < 18 && rng.chance(0.002) {
                p.flags |= flag::UNSUPPORTED_CHILD;
            }
            // Recent home buyers; talents the cities court buy far more often (T03).
            let p_buy = if p.flags & flag::HIGH_TALENT != 0 {
                0.3
            } else {
                0.02
            };
            if (25..=50).contains(&age) && rng.chance(p_buy) {
                p.flags |= flag::HOME_BUYER;
            }
            if age >= 18 && rng.chance(0.003) {
                p.flags |= flag::BLACKLISTED;
            }
            if age >= 60 && rng.chance(0.3) {
                p.flags |= flag::PENSIONER;
            }
            if age >= 45 && rng.chance(0.06) {
                p.flags |= flag::CHRONIC;
            }
        }
    }
    (households, persons)
}

/// Sequence numbers drawn at random can collide within one (division, birth date); the fix
/// walks collisions in person order and moves each to the next free sequence of the same
/// parity, so that every true id number is unique.
fn make_pids_unique(persons: &mut [Person]) {
    let key = |p: &Person| {
        (u64::from(p.id_div) << 48) | ((p.birth.0 as u32 as u64) << 16) | u64::from(p.seq)
    };
    let mut order: Vec<u32> = (0..persons.len() as u32).collect();
    order.par_sort_unstable_by_key(|&i| (key(&persons[i as usize]), i));
    let mut used: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut prev = u64::MAX;
    let mut dups = Vec::new();
    for &i in &order {
        let k = key(&persons[i as usize]);
        if k == prev {
            dups.push(i);
        }
        prev = k;
    }
    if dups.is_empty() {
        return;
    }
    for &i in &order {
        used.insert(key(&persons[i as usize]));
    }
    for i in dups {
        let p = &mut persons[i as usize];
        loop {
            p.seq = (p.seq + 2) % 1000;
            let k = key(p);
            if used.insert(k) {
                break;
            }
        }
    }
}

fn build_enterprises(city: &City) -> Vec<Enterprise> {
    let params = &city.params;
    let as_of = params.as_of;
    let seed = params.seed;
    // Adults who can represent an enterprise; a small pool of serial entrepreneurs represents
    // several.
    let adults: Vec<u32> = city
        .persons
        .iter()
        .enumerate()
        .filter(|(_, p)| p.alive() && p.status == 0 && (22..=68).contains(&p.age_on(as_of)))
        .map(|(i, _)| i as u32)
        .collect();
    if adults.is_empty() {
        return Vec::new();
    }
    let serial: Vec<u32> = adults.iter().copied().filter(|&i| i % 37 == 5).collect();
    let total = params.enterprise_count();
    let companies_expected = (total as f64 * 0.25).max(1.0);
    // Rates so that rare groups reach their full-city share, with floors so that a demo city
    // still has candidates for every policy.
    let rate = |full_city: f64, floor: f64| {
        (full_city / 200_000.0)
            .max(floor / companies_expected)
            .min(0.5)
    };
    let r_travel = rate(75.0, 12.0);
    let r_hte = rate(450.0, 25.0);
    let r_tsme = rate(1200.0, 30.0);
    let r_above = rate(1800.0, 40.0);
    let r_ui = rate(20_000.0, 60.0);
    let r_lease = rate(3000.0, 25.0);
    let r_project = rate(400.0, 15.0);
    let r_gloan = rate(2500.0, 25.0);
    let chunks = total.div_ceil(ENTERPRISE_CHUNK);
    (0..chunks)
        .into_par_iter()
        .flat_map_iter(|c| {
            let mut rng = Rng::new(seed, label("enterprises"), c);
            let lo = c * ENTERPRISE_CHUNK;
            let hi = ((c + 1) * ENTERPRISE_CHUNK).min(total);
            let adults = &adults;
            let serial = &serial;
            (lo..hi)
                .map(|e| {
                    let u = rng.unit();
                    let kind: u8 = if u < 0.75 {
                        ENT_INDIVIDUAL
                    } else if u < 0.77 {
                        ENT_COOP
                    } else {
                        [0, 0, 0, 0, 0, 0, 1, 2, 3, 6][rng.below(10) as usize]
                    };
                    let company = kind != ENT_INDIVIDUAL && kind != ENT_COOP;
                    let rep = if !serial.is_empty() && rng.chance(0.25) {
                        *rng.pick(serial)
                    } else {
                        *rng.pick(adults)
                    };
                    let age_days = (rng.unit().powi(2) * 25.0 * 365.0) as i32;
                    let est = Date(as_of.0 - age_days - 30);
                    let industry = {
                        static CUM: std::sync::OnceLock<Vec<u32>> = std::sync::OnceLock::new();
                        let cum =
                            CUM.get_or_init(|| cumulative(names::INDUSTRIES.iter().map(|i| i.2)));
                        rng.weighted(cum) as u8
                    };
                    let (status, closed) = if rng.chance(0.12) {
                        let d = (as_of.0 - rng.range(30, 2000) as i32).max(est.0 + 30);
                        (if rng.chance(0.4) { 2 } else { 3 }, d)
                    } else {
                        (if rng.chance(0.5) { 0 } else { 1 }, i32::MIN)
                    };
                    let mut flags = 0u32;
                    let mut size_target = 0;
                    let mut industry = industry;
                    if company {
                        if rng.chance(r_ui) {
                            flags |= eflag::UI_EMPLOYER;
                            size_target = rng.lognormal(25.0, 1.1).clamp(3.0, 5000.0) as u32;
                        }
                        if rng.chance(r_travel) {
                            flags |= eflag::TRAVEL_AGENCY;
                            industry = names::INDUSTRIES
                                .iter()
                                .position(|i| i.0 == "L72T")
                                .unwrap_or(0) as u8;
                            if rng.chance(0.3) {
                                flags |= eflag::OUTBOUND;
                            }
                        }
                        if rng.chance(r_hte) {
                            flags |= eflag::HIGH_TECH;
                        }
                        if rng.chance(r_tsme) {
                            flags |= eflag::TECH_SME;
                        }
                        if rng.chance(r_above) {
                            flags |= eflag::ABOVE_SCALE;
                            // Above-scale industry is manufacturing.
                            if !names::INDUSTRIES[industry as usize].0.starts_with('C') {
                                industry = rng.below(8) as u8;
                            }
                            if rng.chance(0.12) {
                                flags |= eflag::NEW_ABOVE_SCALE;
                            }
                            flags |= eflag::UI_EMPLOYER;
                            size_target = size_target.max(rng.range(40, 600) as u32);
                        }
                        if rng.chance(r_project) {
                            flags |= eflag::PROJECT;
                        }
                        if rng.chance(0.01) {
                            flags |= eflag::RESEARCH_EMPLOYER;
                        }
                    }
                    if rng.chance(r_lease) {
                        flags |= eflag::STATE_LEASE;
                    }
                    if rng.chance(r_gloan) {
                        flags |= eflag::GUARANTEED_LOAN;
                    }
                    if rng.chance(0.02) {
                        flags |= eflag::FIRST_LOAN;
                    }
                    if rng.chance(0.03) {
                        flags |= eflag::ABNORMAL;
                    }
                    if rng.chance(0.04) {
                        flags |= eflag::PENALTY;
                    }
                    if rng.chance(0.004) {
                        flags |= eflag::BLACKLISTED;
                    }
                    if kind == ENT_COOP
                        || (industry as usize) == names::INDUSTRIES.len() - 4 && rng.chance(0.2)
                    {
                        flags |= eflag::NEW_ENTITY;
                    }
                    if est.year() < 2014 && rng.chance(0.3) {
                        flags |= eflag::LEGACY_REG_NO;
                    }
                    let home = city.households[city.persons[rep as usize].household as usize]
                        .addr
                        .district;
                    let district = if rng.chance(0.8) {
                        home
                    } else {
                        draw_district(&mut rng)
                    };
                    Enterprise {
                        est,
                        closed,
                        rep,
                        org: (e as u32).wrapping_mul(2_654_435_761) % 90_000_000 + 10_000_000,
                        capital_wan: if company {
                            rng.lognormal(100.0, 1.2).clamp(1.0, 100_000.0) as u32
                        } else {
                            rng.range(1, 20) as u32
                        },
                        employees: 0,
                        size_target,
                        flags,
                        trade: rng.below(names::TRADE_NAMES.len() as u64 * 8) as u16,
                        addr: Addr::random(&mut rng, district, false),
                        kind,
                        industry,
                        status,
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// 个转企: some companies founded in the last year take over an individual business that their
/// legal representative operated, deregistered within six months of the company's founding.
/// The company insures its staff (E08's conditions).
fn convert_individual_businesses(city: &mut City) {
    let as_of = city.params.as_of;
    let mut rng = Rng::new(city.params.seed, label("conversions"), 0);
    let individuals: Vec<usize> = city
        .enterprises
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.kind == ENT_INDIVIDUAL && e.closed == i32::MIN && e.est.0 < as_of.0 - 720
        })
        .map(|(i, _)| i)
        .collect();
    let young: Vec<usize> = city
        .enterprises
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e.kind != ENT_INDIVIDUAL
                && e.kind != ENT_COOP
                && e.closed == i32::MIN
                && e.est.year() == as_of.year()
        })
        .map(|(i, _)| i)
        .collect();
    if individuals.is_empty() || young.is_empty() {
        return;
    }
    // About 3% of new companies come from an individual business (at least ~20 in a demo city).
    let p = (20.0 / young.len() as f64).clamp(0.03, 0.5);
    let mut next = 0usize;
    let start = rng.below(individuals.len() as u64) as usize;
    for &c in &young {
        if !rng.chance(p) || next >= individuals.len() {
            continue;
        }
        let i = individuals[(start + next * 7919) % individuals.len()];
        next += 1;
        let (rep, est) = (city.enterprises[c].rep, city.enterprises[c].est);
        let closed = (est.0 + rng.range(-150, 150) as i32).min(as_of.0 - 1);
        let ind = &mut city.enterprises[i];
        ind.rep = rep;
        ind.status = 3;
        ind.closed = closed.max(ind.est.0 + 30);
        let co = &mut city.enterprises[c];
        co.flags |= eflag::UI_EMPLOYER;
        co.size_target = co.size_target.max(rng.range(2, 12) as u32);
    }
}

/// Formal employment: working-age people are placed with insured employers in proportion to
/// each employer's size, each person by their own random stream.
fn assign_employment(city: &mut City) {
    let as_of = city.params.as_of;
    let seed = city.params.seed;
    let employers: Vec<u32> = city
        .enterprises
        .iter()
        .enumerate()
        .filter(|(_, e)| e.has(eflag::UI_EMPLOYER) && e.closed == i32::MIN)
        .map(|(i, _)| i as u32)
        .collect();
    if employers.is_empty() {
        return;
    }
    let cum = cumulative(
        employers
            .iter()
            .map(|&e| city.enterprises[e as usize].size_target.max(1)),
    );
    let capacity: u64 = cum.last().copied().map_or(0, u64::from);
    let working: u64 = city
        .persons
        .iter()
        .filter(|p| p.alive() && (18..=60).contains(&p.age_on(as_of)))
        .count() as u64;
    // Formal, insured employment is about a third of working-age people.
    let p_formal = (capacity as f64 / working.max(1) as f64).min(0.36);
    city.persons.par_iter_mut().enumerate().for_each(|(i, p)| {
        let mut rng = Rng::new(seed, label("employment"), i as u64);
        let age = p.age_on(as_of);
        // High-level talents are nearly all in formal, insured employment (T03).
        let p_job = if p.flags & flag::HIGH_TALENT != 0 {
            0.9
        } else {
            p_formal
        };
        if p.alive() && p.status != 3 && (18..=60).contains(&age) && rng.chance(p_job) {
            p.employer = employers[rng.weighted(&cum)] + 1;
            if rng.chance(0.5) {
                p.flags |= flag::GJJ;
            }
        }
    });
    let mut counts = vec![0u32; city.enterprises.len()];
    for p in &city.persons {
        if p.employer > 0 {
            counts[p.employer as usize - 1] += 1;
        }
    }
    for (e, c) in city.enterprises.iter_mut().zip(counts) {
        e.employees = c;
    }
}
