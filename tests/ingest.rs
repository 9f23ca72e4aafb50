//! Ingest as a user runs it: department files and configs in, segments, quarantine and a
//! reconciled summary out; golden normalization; external record-linkage data; no panic on
//! any input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mianshen::ingest::segment::Segment;
use mianshen::ingest::{IngestOptions, ingest_city, ingest_dir, ingest_reader};
use mianshen::source::city::{CityParams, generate_files};
use mianshen::source::config::SourceConfig;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join("fixtures")
}

fn opts() -> IngestOptions {
    IngestOptions {
        batch_rows: 1000,
        progress: false,
    }
}

fn small_city() -> CityParams {
    let mut p = CityParams::new(2_000, 77);
    p.history_months = 18;
    // Enough malformed rows that every kind shows up.
    p.dirt.malformed_row = 0.01;
    p
}

#[test]
fn every_source_reconciles_read_accepted_quarantined() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let generated = generate_files(&small_city(), src.path(), false).unwrap();
    let report = ingest_dir(src.path(), out.path(), &opts()).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.sources.len(), generated.tables.len());
    let mut quarantined = 0;
    for s in &report.sources {
        let t = generated
            .tables
            .iter()
            .find(|t| t.source == s.source)
            .unwrap();
        // Every data line of the file was read: none lost, none invented.
        assert_eq!(s.read, t.rows, "{}: rows read vs rows written", s.source);
        assert_eq!(s.read, s.accepted + s.quarantined, "{}", s.source);
        let seg = Segment::open(
            &out.path()
                .join("segments")
                .join(format!("{}.seg", s.source)),
        )
        .unwrap();
        seg.verify().unwrap();
        assert_eq!(seg.rows(), s.accepted, "{}: segment rows", s.source);
        let mut q = csv::Reader::from_path(
            out.path()
                .join("quarantine")
                .join(format!("{}.csv", s.source)),
        )
        .unwrap();
        let rows: Vec<csv::StringRecord> = q.records().map(|r| r.unwrap()).collect();
        assert_eq!(
            rows.len() as u64,
            s.quarantined,
            "{}: quarantine rows",
            s.source
        );
        for r in &rows {
            assert_eq!(&r[0], s.source);
            assert!(
                r[1].parse::<u64>().unwrap() >= 2,
                "line numbers count the header"
            );
            assert!(!r[2].is_empty() && !r[3].is_empty() && !r[4].is_empty());
        }
        quarantined += s.quarantined;
    }
    assert!(
        quarantined > 100,
        "malformed rows were generated, {quarantined} quarantined"
    );
    let text = report.render();
    assert!(
        text.contains("read = accepted + quarantined for every source: yes"),
        "{text}"
    );
    for reason in [
        "wrong number of fields",
        "not valid UTF-8",
        "negative",
        "not a calendar date",
    ] {
        assert!(
            text.contains(reason),
            "reason {reason:?} missing from\n{text}"
        );
    }
}

#[test]
fn streaming_the_city_ingests_the_same_records_as_the_files() {
    let params = small_city();
    let src = tempfile::tempdir().unwrap();
    let from_files = tempfile::tempdir().unwrap();
    let from_stream = tempfile::tempdir().unwrap();
    generate_files(&params, src.path(), false).unwrap();
    let a = ingest_dir(src.path(), from_files.path(), &opts()).unwrap();
    let b = ingest_city(&params, from_stream.path(), &opts()).unwrap();
    assert!(b.failures.is_empty(), "{:?}", b.failures);
    // Tables run largest first, and are reported in the generator's order.
    let stream = mianshen::source::city::CityStream::new(&params).unwrap();
    let generated: Vec<&str> = stream.tables.iter().map(|t| t.source).collect();
    let reported: Vec<&str> = b.sources.iter().map(|s| s.source.as_str()).collect();
    assert_eq!(reported, generated);
    for s in &a.sources {
        let t = b.sources.iter().find(|x| x.source == s.source).unwrap();
        assert_eq!(
            (s.read, s.accepted, s.quarantined),
            (t.read, t.accepted, t.quarantined),
            "{}",
            s.source
        );
    }
    for source in ["GA.person", "RS.contrib", "DL.account"] {
        let sa = Segment::open(
            &from_files
                .path()
                .join("segments")
                .join(format!("{source}.seg")),
        )
        .unwrap();
        let sb = Segment::open(
            &from_stream
                .path()
                .join("segments")
                .join(format!("{source}.seg")),
        )
        .unwrap();
        for col in sa.schema() {
            match col.ty {
                mianshen::ingest::segment::ColumnType::Int => {
                    assert_eq!(
                        sa.ints(&col.name).unwrap(),
                        sb.ints(&col.name).unwrap(),
                        "{source}.{}",
                        col.name
                    )
                }
                _ => assert_eq!(
                    sa.strings(&col.name).unwrap(),
                    sb.strings(&col.name).unwrap(),
                    "{source}.{}",
                    col.name
                ),
            }
        }
    }
}

fn ingest_fixture(dir: &str) -> (tempfile::TempDir, mianshen::ingest::IngestReport) {
    let out = tempfile::tempdir().unwrap();
    let report = ingest_dir(&fixtures().join(dir), out.path(), &opts()).unwrap();
    (out, report)
}

#[test]
fn golden_normalization_of_one_person_written_many_ways() {
    let (out, report) = ingest_fixture("normalize");
    let s = &report.sources[0];
    assert_eq!(
        (s.read, s.accepted, s.quarantined),
        (8, 4, 4),
        "{}",
        report.render()
    );
    let seg = Segment::open(&out.path().join("segments").join("GOLD.variants.seg")).unwrap();
    let col = |c: &str| seg.strings(c).unwrap();
    assert_eq!(
        col("rid"),
        ["1", "2", "3", "4"].map(|s| Some(s.to_string()))
    );
    let pid = col("pid");
    let status = col("pid.status");
    assert_eq!(pid[0].as_deref(), Some("411402198503070034"));
    assert_eq!(
        pid[1].as_deref(),
        Some("411402198503070034"),
        "15-digit id upgraded"
    );
    assert_eq!(
        status[..4],
        ["valid", "upgraded15", "bad_check", "valid"].map(|s| Some(s.to_string()))
    );
    // Raw kept where it differs from the normalized form.
    assert_eq!(col("pid.raw")[1].as_deref(), Some("411402850307003"));
    assert_eq!(col("pid.raw")[0], None);
    assert_eq!(
        col("name")[..3],
        ["张伟", "张伟", "张伟"].map(|s| Some(s.to_string()))
    );
    assert_eq!(
        col("name")[3].as_deref(),
        Some("章伟"),
        "homophones are not folded at ingest"
    );
    assert_eq!(
        col("gender")[..3],
        ["男", "男", "男"].map(|s| Some(s.to_string()))
    );
    let births = seg.ints("birth_date").unwrap();
    assert!(
        births.iter().all(|b| *b == births[0] && b.is_some()),
        "{births:?}"
    );
    let phones = col("phone");
    assert_eq!(phones[0].as_deref(), Some("13837001234"));
    assert_eq!(phones[1].as_deref(), Some("13837001234"));
    assert_eq!(phones[2].as_deref(), Some("03703221234"));
    assert_eq!(phones[3], None, "missing stays missing");
    for part in [
        "address.road",
        "address.number",
        "address.estate",
        "address.building",
        "address.unit",
        "address.room",
    ] {
        let v = col(part);
        assert_eq!(v[0], v[1], "{part}");
        assert_eq!(v[0], v[2], "{part}");
    }
    assert_eq!(seg.ints("address.region").unwrap()[..3], [Some(411402); 3]);
    assert_eq!(
        seg.ints("amount").unwrap()[..4],
        [Some(123_450), Some(123_450), Some(123_450), Some(0)]
    );
    let months = seg.ints("month").unwrap();
    assert!(months.iter().all(|m| *m == months[0]));
    // The quarantine names line, column and reason.
    let q =
        std::fs::read_to_string(out.path().join("quarantine").join("GOLD.variants.csv")).unwrap();
    assert!(q.contains("GOLD.variants,6,birth_date,"), "{q}");
    assert!(
        q.contains("GOLD.variants,7,amount,\"amount \"\"-5.00\"\" is negative\""),
        "{q}"
    );
    assert!(q.contains("GOLD.variants,8,status,"), "{q}");
    assert!(
        q.contains("GOLD.variants,9,*,\"the row has 3 fields, the header has 10\""),
        "{q}"
    );
}

#[test]
fn a_public_record_linkage_file_ingests_with_only_a_config() {
    let (out, report) = ingest_fixture("febrl");
    let s = &report.sources[0];
    assert_eq!(s.source, "FEBRL.people");
    // rec-4 has 13 May written as 20011305 (impossible); rec-5 is a field short.
    assert_eq!(
        (s.read, s.accepted, s.quarantined),
        (9, 7, 2),
        "{}",
        report.render()
    );
    let seg = Segment::open(&out.path().join("segments").join("FEBRL.people.seg")).unwrap();
    let given = seg.strings("given_name").unwrap();
    let surname = seg.strings("surname").unwrap();
    assert_eq!(given[5].as_deref(), Some("liam"), "trimmed and lowercased");
    assert_eq!(surname[5].as_deref(), Some("patel"));
    assert_eq!(
        seg.strings("postcode").unwrap()[5].as_deref(),
        Some("0800"),
        "postcodes keep leading zeros"
    );
    assert_eq!(
        seg.strings("suburb").unwrap()[5],
        None,
        "missing stays missing"
    );
    let dob = seg.ints("date_of_birth").unwrap();
    assert_eq!(dob[0], dob[1]);
    assert_ne!(
        dob[2], dob[3],
        "a swapped day/month is a different date at ingest"
    );
    assert_eq!(
        seg.strings("soc_sec_id").unwrap()[6].as_deref(),
        Some("3381920")
    );
}

#[test]
fn a_broken_config_fails_that_source_only() {
    let src = tempfile::tempdir().unwrap();
    let d = src.path();
    std::fs::copy(fixtures().join("febrl/people.csv"), d.join("people.csv")).unwrap();
    std::fs::copy(fixtures().join("febrl/people.toml"), d.join("people.toml")).unwrap();
    std::fs::write(
        d.join("broken.toml"),
        "department = \"X\"\ntable = \"t\"\nkind = \"nonsense\"\n",
    )
    .unwrap();
    std::fs::write(d.join("missing_col.toml"), "department = \"Y\"\ntable = \"people\"\nkind = \"event\"\nsubject = \"person\"\nfile = \"people.csv\"\n[[column]]\nname = \"no_such\"\nrole = \"text\"\n").unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = ingest_dir(d, out.path(), &opts()).unwrap();
    assert_eq!(report.sources.len(), 1);
    assert_eq!(report.failures.len(), 2, "{:?}", report.failures);
    let text = report.render();
    assert!(
        text.contains("broken.toml") && text.contains("no_such"),
        "{text}"
    );
}

fn febrl_config() -> SourceConfig {
    SourceConfig::load(&fixtures().join("febrl/people.toml")).unwrap()
}

fn gold_config() -> SourceConfig {
    SourceConfig::load(&fixtures().join("normalize/variants.toml")).unwrap()
}

/// Ingests arbitrary bytes; must never panic, and when it succeeds it must reconcile.
fn ingest_bytes(config: &SourceConfig, bytes: &[u8], batch_rows: usize) {
    let out = tempfile::tempdir().unwrap();
    let o = IngestOptions {
        batch_rows,
        progress: false,
    };
    if let Ok(s) = ingest_reader(
        config,
        Path::new("fuzz.csv"),
        bytes,
        bytes.len() as u64,
        out.path(),
        &o,
        None,
    ) {
        assert_eq!(s.read, s.accepted + s.quarantined);
        let seg = Segment::open(
            &out.path()
                .join("segments")
                .join(format!("{}.seg", config.source_name())),
        )
        .unwrap();
        seg.verify().unwrap();
        assert_eq!(seg.rows(), s.accepted);
    }
}

/// A small valid segment (the golden fixture's), as bytes.
fn golden_segment() -> Vec<u8> {
    let (out, _) = ingest_fixture("normalize");
    std::fs::read(out.path().join("segments").join("GOLD.variants.seg")).unwrap()
}

/// Opens and reads every column of possibly corrupt segment bytes; must never panic.
fn read_everything(bytes: Vec<u8>) {
    let Ok(seg) = Segment::from_bytes(Path::new("fuzz.seg"), bytes) else {
        return;
    };
    let _ = seg.verify();
    for c in seg.schema().to_vec() {
        let _ = seg.ints(&c.name);
        let _ = seg.strings(&c.name);
    }
}

mod no_panic {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn corrupt_segments(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
            let good = golden_segment();
            let mut bad = good.clone();
            for (at, byte) in edits {
                let i = at.index(bad.len());
                bad[i] = byte;
            }
            read_everything(bad);
            read_everything(good[..cut.index(good.len())].to_vec());
        }

        #[test]
        fn random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048), batch in 1usize..50) {
            ingest_bytes(&gold_config(), &bytes, batch);
            ingest_bytes(&febrl_config(), &bytes, batch);
        }

        #[test]
        fn mutations_of_valid_files(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..20),
            which in 0usize..2,
        ) {
            let (config, path) = if which == 0 {
                (gold_config(), fixtures().join("normalize/variants.csv"))
            } else {
                (febrl_config(), fixtures().join("febrl/people.csv"))
            };
            let mut bytes = std::fs::read(path).unwrap();
            for (at, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = at.index(bytes.len());
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    _ => { bytes.remove(i); }
                }
            }
            ingest_bytes(&config, &bytes, 3);
        }
    }
}
