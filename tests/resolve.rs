//! Resolution as a user runs it: ingest a city plus hand-made golden cases, resolve, and check
//! the links against what must happen (homophones, traditional characters, twins, a shared
//! household phone, a 15-digit id, a typo'd id, two valid ids never merged), the accuracy
//! against the generator's truth, key stability across rebuilds, and `eval-links` itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mianshen::ingest::{IngestOptions, ingest_dir};
use mianshen::profile::profile;
use mianshen::resolve::eval::eval_links;
use mianshen::resolve::incremental::add_source;
use mianshen::resolve::{ResolveOptions, Thresholds, resolve_dir};
use mianshen::source::city::{CityParams, generate_files};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join("fixtures")
        .join("resolve")
}

fn opts() -> IngestOptions {
    IngestOptions {
        batch_rows: 4096,
        progress: false,
    }
}

/// A small generated city with the golden fixture beside it, so that the model is estimated
/// on realistic volumes and the golden records are resolved among thousands of others.
fn city_with_fixture(dir: &Path) {
    let mut p = CityParams::new(3_000, 5);
    p.history_months = 14;
    generate_files(&p, dir, false).unwrap();
    let fix = dir.join("FIX");
    std::fs::create_dir_all(&fix).unwrap();
    for f in [
        "person.csv",
        "person.toml",
        "account.csv",
        "account.toml",
        "ent.csv",
        "ent.toml",
    ] {
        std::fs::copy(fixtures().join(f), fix.join(f)).unwrap();
    }
}

/// (source, record id) → entity key, from links.csv.
fn links(out: &Path) -> HashMap<(String, String), String> {
    let text = std::fs::read_to_string(out.join("links.csv")).unwrap();
    let mut map = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.splitn(4, ',').collect();
        map.insert((f[0].to_string(), f[1].to_string()), f[2].to_string());
    }
    map
}

#[test]
fn golden_cases_accuracy_and_stable_keys() {
    let src = tempfile::tempdir().unwrap();
    let ing = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    city_with_fixture(src.path());
    ingest_dir(src.path(), ing.path(), &opts()).unwrap();
    let report = resolve_dir(ing.path(), out.path(), &ResolveOptions::default()).unwrap();
    let l = links(out.path());
    let key = |s: &str, r: &str| {
        l.get(&(s.to_string(), r.to_string()))
            .unwrap_or_else(|| panic!("no link for {s} {r}"))
            .clone()
    };
    let p = |r| key("FIX.person", r);
    let a = |r| key("FIX.account", r);
    // Valid ids are the keys.
    assert_eq!(p("p1"), "411403198503071236");
    // 章伟 for 张伟 (homophone), a Chinese-numeral address and a +86 phone.
    assert_eq!(a("u1"), p("p1"));
    // 陳國華 for 陈国华 (traditional characters), a dash-form address.
    assert_eq!(a("u2"), p("p2"));
    // Twins share a household, a birth date and a phone: the account goes to the one named.
    assert_ne!(p("p3"), p("p4"));
    assert_eq!(a("u3"), p("p4"));
    // A legacy 15-digit id is upgraded and links directly.
    assert_eq!(a("u4"), p("p5"));
    // A typo'd id with nothing else but the name: the valid id one digit away, not the
    // namesake born the same day.
    assert_eq!(a("u5"), p("p6"));
    // Two different valid ids are never merged, however alike the rest.
    assert_ne!(p("p6"), p("p7"));
    // Nobody known: the two accounts of the same stranger cluster under one minted key.
    assert_eq!(a("u6"), a("u7"));
    assert!(a("u6").starts_with('P'), "{}", a("u6"));
    // A residential tariff is a household's. The account has its holder's name, a newer
    // phone and another house in the holder's village; the holder's shop has that phone and
    // the operator's name, which once outweighed the person: the account is never the
    // shop's. The shop's commercial account is the shop's.
    let shop = key("FIX.ent", "e1");
    assert_eq!(shop, "92411423MA45N7P3K1");
    assert_ne!(a("u8"), shop);
    assert_eq!(a("u9"), shop);
    // A commercial account whose USCC of 18 digits fails its check (read as a broken id
    // number by its form): the tariff says it is an enterprise's, and it is one digit from
    // the company's.
    assert_eq!(a("u10"), key("FIX.ent", "e2"));

    // The profile of 张伟: both records, the account's evidence.
    let prof = profile(ing.path(), out.path(), &p("p1")).unwrap();
    assert_eq!(prof.kind, "person");
    let acc = prof
        .records
        .iter()
        .find(|r| r.source == "FIX.account" && r.record_id == "u1")
        .expect("the homophone account is in the profile");
    assert_eq!(acc.method, "placed");
    assert!(acc.evidence.contains("name=same sound"), "{}", acc.evidence);
    assert!(
        acc.fields
            .iter()
            .any(|(k, v)| k == "holder_name" && v == "章伟")
    );
    // A city person: a household relation and events. Not every person of a small city has
    // event records: the first (by key) of those that do, so the test does not depend on the
    // links map's order.
    let mut persons: Vec<&String> = l
        .iter()
        .filter(|((s, _), k)| s == "GA.person" && k.len() == 18)
        .map(|(_, k)| k)
        .collect();
    persons.sort();
    let prof = persons
        .iter()
        .take(200)
        .map(|k| profile(ing.path(), out.path(), k).unwrap())
        .find(|p| !p.events.is_empty())
        .expect("a person with events among the first 200");
    assert!(
        prof.relations
            .iter()
            .any(|r| r.via == "GA.person.household_no" && r.other.contains("household")),
        "{}",
        prof.render()
    );
    assert!(!prof.events.is_empty(), "{}", prof.render());
    assert!(profile(ing.path(), out.path(), "no-such-key").is_err());
    // An insured worker: the employer, from the monthly contributions.
    let worker = l
        .iter()
        .find(|((s, _), k)| s == "RS.insured" && k.len() == 18)
        .map(|(_, k)| k.clone())
        .unwrap();
    let prof = profile(ing.path(), out.path(), &worker).unwrap();
    assert!(
        prof.relations
            .iter()
            .any(|r| !r.incoming && r.via == "RS.contrib.uscc" && r.other.contains("enterprise")),
        "{}",
        prof.render()
    );

    // Accuracy on the generated city, from its truth files plus the fixture's.
    let truth = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src.path().join("truth")).unwrap() {
        let e = e.unwrap().path();
        if e.extension().is_some_and(|x| x == "csv") {
            std::fs::copy(&e, truth.path().join(e.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(fixtures().join("truth.csv"), truth.path().join("FIX.csv")).unwrap();
    let eval = eval_links(truth.path(), &out.path().join("links.csv")).unwrap();
    eprintln!("{}", eval.render());
    assert_eq!(eval.keyed.precision(), 1.0, "keyed pairs must be exact");
    assert!(eval.keyed.f1() >= 0.999, "{}", eval.render());
    assert!(eval.overall.f1() >= 0.97, "{}", eval.render());
    assert!(eval.unkeyed.f1() >= 0.9, "{}", eval.render());
    // Events follow their keys.
    let rows: u64 = report.events.iter().map(|e| e.rows).sum();
    let hit: u64 = report.events.iter().map(|e| e.attributed).sum();
    assert!(
        rows > 100_000 && hit as f64 >= 0.99 * rows as f64,
        "{hit}/{rows}"
    );

    // Rebuild after one department's file changes: every record outside it keeps its key.
    let ss = src.path().join("SS").join("account.csv");
    let text = std::fs::read_to_string(&ss).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || i % 7 != 0)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&ss, kept.join("\n") + "\n").unwrap();
    let ing2 = tempfile::tempdir().unwrap();
    ingest_dir(src.path(), ing2.path(), &opts()).unwrap();
    resolve_dir(ing2.path(), out.path(), &ResolveOptions::default()).unwrap();
    let l2 = links(out.path());
    let mut compared = 0;
    let mut minted = 0;
    for ((source, rid), k) in &l {
        if source.starts_with("SS.") {
            continue;
        }
        let k2 = &l2[&(source.clone(), rid.clone())];
        assert_eq!(k, k2, "{source} {rid} changed key");
        compared += 1;
        minted += usize::from(k.starts_with('P') && k.len() == 17);
    }
    assert!(compared > 10_000 && minted > 0, "{compared} {minted}");
}

#[test]
fn adding_a_source_places_its_records_one_by_one() {
    let src = tempfile::tempdir().unwrap();
    let ing = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    city_with_fixture(src.path());
    // Build without the fixture's accounts, then add them.
    let held = tempfile::tempdir().unwrap();
    for f in ["account.csv", "account.toml"] {
        std::fs::rename(src.path().join("FIX").join(f), held.path().join(f)).unwrap();
    }
    ingest_dir(src.path(), ing.path(), &opts()).unwrap();
    let opts = ResolveOptions {
        skip_events: true,
        ..Default::default()
    };
    resolve_dir(ing.path(), out.path(), &opts).unwrap();
    let before = links(out.path()).len();
    let report = add_source(
        ing.path(),
        out.path(),
        &held.path().join("account.toml"),
        Thresholds::default(),
    )
    .unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.latencies_us.len(), 10);
    let l = links(out.path());
    assert_eq!(l.len(), before + 10);
    let key = |s: &str, r: &str| l[&(s.to_string(), r.to_string())].clone();
    let (p, a) = (|r| key("FIX.person", r), |r| key("FIX.account", r));
    assert_eq!(a("u1"), p("p1"));
    assert_eq!(a("u2"), p("p2"));
    assert_eq!(a("u3"), p("p4"));
    assert_eq!(a("u4"), p("p5"));
    assert_eq!(a("u5"), p("p6"));
    // The second stranger's account finds the first one, added a moment before.
    assert_eq!(a("u6"), a("u7"));
    // The tariff says who holds the account, when placed one by one too.
    let shop = key("FIX.ent", "e1");
    assert_ne!(a("u8"), shop);
    assert_eq!(a("u9"), shop);
    assert_eq!(a("u10"), key("FIX.ent", "e2"));
    // A second addition sees the first: the build and its additions stay in step.
    let again = add_source(
        ing.path(),
        out.path(),
        &held.path().join("account.toml"),
        Thresholds::default(),
    )
    .unwrap();
    assert_eq!(again.records, 10);
    // (Even the strangers are known now.)
    assert_eq!(again.by_key + again.placed, 10, "{}", again.render());
    assert_eq!(again.new_entities, 0);
    // A links file that no longer matches the segments is refused, not trusted.
    let links_path = out.path().join("links.csv");
    let text = std::fs::read_to_string(&links_path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.swap(1, 2);
    std::fs::write(&links_path, lines.join("\n") + "\n").unwrap();
    let e = add_source(
        ing.path(),
        out.path(),
        &held.path().join("account.toml"),
        Thresholds::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("does not match"), "{e}");
}

#[test]
fn eval_links_on_a_hand_made_truth_set() {
    let dir = tempfile::tempdir().unwrap();
    let truth = dir.path().join("truth.csv");
    let links = dir.path().join("links.csv");
    // True clusters: {a1,a2,a3} {b1,b2} {c1}.
    std::fs::write(
        &truth,
        "source,record_id,true_key\nS,a1,A\nS,a2,A\nT,a3,A\nS,b1,B\nT,b2,B\nT,c1,C\n",
    )
    .unwrap();
    // Predicted: {a1,a2} {a3,b1,b2} {c1}; a1 and a2 by key.
    std::fs::write(
        &links,
        "source,record_id,entity_key,kind,confidence,doubtful,method,evidence\n\
         S,a1,X,person,1,0,key,\nS,a2,X,person,1,0,key,\nT,a3,Y,person,0.9,0,placed,\n\
         S,b1,Y,person,0.9,0,placed,\nT,b2,Y,person,0.9,1,placed,\nT,c1,Z,person,1,0,single,\n",
    )
    .unwrap();
    let r = eval_links(&truth, &links).unwrap();
    // True pairs: 3 + 1 = 4; predicted: 1 + 3 = 4; correct: a1a2, b1b2 = 2.
    assert_eq!(r.overall.true_pairs, 8);
    assert_eq!(r.overall.predicted_pairs, 8);
    assert_eq!(r.overall.correct_pairs, 4);
    assert!((r.overall.precision() - 0.5).abs() < 1e-12);
    assert!((r.overall.recall() - 0.5).abs() < 1e-12);
    assert_eq!((r.true_clusters, r.predicted_clusters), (3, 3));
    // Keyed pairs: a1–a2 only, right.
    assert_eq!(r.keyed.f1(), 1.0);
    let s = r.per_source.iter().find(|s| s.group == "S").unwrap();
    assert_eq!(s.records, 3);
    // A links file without the columns is refused with a clear error.
    std::fs::write(&links, "source,record\nS,a1\n").unwrap();
    let e = eval_links(&truth, &links).unwrap_err().to_string();
    assert!(e.contains("entity_key"), "{e}");
}
