//! Vocabulary of the synthetic city: surnames with their national frequencies, given-name
//! characters, roads, estates, towns and villages of Shangqiu's districts, enterprise name
//! parts, and the character variants used to make the data dirty (homophones found through
//! pinyin, traditional forms).

use std::collections::HashMap;
use std::sync::OnceLock;

use pinyin::ToPinyin;

use super::rng::{Rng, cumulative};

/// The 100 commonest surnames with their approximate share per 10,000 people (national
/// figures, Henan close to them). The long tail shares the rest.
pub const SURNAMES: [(&str, u32); 100] = [
    ("王", 710),
    ("李", 700),
    ("张", 670),
    ("刘", 540),
    ("陈", 450),
    ("杨", 310),
    ("赵", 220),
    ("黄", 220),
    ("周", 210),
    ("吴", 200),
    ("徐", 170),
    ("孙", 150),
    ("胡", 130),
    ("朱", 130),
    ("高", 120),
    ("林", 120),
    ("何", 120),
    ("郭", 115),
    ("马", 110),
    ("罗", 80),
    ("梁", 80),
    ("宋", 80),
    ("郑", 78),
    ("谢", 70),
    ("韩", 68),
    ("唐", 66),
    ("冯", 64),
    ("于", 62),
    ("董", 60),
    ("萧", 58),
    ("程", 57),
    ("曹", 56),
    ("袁", 54),
    ("邓", 53),
    ("许", 52),
    ("傅", 50),
    ("沈", 49),
    ("曾", 48),
    ("彭", 47),
    ("吕", 46),
    ("苏", 45),
    ("卢", 44),
    ("蒋", 43),
    ("蔡", 42),
    ("贾", 41),
    ("丁", 40),
    ("魏", 39),
    ("薛", 38),
    ("叶", 37),
    ("阎", 36),
    ("余", 35),
    ("潘", 34),
    ("杜", 33),
    ("戴", 32),
    ("夏", 31),
    ("钟", 30),
    ("汪", 30),
    ("田", 29),
    ("任", 29),
    ("姜", 28),
    ("范", 28),
    ("方", 27),
    ("石", 27),
    ("姚", 26),
    ("谭", 26),
    ("廖", 25),
    ("邹", 25),
    ("熊", 24),
    ("金", 24),
    ("陆", 23),
    ("郝", 23),
    ("孔", 22),
    ("白", 22),
    ("崔", 21),
    ("康", 21),
    ("毛", 20),
    ("邱", 20),
    ("秦", 19),
    ("江", 19),
    ("史", 18),
    ("顾", 18),
    ("侯", 17),
    ("邵", 17),
    ("孟", 16),
    ("龙", 16),
    ("万", 15),
    ("段", 15),
    ("雷", 14),
    ("钱", 14),
    ("汤", 13),
    ("尹", 13),
    ("黎", 12),
    ("易", 12),
    ("常", 12),
    ("武", 11),
    ("乔", 11),
    ("贺", 10),
    ("赖", 10),
    ("龚", 10),
    ("文", 10),
];

/// Given-name characters for men, commonest first.
pub const MALE_CHARS: &[&str] = &[
    "伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "鹏", "华", "飞",
    "鑫", "波", "斌", "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "建", "国",
    "志", "文", "海", "东", "亮", "峰", "成", "新", "红", "春", "永", "庆", "昌", "博", "振", "家",
    "子", "轩", "天", "晨", "睿", "豪", "铭", "泽", "瑞", "德", "书", "怀",
];

/// Given-name characters for women, commonest first.
pub const FEMALE_CHARS: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "英", "燕", "玲", "桂", "兰", "萍", "红",
    "梅", "琳", "雪", "婷", "慧", "莉", "倩", "颖", "琴", "凤", "华", "洁", "晶", "欣", "怡", "佳",
    "雨", "梦", "思", "涵", "悦", "萱", "瑶", "婧", "媛", "薇", "丹", "月", "蕾", "美", "爱", "玉",
    "珍", "翠", "荣", "菊", "彩", "云", "春", "小", "晓", "文", "新", "宁",
];

/// Roads of Shangqiu's urban districts and county towns.
pub const ROADS: &[&str] = &[
    "神火大道",
    "凯旋路",
    "归德路",
    "南京路",
    "长江路",
    "平原路",
    "民主路",
    "团结路",
    "建设路",
    "八一路",
    "文化路",
    "华商大道",
    "睢阳大道",
    "宋城路",
    "北海路",
    "黄河路",
    "解放路",
    "中州路",
    "青年路",
    "胜利路",
    "府前路",
    "振兴路",
    "康庄路",
    "站前路",
    "和平路",
    "人民路",
    "光明路",
    "民生路",
    "新华路",
    "工业路",
    "学院路",
    "中山路",
    "健康路",
    "天峰路",
    "金桥路",
    "丰源路",
];

/// Estate-name stems; a suffix from [`ESTATE_SUFFIXES`] completes them.
pub const ESTATE_STEMS: &[&str] = &[
    "建业森林半岛",
    "锦绣",
    "幸福",
    "阳光",
    "金色",
    "翡翠",
    "凯旋",
    "书香",
    "御景",
    "和谐",
    "华府",
    "东方",
    "世纪",
    "名门",
    "绿城",
    "万象",
    "铂悦",
    "碧桂园",
    "宋城",
    "天润",
    "正商",
    "永威",
    "鑫源",
    "康桥",
    "清华",
    "祥和",
    "兴业",
    "嘉和",
    "丽景",
    "盛世",
];
pub const ESTATE_SUFFIXES: &[&str] = &["小区", "花园", "家园", "苑", "公寓", ""];

/// Town (镇/乡) stems; villages are surname + 庄/寨/楼/集/营 + 村.
pub const TOWNS: &[&str] = &[
    "利民",
    "城郊",
    "刘店",
    "芒山",
    "李口",
    "古宋",
    "郭村",
    "观堂",
    "谢集",
    "双八",
    "平台",
    "水池铺",
    "孙福集",
    "王集",
    "北岭",
    "张阁",
    "韩道口",
    "胡桥",
    "店集",
    "马头",
    "杨集",
];
pub const VILLAGE_SUFFIXES: &[&str] = &["庄", "寨", "楼", "集", "营", "湾", "屯"];

/// Enterprise trade names (字号) and industry words by GB/T 4754 section.
pub const TRADE_NAMES: &[&str] = &[
    "宏达", "鑫源", "华信", "金鼎", "远航", "恒通", "瑞丰", "永盛", "天成", "博远", "中原", "商都",
    "睢阳", "梁园", "豫东", "嘉禾", "新科", "海川", "顺达", "福祥", "聚力", "宏图", "正泰", "同创",
    "汇丰", "东升", "腾飞", "兴旺", "长青", "明珠", "德润", "富民", "安泰",
];

/// (GB/T 4754 code, industry word in names, weight).
pub const INDUSTRIES: &[(&str, &str, u32)] = &[
    ("C13", "食品", 6),
    ("C18", "服装", 4),
    ("C26", "化工", 2),
    ("C30", "建材", 3),
    ("C33", "金属制品", 3),
    ("C34", "机械", 3),
    ("C38", "电器", 2),
    ("C39", "电子科技", 2),
    ("E47", "建筑工程", 6),
    ("F51", "商贸", 14),
    ("F52", "超市", 16),
    ("G54", "物流", 5),
    ("H61", "酒店", 3),
    ("H62", "餐饮", 12),
    ("I65", "信息技术", 4),
    ("K70", "置业", 2),
    ("L72", "商务咨询", 5),
    ("L72T", "旅行社", 0),
    ("M73", "科技研发", 2),
    ("O80", "家政服务", 4),
    ("A01", "农业", 5),
    ("P83", "教育培训", 3),
    ("Q84", "医疗", 1),
    ("R89", "文化传媒", 2),
];

/// Simplified → traditional for characters that occur in the city's names and addresses
/// (the reverse direction of what ingest folds).
pub const TRADITIONAL: &[(char, char)] = &[
    ('张', '張'),
    ('陈', '陳'),
    ('刘', '劉'),
    ('杨', '楊'),
    ('赵', '趙'),
    ('黄', '黃'),
    ('吴', '吳'),
    ('孙', '孫'),
    ('马', '馬'),
    ('罗', '羅'),
    ('郑', '鄭'),
    ('谢', '謝'),
    ('韩', '韓'),
    ('冯', '馮'),
    ('邓', '鄧'),
    ('许', '許'),
    ('苏', '蘇'),
    ('卢', '盧'),
    ('蒋', '蔣'),
    ('贾', '賈'),
    ('叶', '葉'),
    ('钟', '鍾'),
    ('汤', '湯'),
    ('龚', '龔'),
    ('伟', '偉'),
    ('强', '強'),
    ('军', '軍'),
    ('杰', '傑'),
    ('涛', '濤'),
    ('辉', '輝'),
    ('鹏', '鵬'),
    ('华', '華'),
    ('飞', '飛'),
    ('龙', '龍'),
    ('国', '國'),
    ('东', '東'),
    ('庆', '慶'),
    ('丽', '麗'),
    ('艳', '艷'),
    ('娟', '娟'),
    ('霞', '霞'),
    ('兰', '蘭'),
    ('红', '紅'),
    ('梅', '梅'),
    ('凤', '鳳'),
    ('洁', '潔'),
    ('晶', '晶'),
    ('云', '雲'),
    ('荣', '榮'),
    ('区', '區'),
    ('县', '縣'),
    ('号', '號'),
    ('楼', '樓'),
    ('单', '單'),
    ('园', '園'),
    ('门', '門'),
    ('阳', '陽'),
    ('归', '歸'),
    ('宁', '寧'),
    ('业', '業'),
    ('岛', '島'),
    ('凯', '凱'),
    ('旋', '旋'),
    ('长', '長'),
    ('乡', '鄉'),
    ('镇', '鎮'),
];

/// Weighted surname draw (the long tail beyond the top 100 is drawn uniformly from the top
/// 100's last third, which keeps rare names rare).
pub fn surname(rng: &mut Rng) -> u16 {
    static CUM: OnceLock<Vec<u32>> = OnceLock::new();
    let cum = CUM.get_or_init(|| cumulative(SURNAMES.iter().map(|s| s.1)));
    rng.weighted(cum) as u16
}

/// A given name as up to two character indices into the gender's pool (Zipf-like: common
/// characters much more often). `u16::MAX` marks no second character.
pub fn given_name(rng: &mut Rng, male: bool) -> [u16; 2] {
    let pool = if male {
        MALE_CHARS.len()
    } else {
        FEMALE_CHARS.len()
    };
    let draw = |rng: &mut Rng| {
        // Zipf by squaring a uniform: index density falls like 1/sqrt(i).
        let u = rng.unit();
        ((u * u * u) * pool as f64) as u16
    };
    let a = draw(rng);
    if rng.chance(0.3) {
        [a, u16::MAX]
    } else {
        [a, draw(rng)]
    }
}

/// Renders a name from its parts.
pub fn full_name(surname: u16, given: [u16; 2], male: bool, out: &mut String) {
    let pool = if male { MALE_CHARS } else { FEMALE_CHARS };
    out.push_str(SURNAMES[surname as usize % SURNAMES.len()].0);
    for g in given {
        if g != u16::MAX {
            out.push_str(pool[g as usize % pool.len()]);
        }
    }
}

/// Groups of name characters that share a toneless pinyin (张/章, 静/婧/晶), computed once
/// from the `pinyin` crate's readings of every character the generator uses.
pub fn homophones() -> &'static HashMap<char, Vec<char>> {
    static H: OnceLock<HashMap<char, Vec<char>>> = OnceLock::new();
    H.get_or_init(|| {
        // Extra characters that are not in the pools but are classic homophone confusions.
        const EXTRA: &str = "章彰樟璋杨扬阳洋刘留柳陈晨臣辰王汪旺李理里礼丽利莉力立黄皇凰煌吴武伍午周州洲舟徐许旭赵照召婧静晶精敬菁伟威薇玮卫维为玲铃凌灵琳林麟霖明鸣铭名敏闵芳方放坊娜纳那涛滔韬桃军君均钧俊峻骏杰洁捷婕颖莹英瑛鹰";
        let mut by_sound: HashMap<String, Vec<char>> = HashMap::new();
        let mut chars: Vec<char> = Vec::new();
        for s in SURNAMES.iter().map(|s| s.0).chain(MALE_CHARS.iter().copied()).chain(FEMALE_CHARS.iter().copied()) {
            chars.extend(s.chars());
        }
        chars.extend(EXTRA.chars());
        chars.sort_unstable();
        chars.dedup();
        for c in chars {
            if let Some(p) = c.to_pinyin() {
                by_sound.entry(p.plain().to_string()).or_default().push(c);
            }
        }
        let mut map = HashMap::new();
        for group in by_sound.values() {
            if group.len() > 1 {
                for &c in group {
                    map.insert(c, group.iter().copied().filter(|&o| o != c).collect());
                }
            }
        }
        map
    })
}

/// The traditional form of a character, if the city's vocabulary has one.
pub fn traditional(c: char) -> Option<char> {
    TRADITIONAL
        .iter()
        .find(|t| t.0 == c)
        .map(|t| t.1)
        .filter(|&t| t != c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::normalize::to_simplified;

    #[test]
    fn homophone_groups_exist() {
        let h = homophones();
        assert!(h.get(&'张').is_some_and(|g| g.contains(&'章')));
        assert!(h.get(&'静').is_some_and(|g| g.contains(&'婧')));
    }

    #[test]
    fn every_traditional_form_folds_back() {
        for &(s, t) in TRADITIONAL {
            assert_eq!(to_simplified(&t.to_string()), s.to_string(), "{t} → {s}");
        }
    }

    #[test]
    fn common_names_collide() {
        let mut r = Rng::new(1, 2, 3);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..20_000 {
            let male = r.chance(0.5);
            let mut s = String::new();
            full_name(surname(&mut r), given_name(&mut r, male), male, &mut s);
            *seen.entry(s).or_insert(0) += 1;
        }
        let max = seen.values().max().copied().unwrap_or(0);
        assert!(max >= 10, "the commonest name occurs {max} times in 20k");
    }
}
