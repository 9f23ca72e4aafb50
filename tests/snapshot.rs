//! Snapshots as a user builds and reads them: `build` from sources, read back every table
//! against the segments it came from, references and indexes against a row-by-row scan, the
//! key map, generations, the committed fixture of each format version, and corruption:
//! every flipped byte and every truncation is detected, and no bytes make `open` panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use mianshen::ingest::segment::Segment;
use mianshen::pipeline::{Input, build};
use mianshen::snapshot::column::Value;
use mianshen::snapshot::{FILE_NAME, Snapshot};
use mianshen::source::city::{CityParams, generate_files};

fn fixture(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/fixtures/snapshot")
        .join(format!("v{version}"))
}

/// Reads everything reachable from a snapshot through its accessors, without trusting it.
fn touch_everything(s: &Snapshot) {
    for e in 0..s.entity_count().min(50) as u32 {
        let _ = (s.kind(e), s.key(e));
    }
    let _ = s.entity_of_key("411403198503071236");
    let _ = s.universe("person");
    for info in s.tables() {
        let Ok(t) = s.table(&info.name) else { continue };
        let _ = t.rows_of(0);
        let _ = t.runs().take(50).count();
        let _ = t.doubtful();
        for c in &info.columns {
            if let Ok(col) = t.column(&c.name) {
                for r in 0..col.rows().min(50) {
                    let _ = col.value(r);
                }
                if let Some(v) = col.dict().first() {
                    let _ = t.entities_with(&c.name, v);
                }
            }
            if let Ok(r) = t.reference(&c.name) {
                let _ = r.int(0);
            }
        }
    }
}

#[test]
fn committed_fixtures_of_every_version_open_and_verify() {
    use mianshen::snapshot::container::{FORMAT_VERSION, OLDEST_SUPPORTED};
    for version in OLDEST_SUPPORTED..=FORMAT_VERSION {
        committed_fixture_opens_and_verifies(version);
    }
}

fn committed_fixture_opens_and_verifies(version: u32) {
    let s = Snapshot::open(&fixture(version)).unwrap();
    s.verify().unwrap();
    assert_eq!(s.container().version(), version);
    assert_eq!(s.generation(), 1);
    assert_eq!(s.tables().len(), 2);
    let e = s.entity_of_key("411403198503071236").unwrap().unwrap();
    assert_eq!(s.kind(e), Some("person"));
    let person = s.table("FIX.person").unwrap();
    let rows = person.rows_of(e);
    assert!(!rows.is_empty());
    let name = person.column("name").unwrap();
    assert!(
        rows.clone()
            .any(|r| name.text(r).is_some_and(|t| t == "张伟"))
    );
    assert!(s.meta("built_at").is_some());
    assert!(s.meta("resolver_version").unwrap().starts_with("mianshen"));
    touch_everything(&s);
}

#[test]
fn build_reads_back_what_the_sources_hold() {
    let dir = tempfile::tempdir().unwrap();
    let sources = dir.path().join("sources");
    let mut p = CityParams::new(2_000, 11);
    p.history_months = 13;
    generate_files(&p, &sources, false).unwrap();
    let out = dir.path().join("snap");
    let work = dir.path().join("work");
    let summary = build(&Input::Sources(sources), &out, &work, false).unwrap();
    assert_eq!(summary.snapshot.generation, 1);
    assert!(summary.snapshot.records() > 100_000);
    let s = Snapshot::open(&out).unwrap();
    s.verify().unwrap();

    // Every entity's key finds it again, with and without the fence posts (a server's
    // index), and the index knows each entity's kind.
    let fenced = s.keys().unwrap().fenced();
    for e in 0..s.entity_count() as u32 {
        let key = s.key(e).unwrap().to_string();
        assert_eq!(s.entity_of_key(&key).unwrap(), Some(e), "key {key}");
        assert_eq!(fenced.entity_of(&key), Some(e), "key {key}");
        assert_eq!(fenced.key(e), Some(key.as_str()));
        assert_eq!(fenced.kind(e), s.kind(e));
    }
    for missing in ["no such key", "", "411403198503071236X"] {
        assert_eq!(s.entity_of_key(missing).unwrap(), None);
        assert_eq!(fenced.entity_of(missing), None);
    }
    let persons = s.universe("person").unwrap();
    let households = s.universe("household").unwrap();
    let enterprises = s.universe("enterprise").unwrap();
    assert_eq!(
        persons.len() + households.len() + enterprises.len(),
        s.entity_count() as u64
    );

    // Every table holds its segment's rows: the same multiset of values per column.
    for info in s.tables() {
        let seg = Segment::open(
            &work
                .join("ingested/segments")
                .join(format!("{}.seg", info.name)),
        )
        .unwrap();
        assert_eq!(info.rows as u64, seg.rows(), "{}", info.name);
        let t = s.table(&info.name).unwrap();
        for c in &info.columns {
            let col = t.column(&c.name).unwrap();
            let mut ours: Vec<String> = (0..info.rows)
                .map(|r| match col.value(r) {
                    Value::Missing => "∅".to_string(),
                    Value::Int(i) => i.to_string(),
                    Value::Str(s) => s.to_string(),
                })
                .collect();
            let mut theirs: Vec<String> = if c.ty == "int" {
                seg.ints(&c.name)
                    .unwrap()
                    .into_iter()
                    .map(|v| v.map_or("∅".into(), |v| v.to_string()))
                    .collect()
            } else {
                seg.strings(&c.name)
                    .unwrap()
                    .into_iter()
                    .map(|v| v.unwrap_or_else(|| "∅".into()))
                    .collect()
            };
            ours.sort();
            theirs.sort();
            assert_eq!(ours, theirs, "{}.{}", info.name, c.name);
        }
        // Runs cover the attributed rows exactly once, in entity order.
        let mut next = 0;
        let mut last = None;
        for (e, rows) in t.runs() {
            assert_eq!(rows.start, next);
            assert!(last < Some(e));
            assert_eq!(t.rows_of(e), rows.clone());
            next = rows.end;
            last = Some(e);
        }
        assert_eq!(next, info.attributed);
    }

    // Invoices' tax is the amount × 13%, and the build found it: one of the two is stored as
    // a prediction from the other (and read back above like any column).
    let invoice = s.tables().iter().find(|t| t.name == "SW.invoice").unwrap();
    let predicted: Vec<&str> = invoice
        .columns
        .iter()
        .filter(|c| c.predicted)
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        predicted == ["amount"] || predicted == ["tax"],
        "{predicted:?}"
    );

    // A person's 户籍 row carries its own id number, and its household number resolves to
    // the household entity with that key.
    let ga = s.table("GA.person").unwrap();
    let pid = ga.column("pid").unwrap();
    let hh = ga.column("household_no").unwrap();
    let hh_ref = ga.reference("household_no").unwrap();
    let mut checked = 0;
    for (e, rows) in ga.runs() {
        for r in rows {
            if s.identified().unwrap().contains(e)
                && let Some(p) = pid.text(r)
            {
                assert_eq!(Some(p.to_string().as_str()), s.key(e));
            }
            if let Some(h) = hh_ref.int(r) {
                assert_eq!(s.kind(h as u32), Some("household"));
                let n = hh.text(r).map(|t| t.to_string());
                assert_eq!(s.key(h as u32), n.as_deref());
                checked += 1;
            }
        }
    }
    assert!(checked > 1_000);

    // The runs, decoded a block of 1,024 at a time, are each entity's rows as looked up one
    // by one, and cover the attributed rows.
    let runs: Vec<_> = ga.runs().collect();
    assert_eq!(runs.len(), ga.run_count());
    assert!(
        runs.len() > 1024,
        "{} runs: more than one block",
        runs.len()
    );
    assert!(
        runs.windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1.end == w[1].1.start)
    );
    for (e, rows) in &runs {
        assert_eq!(ga.rows_of(*e), *rows, "entity {e}");
    }
    assert_eq!(
        runs.iter().map(|(_, r)| r.len()).sum::<usize>(),
        ga.info.attributed
    );

    // Equality indexes agree with a scan of the rows.
    let status = ga.column("status").unwrap();
    let rows_entities = ga.row_entities();
    for value in status.dict() {
        let scanned: BTreeSet<u32> = (0..ga.info.rows)
            .filter(|&r| status.str(r) == Some(value))
            .filter_map(|r| rows_entities[r])
            .collect();
        let indexed: BTreeSet<u32> = ga.entities_with("status", value).unwrap().iter().collect();
        assert_eq!(scanned, indexed, "GA.person.status = {value}");
    }
    assert!(
        ga.entities_with("status", "no such value")
            .unwrap()
            .is_empty()
    );

    // Export: every row with its entity and doubtful flag, dates as the departments write them.
    let exported = dir.path().join("export");
    let files = mianshen::snapshot::export::export(&s, &["GA.person".into()], &exported).unwrap();
    assert_eq!(files[0], ("GA.person.csv".to_string(), ga.info.rows));
    assert_eq!(files[1], ("entities.csv".to_string(), s.entity_count()));
    let mut csv = csv::Reader::from_path(exported.join("GA.person.csv")).unwrap();
    let at = |name: &str, h: &csv::StringRecord| h.iter().position(|x| x == name).unwrap();
    let headers = csv.headers().unwrap().clone();
    let (birth_at, status_at) = (at("birth_date", &headers), at("status", &headers));
    // A column that names entities is followed by the entity it resolved to.
    let household_at = at("household_no_entity", &headers);
    assert_eq!(headers.get(household_at - 1), Some("household_no"));
    let household = ga.reference("household_no").unwrap();
    let birth = ga.column("birth_date").unwrap();
    let doubtful = ga.doubtful().unwrap();
    let mut rows = 0;
    for (r, rec) in csv.records().enumerate() {
        let rec = rec.unwrap();
        assert_eq!(rec[0].parse::<u32>().ok(), rows_entities[r], "row {r}");
        assert_eq!(&rec[1] == "1", doubtful.contains(r as u32), "row {r}");
        let want = birth
            .int(r)
            .map(|d| mianshen::date::Date(d as i32).to_string());
        assert_eq!(rec[birth_at], want.unwrap_or_default(), "row {r}");
        assert_eq!(&rec[status_at], status.str(r).unwrap_or(""), "row {r}");
        assert_eq!(rec[household_at].parse().ok(), household.int(r), "row {r}");
        rows += 1;
    }
    assert_eq!(rows, ga.info.rows);

    // Provenance: as-of per source.
    assert_eq!(s.meta("as_of.GA.person"), Some("2025-12-31"));

    // A second build into the same folder is the next generation.
    let again = build(
        &Input::Built {
            ingested: work.join("ingested"),
            resolved: work.join("resolved"),
        },
        &out,
        &work,
        false,
    )
    .unwrap();
    assert_eq!(again.snapshot.generation, 2);
    assert_eq!(Snapshot::open(&out).unwrap().generation(), 2);
    let names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "work")
        .collect();
    assert_eq!(
        names,
        vec![FILE_NAME.to_string()],
        "no temporary files left"
    );
}

/// A tiny xorshift so that the positions are reproducible without a dependency.
fn positions(seed: u64, n: usize, max: usize) -> Vec<usize> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max as u64) as usize
        })
        .collect()
}

#[test]
fn flipped_bytes_and_truncations_are_detected() {
    let bytes = std::fs::read(fixture(1).join(FILE_NAME)).unwrap();
    // Every byte of the fixture (5 KB): each flip fails open or verify, naming a section.
    let mut sections_named: HashMap<String, usize> = HashMap::new();
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5a;
        match Snapshot::from_bytes(b) {
            Err(_) => {}
            Ok(s) => {
                let e = s
                    .verify()
                    .expect_err(&format!("flip at {i} went unnoticed"));
                if let mianshen::error::SnapshotError::Checksum { section, .. } = e {
                    *sections_named.entry(section).or_default() += 1;
                }
            }
        }
    }
    assert!(
        sections_named.len() > 20,
        "verify names the section at fault"
    );
    for n in 0..bytes.len() {
        assert!(
            Snapshot::from_bytes(bytes[..n].to_vec()).is_err(),
            "truncated to {n}"
        );
    }
}

#[test]
fn open_never_panics_on_damaged_bytes() {
    let bytes = std::fs::read(fixture(1).join(FILE_NAME)).unwrap();
    for (k, at) in positions(7, 4_000, bytes.len()).into_iter().enumerate() {
        let mut b = bytes.clone();
        b[at] = (k * 37) as u8;
        for extra in positions(k as u64 + 1, k % 4, bytes.len()) {
            b[extra] ^= 0xff;
        }
        // Damaged but structurally plausible files open; reading them must not panic.
        if let Ok(s) = Snapshot::from_bytes(b) {
            touch_everything(&s);
        }
    }
    for len in [0, 7, 8, 16, 47, 48, 100] {
        assert!(Snapshot::from_bytes(vec![0u8; len]).is_err());
    }
    let mut garbage = b"MSSNAPSH".to_vec();
    garbage.extend(positions(3, 500, 256).into_iter().map(|x| x as u8));
    assert!(Snapshot::from_bytes(garbage).is_err());
}
