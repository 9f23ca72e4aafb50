//! Writing one chunk of one table: CSV fields with the feed's own formats and the documented
//! dirt, truth lines for identity records, and the occasional malformed row.
//!
//! Dirt that must agree within a department (the same mistyped id number on an account and on
//! all of its bills, so that events still join) is drawn from a stream keyed by
//! (department, entity), not from the chunk's stream.

use super::model::{Addr, City, Person, division_code};
use super::names;
use super::params::DirtRates;
use super::rng::{Rng, label};
use crate::date::{Date, Month};
use crate::ids::{DIVISIONS, make_reg_no, pid_to_15};

/// How a feed writes dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateStyle {
    Iso,
    Compact,
    Slash,
    Chinese,
}

const STYLES: [DateStyle; 4] = [
    DateStyle::Iso,
    DateStyle::Compact,
    DateStyle::Slash,
    DateStyle::Chinese,
];

/// The output of one chunk.
#[derive(Debug, Default)]
pub struct Chunk {
    pub csv: Vec<u8>,
    pub truth: Vec<u8>,
    pub rows: u64,
}

/// A chunk being written.
#[derive(Debug)]
pub struct Out<'a> {
    pub city: &'a City,
    pub rng: Rng,
    pub chunk: Chunk,
    dirt: &'a DirtRates,
    source: &'static str,
    dept: u64,
    style: DateStyle,
    first_field: bool,
    row_start: usize,
    date_field: Option<(usize, usize)>,
    amount_field: Option<usize>,
    scratch: String,
    /// The last id number and USCC written, with the person or enterprise and the feed kind:
    /// event feeds repeat them row after row (an enterprise's invoices), and each is a
    /// function of (seed, department, entity, feed kind) alone.
    last_pid: Option<(u32, bool, Vec<u8>)>,
    last_uscc: Option<(u32, bool, Vec<u8>)>,
}

impl<'a> Out<'a> {
    pub fn new(
        city: &'a City,
        source: &'static str,
        dept: &'static str,
        style: DateStyle,
        rng: Rng,
    ) -> Out<'a> {
        Out {
            city,
            rng,
            chunk: Chunk::default(),
            dirt: &city.params.dirt,
            source,
            dept: label(dept),
            style,
            first_field: true,
            row_start: 0,
            date_field: None,
            amount_field: None,
            scratch: String::new(),
            last_pid: None,
            last_uscc: None,
        }
    }

    fn sep(&mut self) {
        if !self.first_field {
            self.chunk.csv.push(b',');
        }
        self.first_field = false;
    }

    /// A text field (never contains a comma or a quote: the vocabulary has none).
    pub fn s(&mut self, v: &str) -> &mut Self {
        self.sep();
        self.chunk.csv.extend_from_slice(v.as_bytes());
        self
    }

    pub fn b(&mut self, v: &[u8]) -> &mut Self {
        self.sep();
        self.chunk.csv.extend_from_slice(v);
        self
    }

    pub fn empty(&mut self) -> &mut Self {
        self.sep();
        self
    }

    pub fn u(&mut self, v: u64) -> &mut Self {
        self.sep();
        let mut b = itoa::Buffer::new();
        self.chunk.csv.extend_from_slice(b.format(v).as_bytes());
        self
    }

    pub fn i(&mut self, v: i64) -> &mut Self {
        self.sep();
        let mut b = itoa::Buffer::new();
        self.chunk.csv.extend_from_slice(b.format(v).as_bytes());
        self
    }

    /// Money in fen, written as yuan with two decimals.
    pub fn money(&mut self, fen: i64) -> &mut Self {
        self.sep();
        self.amount_field = Some(self.chunk.csv.len());
        let mut b = itoa::Buffer::new();
        if fen < 0 {
            self.chunk.csv.push(b'-');
        }
        let f = fen.unsigned_abs();
        self.chunk
            .csv
            .extend_from_slice(b.format(f / 100).as_bytes());
        self.chunk.csv.push(b'.');
        self.chunk.csv.push(b'0' + (f / 10 % 10) as u8);
        self.chunk.csv.push(b'0' + (f % 10) as u8);
        self
    }

    /// A decimal quantity given in tenths.
    pub fn tenths(&mut self, v: u64) -> &mut Self {
        self.sep();
        let mut b = itoa::Buffer::new();
        self.chunk
            .csv
            .extend_from_slice(b.format(v / 10).as_bytes());
        self.chunk.csv.push(b'.');
        self.chunk.csv.push(b'0' + (v % 10) as u8);
        self
    }

    /// One of `options`, drawn uniformly.
    pub fn pick(&mut self, options: &[&str]) -> &mut Self {
        let v = *self.rng.pick(options);
        self.s(v)
    }

    /// `a` with probability `p`, else `b`.
    pub fn either(&mut self, p: f64, a: &str, b: &str) -> &mut Self {
        let v = if self.rng.chance(p) { a } else { b };
        self.s(v)
    }

    pub fn flag(&mut self, v: bool) -> &mut Self {
        self.s(if v { "1" } else { "0" })
    }

    /// A date in the feed's style, or now and then another accepted style.
    pub fn date(&mut self, d: Date) -> &mut Self {
        let style = if self.rng.chance(self.dirt.date_format) {
            *self.rng.pick(&STYLES)
        } else {
            self.style
        };
        self.sep();
        let start = self.chunk.csv.len();
        let (y, m, day) = d.ymd();
        let mut b = itoa::Buffer::new();
        let out = &mut self.chunk.csv;
        let two = |out: &mut Vec<u8>, v: u32| {
            out.push(b'0' + (v / 10) as u8);
            out.push(b'0' + (v % 10) as u8);
        };
        out.extend_from_slice(b.format(y).as_bytes());
        match style {
            DateStyle::Iso => {
                out.push(b'-');
                two(out, m);
                out.push(b'-');
                two(out, day);
            }
            DateStyle::Compact => {
                two(out, m);
                two(out, day);
            }
            DateStyle::Slash => {
                out.push(b'/');
                out.extend_from_slice(b.format(m).as_bytes());
                out.push(b'/');
                out.extend_from_slice(b.format(day).as_bytes());
            }
            DateStyle::Chinese => {
                out.extend_from_slice("年".as_bytes());
                out.extend_from_slice(b.format(m).as_bytes());
                out.extend_from_slice("月".as_bytes());
                out.extend_from_slice(b.format(day).as_bytes());
                out.extend_from_slice("日".as_bytes());
            }
        }
        self.date_field = Some((start, self.chunk.csv.len()));
        self
    }

    pub fn opt_date(&mut self, d: Option<Date>) -> &mut Self {
        match d {
            Some(d) => self.date(d),
            None => self.empty(),
        }
    }

    /// A month as `YYYY-MM`.
    pub fn month(&mut self, m: Month) -> &mut Self {
        self.sep();
        let mut b = itoa::Buffer::new();
        self.chunk
            .csv
            .extend_from_slice(b.format(m.year()).as_bytes());
        self.chunk.csv.push(b'-');
        let mm = m.month();
        self.chunk.csv.push(b'0' + (mm / 10) as u8);
        self.chunk.csv.push(b'0' + (mm % 10) as u8);
        self
    }

    /// The person's id number as this department has it: mostly right, sometimes with a typo
    /// or transposition, in older feeds sometimes in the legacy 15-digit form. The same person
    /// always gets the same form within one department.
    pub fn pid(&mut self, p: u32, legacy_feed: bool) -> &mut Self {
        self.sep();
        if !matches!(&self.last_pid, Some((q, l, _)) if *q == p && *l == legacy_feed) {
            self.last_pid = Some((p, legacy_feed, self.pid_text(p, legacy_feed)));
        }
        if let Some((.., id)) = &self.last_pid {
            self.chunk.csv.extend_from_slice(id);
        }
        self
    }

    fn pid_text(&self, p: u32, legacy_feed: bool) -> Vec<u8> {
        let person = &self.city.persons[p as usize];
        let mut id = person.pid();
        let mut r = Rng::new(
            self.city.params.seed,
            self.dept ^ label("pid"),
            u64::from(p),
        );
        let d = self.dirt;
        let u = r.unit();
        if legacy_feed && person.birth.year() < 2000 && u < d.id_legacy15 {
            return pid_to_15(&id).to_vec();
        }
        if u >= d.id_legacy15 && u < d.id_legacy15 + d.id_typo {
            let pos = r.below(17) as usize;
            id[pos] = b'0' + ((id[pos] - b'0' + 1 + r.below(9) as u8) % 10);
        } else if u >= d.id_legacy15 + d.id_typo && u < d.id_legacy15 + d.id_typo + d.id_transpose {
            let pos = r.range(6, 15) as usize;
            if id[pos] != id[pos + 1] {
                id.swap(pos, pos + 1);
            } else {
                id[pos + 1] = b'0' + (id[pos + 1] - b'0' + 5) % 10;
            }
        } else if r.chance(0.01) {
            id[17] = id[17].to_ascii_lowercase();
        }
        id.to_vec()
    }

    /// The enterprise's USCC as this department has it (registry feeds may carry the legacy
    /// registration number of old entities; a few typos), the same form for the same
    /// enterprise.
    pub fn uscc(&mut self, e: u32, legacy_feed: bool) -> &mut Self {
        self.sep();
        if !matches!(&self.last_uscc, Some((f, l, _)) if *f == e && *l == legacy_feed) {
            self.last_uscc = Some((e, legacy_feed, self.uscc_text(e, legacy_feed)));
        }
        if let Some((.., code)) = &self.last_uscc {
            self.chunk.csv.extend_from_slice(code);
        }
        self
    }

    fn uscc_text(&self, e: u32, legacy_feed: bool) -> Vec<u8> {
        let ent = &self.city.enterprises[e as usize];
        let mut r = Rng::new(
            self.city.params.seed,
            self.dept ^ label("uscc"),
            u64::from(e),
        );
        if legacy_feed && ent.has(super::model::eflag::LEGACY_REG_NO) {
            return make_reg_no(
                DIVISIONS[ent.addr.district as usize % 9].0,
                u64::from(ent.org),
            )
            .to_vec();
        }
        let mut code = ent.uscc();
        if r.chance(self.dirt.id_typo) {
            let pos = r.range(8, 16) as usize;
            code[pos] = if code[pos] == b'1' { b'7' } else { b'1' };
        }
        code.to_vec()
    }

    /// The person's name with this record's dirt.
    pub fn name(&mut self, p: u32) -> &mut Self {
        let person = &self.city.persons[p as usize];
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        person.name(&mut s);
        dirty_name(&mut self.rng, self.dirt, &mut s);
        self.s(&s);
        self.scratch = s;
        self
    }

    pub fn ent_name(&mut self, e: u32) -> &mut Self {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        self.city.enterprises[e as usize].name(&mut s);
        if self.rng.chance(self.dirt.name_traditional) {
            s = s
                .chars()
                .map(|c| names::traditional(c).unwrap_or(c))
                .collect();
        }
        self.s(&s);
        self.scratch = s;
        self
    }

    /// A phone number in one of the forms people write, sometimes an old number.
    pub fn phone(&mut self, phone: u64, owner: u32) -> &mut Self {
        if phone == 0 {
            return self.empty();
        }
        let phone = if self.rng.chance(self.dirt.phone_stale) {
            let mut r = Rng::new(self.city.params.seed, label("old-phone"), u64::from(owner));
            13_000_000_000 + r.below(6_000_000_000)
        } else {
            phone
        };
        let digits = phone.to_string();
        self.sep();
        let csv = &mut self.chunk.csv;
        if self.rng.chance(self.dirt.phone_format) {
            match self.rng.below(3) {
                0 => {
                    csv.extend_from_slice(b"+86 ");
                    csv.extend_from_slice(digits.as_bytes());
                }
                1 => {
                    csv.extend_from_slice(&digits.as_bytes()[..3]);
                    csv.push(b'-');
                    csv.extend_from_slice(&digits.as_bytes()[3..7]);
                    csv.push(b'-');
                    csv.extend_from_slice(&digits.as_bytes()[7..]);
                }
                _ => {
                    csv.extend_from_slice(&digits.as_bytes()[..3]);
                    csv.push(b' ');
                    csv.extend_from_slice(&digits.as_bytes()[3..7]);
                    csv.push(b' ');
                    csv.extend_from_slice(&digits.as_bytes()[7..]);
                }
            }
        } else {
            csv.extend_from_slice(digits.as_bytes());
        }
        self
    }

    /// An address in one of its written forms; `stale_key` selects the previous address that
    /// a stale record shows.
    pub fn addr(&mut self, a: &Addr, village: u16, stale_key: u64) -> &mut Self {
        let a = if self.rng.chance(self.dirt.address_stale) {
            let mut r = Rng::new(self.city.params.seed, label("old-address"), stale_key);
            Addr::random(&mut r, a.district, a.rural)
        } else {
            *a
        };
        let variant = if self.rng.chance(self.dirt.address_variant) {
            1 + self.rng.below(4)
        } else {
            0
        };
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        write_addr(&mut s, &a, village, variant);
        self.s(&s);
        self.scratch = s;
        self
    }

    /// The 12-digit statistical division code of an address.
    pub fn region(&mut self, a: &Addr) -> &mut Self {
        self.sep();
        let code = DIVISIONS[a.district as usize % 9].0 as u64 * 1_000_000
            + u64::from(a.road % 20 + 1) * 1000;
        let mut b = itoa::Buffer::new();
        self.chunk.csv.extend_from_slice(b.format(code).as_bytes());
        self
    }

    /// Ends a reference or event row.
    pub fn end(&mut self) {
        self.finish_row(None);
    }

    /// Ends an identity row: writes its truth line, and now and then repeats it exactly.
    pub fn end_identity(&mut self, rid: u64, true_key: &[u8]) {
        self.finish_row(Some((rid, true_key)));
    }

    fn finish_row(&mut self, truth: Option<(u64, &[u8])>) {
        if self.rng.chance(self.dirt.malformed_row) {
            self.malform();
        }
        self.chunk.csv.push(b'\n');
        self.chunk.rows += 1;
        if let Some((rid, key)) = truth {
            let mut line = Vec::with_capacity(48);
            line.extend_from_slice(self.source.as_bytes());
            line.push(b',');
            line.extend_from_slice(itoa::Buffer::new().format(rid).as_bytes());
            line.push(b',');
            line.extend_from_slice(key);
            line.push(b'\n');
            self.chunk.truth.extend_from_slice(&line);
            if self.rng.chance(self.dirt.duplicate_row) {
                let row = self.chunk.csv[self.row_start..].to_vec();
                self.chunk.csv.extend_from_slice(&row);
                self.chunk.rows += 1;
            }
        }
        self.row_start = self.chunk.csv.len();
        self.first_field = true;
        self.date_field = None;
        self.amount_field = None;
    }

    /// Breaks the row just written in one of the ways real exports break.
    fn malform(&mut self) {
        let row = self.row_start;
        match self.rng.below(4) {
            0 if self.date_field.is_some() => {
                let (s, e) = self.date_field.unwrap_or((row, row));
                self.chunk.csv.splice(s..e, b"2023-02-30".iter().copied());
            }
            1 if self.amount_field.is_some() => {
                let at = self.amount_field.unwrap_or(row);
                self.chunk.csv.insert(at, b'-');
            }
            2 => {
                // Invalid UTF-8 in the middle of the row.
                let mid = row + (self.chunk.csv.len() - row) / 2;
                self.chunk.csv.insert(mid, 0xFF);
            }
            _ => {
                // A lost delimiter: one field too few.
                if let Some(pos) = self.chunk.csv[row..].iter().rposition(|&b| b == b',') {
                    self.chunk.csv.remove(row + pos);
                } else {
                    self.chunk.csv.extend_from_slice(b",extra");
                }
            }
        }
    }
}

/// Makes a name dirty: homophone, traditional characters, stray spaces.
pub fn dirty_name(rng: &mut Rng, d: &DirtRates, s: &mut String) {
    if rng.chance(d.name_homophone) {
        let h = names::homophones();
        let chars: Vec<char> = s.chars().collect();
        let candidates: Vec<usize> = (0..chars.len())
            .filter(|&i| h.contains_key(&chars[i]))
            .collect();
        if !candidates.is_empty() {
            let i = *rng.pick(&candidates);
            let alts = &h[&chars[i]];
            let mut c2 = chars.clone();
            c2[i] = *rng.pick(alts);
            *s = c2.into_iter().collect();
        }
    }
    if rng.chance(d.name_traditional) {
        *s = s
            .chars()
            .map(|c| names::traditional(c).unwrap_or(c))
            .collect();
    }
    if rng.chance(d.name_spacing) {
        let chars: Vec<char> = s.chars().collect();
        let mut t = String::new();
        for (i, c) in chars.iter().enumerate() {
            t.push(*c);
            if i == 0 {
                t.push(if rng.chance(0.5) { ' ' } else { '\u{3000}' });
            }
        }
        *s = t;
    }
}

const CN_DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];

fn cn_small(n: u32, s: &mut String) {
    match n {
        0..=9 => s.push_str(CN_DIGITS[n as usize]),
        10..=19 => {
            s.push('十');
            if n > 10 {
                s.push_str(CN_DIGITS[(n - 10) as usize]);
            }
        }
        _ => {
            s.push_str(CN_DIGITS[(n / 10 % 10) as usize]);
            s.push('十');
            if !n.is_multiple_of(10) {
                s.push_str(CN_DIGITS[(n % 10) as usize]);
            }
        }
    }
}

/// Writes an address: `variant` 0 is the full canonical form, 1 drops the province and city,
/// 2 uses Chinese numerals and 栋, 3 uses the dash form, 4 uses full-width digits.
pub fn write_addr(s: &mut String, a: &Addr, village: u16, variant: u64) {
    use std::fmt::Write as _;
    let district = DIVISIONS[a.district as usize % 9].1;
    if variant != 1 {
        s.push_str("河南省商丘市");
    }
    s.push_str(district);
    if a.rural {
        s.push_str(names::TOWNS[a.road as usize % names::TOWNS.len()]);
        s.push_str(if a.road.is_multiple_of(3) {
            "乡"
        } else {
            "镇"
        });
        s.push_str(names::SURNAMES[village as usize % names::SURNAMES.len()].0);
        s.push_str(names::VILLAGE_SUFFIXES[a.estate as usize % names::VILLAGE_SUFFIXES.len()]);
        s.push('村');
        let _ = write!(s, "{}组{}号", a.unit, a.number);
        return;
    }
    s.push_str(names::ROADS[a.road as usize % names::ROADS.len()]);
    let stems = names::ESTATE_STEMS.len();
    let estate_stem = names::ESTATE_STEMS[a.estate as usize % stems];
    let estate_suffix =
        names::ESTATE_SUFFIXES[a.estate as usize / stems % names::ESTATE_SUFFIXES.len()];
    match variant {
        2 => {
            let _ = write!(s, "{}号{estate_stem}{estate_suffix}", a.number);
            cn_small(u32::from(a.building), s);
            s.push('栋');
            cn_small(u32::from(a.unit), s);
            let _ = write!(s, "单元{}", a.room);
        }
        3 => {
            let _ = write!(
                s,
                "{}号{estate_stem}{estate_suffix}{}-{}-{}",
                a.number, a.building, a.unit, a.room
            );
        }
        4 => {
            let mut t = String::new();
            let _ = write!(
                t,
                "{}号{estate_stem}{estate_suffix}{}号楼{}单元{}室",
                a.number, a.building, a.unit, a.room
            );
            for c in t.chars() {
                s.push(if c.is_ascii_digit() {
                    char::from_u32(c as u32 + 0xFEE0).unwrap_or(c)
                } else {
                    c
                });
            }
        }
        _ => {
            let _ = write!(
                s,
                "{}号{estate_stem}{estate_suffix}{}号楼{}单元{}室",
                a.number, a.building, a.unit, a.room
            );
        }
    }
}

/// The household number of household `h` (GA's 户号): district code + 9 digits.
pub fn household_no(city: &City, h: u32) -> [u8; 15] {
    let hh = &city.households[h as usize];
    let mut out = [b'0'; 15];
    let div = DIVISIONS[hh.addr.district as usize % 9].0;
    let s = format!("{div:06}{h:09}");
    out.copy_from_slice(&s.as_bytes()[..15]);
    out
}

/// The 6-digit division code of a person's hukou.
pub fn hukou_division(city: &City, p: &Person) -> u32 {
    division_code(city.households[p.household as usize].addr.district)
}
