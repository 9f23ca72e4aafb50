//! The synthetic city: determinism, structure, calibration and ground truth.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use mianshen::ids::{PidStatus, UsccStatus, validate_pid, validate_uscc};
use mianshen::source::city::model::{City, eflag, flag};
use mianshen::source::city::{CityParams, CityStream, DirtRates, generate_files};

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let params = CityParams::new(1_500, 42);
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    generate_files(&params, a.path(), false).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| generate_files(&params, b.path(), false))
        .unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(fa.len() > 100, "{} files", fa.len());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between runs");
    }
    // Another seed is another city.
    let c = tempfile::tempdir().unwrap();
    generate_files(&CityParams::new(1_500, 43), c.path(), false).unwrap();
    assert_ne!(fa["GA/person.csv"], files(c.path())["GA/person.csv"]);
}

#[test]
fn every_department_and_register_is_written_with_a_config() {
    let dir = tempfile::tempdir().unwrap();
    let report = generate_files(&CityParams::new(3_000, 3), dir.path(), false).unwrap();
    let depts: std::collections::BTreeSet<&str> = report
        .tables
        .iter()
        .map(|t| t.source.split('.').next().unwrap())
        .collect();
    for d in [
        "GA", "MZ", "RS", "SC", "GJJ", "SW", "DL", "SS", "RQ", "RL", "YB", "WJ", "CL", "BDC", "JY",
        "NY", "XY", "WL", "KJ", "GX", "GZ", "FG", "JR", "RC",
    ] {
        assert!(depts.contains(d), "department {d} missing");
    }
    for t in &report.tables {
        let (dept, table) = t.source.split_once('.').unwrap();
        let config = dir.path().join(dept).join(format!("{table}.toml"));
        let parsed = mianshen::source::config::SourceConfig::load(&config).unwrap();
        assert_eq!(parsed.source_name(), t.source);
        // Malformed rows may hold invalid UTF-8: count lines on bytes.
        let lines = std::fs::read(dir.path().join(dept).join(format!("{table}.csv")))
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        assert_eq!(lines, t.rows + 1, "{} rows plus header", t.source);
    }
    // The volume that makes the full city ~1.7 billion records (DESIGN.md §9): ~220 per person
    // at scale (BENCHMARKS.md); a 3,000-person city has more, because rare groups have floors.
    let per_person = report.rows() as f64 / 3_000.0;
    assert!(
        (150.0..400.0).contains(&per_person),
        "{per_person:.0} records per person"
    );
}

#[test]
fn ground_truth_keys_are_valid_ids_and_every_identity_record_has_one() {
    let dir = tempfile::tempdir().unwrap();
    let report = generate_files(&CityParams::new(2_000, 9), dir.path(), false).unwrap();
    for t in report.tables.iter().filter(|t| t.truth_rows > 0) {
        let text =
            std::fs::read_to_string(dir.path().join("truth").join(format!("{}.csv", t.source)))
                .unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("source,record_id,true_key"));
        let mut n = 0;
        for line in lines {
            let parts: Vec<&str> = line.split(',').collect();
            assert_eq!(parts.len(), 3, "{line}");
            assert_eq!(parts[0], t.source);
            let key = parts[2].as_bytes();
            let ok = validate_pid(key, None, None).status == PidStatus::Valid
                || validate_uscc(key).status == UsccStatus::Valid
                || (t.source == "GA.household" && key.len() == 15);
            assert!(ok, "{}: bad true key {}", t.source, parts[2]);
            n += 1;
        }
        assert_eq!(n, t.truth_rows);
        // Identity rows are the truth rows plus exact duplicates (and nothing else).
        assert!(
            t.rows >= t.truth_rows && t.rows <= t.truth_rows + t.truth_rows / 50 + 5,
            "{}",
            t.source
        );
    }
}

fn share(city: &City, f: impl Fn(&mianshen::source::city::model::Person) -> bool) -> f64 {
    city.persons.iter().filter(|p| f(p)).count() as f64 / city.persons.len() as f64
}

#[test]
fn statistics_fall_in_the_calibration_ranges() {
    let params = CityParams::new(60_000, 5);
    let stream = CityStream::new(&params).unwrap();
    let city = &stream.city;
    let as_of = params.as_of;
    // Every true id number is valid and unique.
    let mut ids: Vec<[u8; 18]> = city.persons.iter().map(|p| p.pid()).collect();
    for id in &ids {
        assert_eq!(validate_pid(id, None, None).status, PidStatus::Valid);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        city.persons.len(),
        "true id numbers must be unique"
    );

    let alive = |p: &mianshen::source::city::model::Person| p.alive();
    let eighty = share(city, |p| alive(p) && p.age_on(as_of) >= 80);
    assert!((0.025..=0.032).contains(&eighty), "80+: {eighty:.4}");
    let disabled = share(city, |p| p.has(flag::DISABLED));
    assert!(
        (0.022..=0.032).contains(&disabled),
        "disabled: {disabled:.4}"
    );
    let dibao = share(city, |p| p.has(flag::DIBAO));
    assert!((0.025..=0.04).contains(&dibao), "低保: {dibao:.4}");
    let tekun = share(city, |p| p.has(flag::TEKUN));
    assert!((0.003..=0.008).contains(&tekun), "特困: {tekun:.4}");
    let per_household = city.persons.len() as f64 / city.households.len() as f64;
    assert!(
        (2.5..=3.1).contains(&per_household),
        "persons per household {per_household:.2}"
    );
    let ents = city.enterprises.len() as f64 / city.persons.len() as f64;
    assert!(
        (0.095..=0.11).contains(&ents),
        "market entities per person {ents:.3}"
    );
    let individual = city.enterprises.iter().filter(|e| e.kind == 4).count() as f64
        / city.enterprises.len() as f64;
    assert!(
        (0.70..=0.80).contains(&individual),
        "individual businesses {individual:.2}"
    );
    let twins = city.persons.iter().filter(|p| p.has(flag::TWIN)).count();
    assert!(twins > 20, "twins: {twins}");
    // Rare groups: at least the demo floors, at most their full-city share scaled up.
    let count = |f: u32| city.enterprises.iter().filter(|e| e.has(f)).count();
    assert!(
        count(eflag::TRAVEL_AGENCY) >= 6,
        "travel agencies {}",
        count(eflag::TRAVEL_AGENCY)
    );
    assert!(
        count(eflag::HIGH_TECH) >= 12,
        "high-tech {}",
        count(eflag::HIGH_TECH)
    );
    assert!(
        count(eflag::ABOVE_SCALE) >= 20,
        "above-scale {}",
        count(eflag::ABOVE_SCALE)
    );
    let ui = count(eflag::UI_EMPLOYER);
    let full_city_ui = ui as f64 * 7_800_000.0 / 60_000.0;
    assert!(
        (10_000.0..=40_000.0).contains(&full_city_ui),
        "UI employers at full scale ≈ {full_city_ui:.0}"
    );
    // Some people represent several enterprises.
    let mut reps: BTreeMap<u32, u32> = BTreeMap::new();
    for e in &city.enterprises {
        *reps.entry(e.rep).or_default() += 1;
    }
    assert!(
        reps.values().any(|&n| n >= 3),
        "nobody represents three enterprises"
    );
    // Employment exists and lands on insured employers only.
    let employed = city.persons.iter().filter(|p| p.employer > 0).count();
    assert!(employed > 6_000, "employed {employed}");
    assert!(
        city.persons
            .iter()
            .filter(|p| p.employer > 0)
            .all(|p| { city.enterprises[p.employer as usize - 1].has(eflag::UI_EMPLOYER) })
    );
}

/// Shares of id forms in one column of a generated CSV: (15-digit, bad check, total).
fn id_forms(path: &Path, column: usize) -> (usize, usize, usize) {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    let (mut short, mut bad, mut total) = (0, 0, 0);
    for line in text.lines().skip(1) {
        let Some(id) = line.split(',').nth(column) else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        total += 1;
        match validate_pid(id.as_bytes(), None, None).status {
            PidStatus::Upgraded15 => short += 1,
            PidStatus::BadCheck => bad += 1,
            _ => {}
        }
    }
    (short, bad, total)
}

#[test]
fn dirt_appears_at_the_documented_rates() {
    let mut params = CityParams::new(20_000, 4);
    params.history_months = 12;
    let dir = tempfile::tempdir().unwrap();
    generate_files(&params, dir.path(), false).unwrap();
    // id_typo 0.004 + id_transpose 0.002 of records with ids break the check character.
    let (_, bad, total) = id_forms(&dir.path().join("RS").join("insured.csv"), 1);
    let share = bad as f64 / total as f64;
    assert!(
        (0.003..0.010).contains(&share),
        "bad check share {share:.4} of {total}"
    );
    // The 户籍 register is authoritative: no broken ids at all.
    let (short, bad, _) = id_forms(&dir.path().join("GA").join("person.csv"), 1);
    assert_eq!((short, bad), (0, 0));
    // Legacy 15-digit ids in an older feed: id_legacy15 (0.03) of people born before 2000.
    let (short, _, total) = id_forms(&dir.path().join("GJJ").join("account.csv"), 1);
    let share = short as f64 / total as f64;
    assert!(
        (0.01..0.05).contains(&share),
        "15-digit share {share:.4} of {total}"
    );
    // Utility accounts mostly have no id; water accounts have none.
    let ss =
        String::from_utf8_lossy(&std::fs::read(dir.path().join("SS").join("account.csv")).unwrap())
            .into_owned();
    assert!(!ss.lines().next().unwrap().contains("pid"));
    // Exact duplicate rows exist in identity tables.
    let ga = std::fs::read(dir.path().join("GA").join("person.csv")).unwrap();
    let lines: Vec<&[u8]> = ga.split(|&b| b == b'\n').collect();
    let dups = lines
        .windows(2)
        .filter(|w| w[0] == w[1] && !w[0].is_empty())
        .count();
    assert!(
        (10..=120).contains(&dups),
        "{dups} exact duplicates in 20,000 rows"
    );
    // Several date formats in one feed.
    let dl =
        String::from_utf8_lossy(&std::fs::read(dir.path().join("DL").join("account.csv")).unwrap())
            .into_owned();
    for marker in ["年", "/"] {
        assert!(dl.contains(marker), "no {marker:?} date in DL.account");
    }
}

#[test]
fn clean_cities_have_no_dirt() {
    let mut params = CityParams::new(1_000, 8);
    params.dirt = DirtRates::clean();
    params.history_months = 12;
    let dir = tempfile::tempdir().unwrap();
    generate_files(&params, dir.path(), false).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("RS").join("insured.csv")).unwrap();
    for line in csv.lines().skip(1) {
        let pid = line.split(',').nth(1).unwrap();
        assert_eq!(
            validate_pid(pid.as_bytes(), None, None).status,
            PidStatus::Valid,
            "{line}"
        );
    }
}
