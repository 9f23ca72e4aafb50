//! The `mianshen` command as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn mianshen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mianshen"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_explains_every_command_and_flag() {
    let top = mianshen(&["--help"]);
    assert!(top.status.success());
    for cmd in [
        "demo", "generate", "ingest", "inspect", "resolve", "build", "verify", "policies", "match",
        "explain", "whatif", "serve", "hello", "loadgen",
    ] {
        assert!(stdout(&top).contains(cmd), "{cmd} missing from --help");
        let sub = mianshen(&[cmd, "--help"]);
        assert!(sub.status.success(), "{cmd} --help");
    }
    let generate = stdout(&mianshen(&["generate", "--help"]));
    for flag in [
        "--persons",
        "--seed",
        "--out",
        "--history-months",
        "--as-of",
        "--dirt",
        "--clean",
        "--count-only",
    ] {
        assert!(generate.contains(flag), "generate --help lacks {flag}");
    }
    let serve = stdout(&mianshen(&["serve", "--help"]));
    for flag in ["--snapshot", "--listen", "--config", "--data", "--watch"] {
        assert!(serve.contains(flag), "serve --help lacks {flag}");
    }
    let loadgen = stdout(&mianshen(&["loadgen", "--help"]));
    for flag in ["--target", "--mix", "--duration", "--yardstick"] {
        assert!(loadgen.contains(flag), "loadgen --help lacks {flag}");
    }
    let ingest = stdout(&mianshen(&["ingest", "--help"]));
    for flag in [
        "--sources",
        "--out",
        "--generate-city",
        "--persons",
        "--batch-rows",
        "--quiet",
    ] {
        assert!(ingest.contains(flag), "ingest --help lacks {flag}");
    }
}

#[test]
fn generate_then_ingest_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let out = dir.path().join("out");
    let g = mianshen(&[
        "generate",
        "--persons",
        "400",
        "--seed",
        "3",
        "--history-months",
        "12",
        "--out",
        src.to_str().unwrap(),
    ]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    assert!(stdout(&g).contains("GA.person"));
    assert!(src.join("GA").join("person.toml").exists());
    assert!(src.join("truth").join("GA.person.csv").exists());
    let i = mianshen(&[
        "ingest",
        "--sources",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(i.status.success(), "{}", String::from_utf8_lossy(&i.stderr));
    assert!(
        stdout(&i).contains("read = accepted + quarantined for every source: yes"),
        "{}",
        stdout(&i)
    );
    assert!(out.join("summary.csv").exists());
    let seg = out.join("segments").join("GA.person.seg");
    let x = mianshen(&["inspect", seg.to_str().unwrap(), "--rows", "2"]);
    assert!(x.status.success());
    assert!(stdout(&x).contains("pid.status"), "{}", stdout(&x));
}

#[test]
fn demo_generates_and_ingests_a_city() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let o = mianshen(&["demo", "--persons", "600", "--work", work.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(
        text.contains("TOTAL") && text.contains("for every source: yes"),
        "{text}"
    );
    // The demo builds the snapshot and evaluates the whole catalogue.
    assert!(text.contains("bytes/record, generation 1"), "{text}");
    assert!(text.contains("27 policies at as-of 2025-12-31"), "{text}");
    // A second run reuses the generated city.
    let again = mianshen(&["demo", "--persons", "600", "--work", work.to_str().unwrap()]);
    assert!(stdout(&again).contains("already generated"));

    // The snapshot it built answers every policy command.
    let snap = work.join("snapshot");
    let snap = snap.to_str().unwrap();
    let v = mianshen(&["verify", snap]);
    assert!(
        v.status.success() && stdout(&v).contains(": ok: format version 3, generation 2"),
        "{}",
        stdout(&v)
    );
    let m = mianshen(&["match", "--snapshot", snap, "M01", "--limit", "1"]);
    assert!(m.status.success(), "{}", String::from_utf8_lossy(&m.stderr));
    let out = stdout(&m);
    assert!(out.contains("M01  高龄津贴"), "{out}");
    // Where the cold run's time went: M01's five conditions, the three GA.person field columns
    // they read, each named among the slowest.
    let prep = out
        .lines()
        .find(|l| l.starts_with("cold, where the time went: "))
        .unwrap_or_default();
    let parts: Vec<&str> = prep.split(", ").collect();
    let part = |head: &str, count: &str| {
        parts
            .iter()
            .any(|p| p.starts_with(head) && p.ends_with(count))
    };
    assert!(part("where the time went: conditions ", " ms (5)"), "{out}");
    assert!(part("within them field columns ", " ms (3)"), "{out}");
    for named in [
        "M01.old",
        "GA.person.birth_date",
        "GA.person.status",
        "GA.person.hukou_region",
    ] {
        assert!(prep.contains(&format!("{named} ")), "{named}: {out}");
    }
    // The whole catalogue, twice over: counted together, it agrees with every run.
    let all = mianshen(&[
        "match",
        "--snapshot",
        snap,
        "all",
        "--limit",
        "0",
        "--rounds",
        "2",
    ]);
    let alls = stdout(&all);
    assert!(
        all.status.success(),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    assert!(
        alls.contains("counted together (cached conditions, counts only)"),
        "{alls}"
    );
    // Explain the first candidate: it is a candidate, every condition TRUE.
    let key = out
        .lines()
        .skip_while(|l| !l.starts_with("M01 first candidates"))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("a first candidate")
        .to_string();
    let x = mianshen(&["explain", "--snapshot", snap, "M01", &key]);
    let xs = stdout(&x);
    assert!(
        xs.contains(": candidate") && xs.contains("TRUE     old"),
        "{xs}"
    );
    assert!(xs.contains("GA.person.birth_date ="), "{xs}");
    // What if the age threshold rose to 95: fewer candidates, all "newly ineligible".
    let w = mianshen(&["whatif", "--snapshot", snap, "M01", "--set", "min_age=95"]);
    let ws = stdout(&w);
    assert!(
        w.status.success() && ws.contains("newly eligible 0"),
        "{ws}"
    );
    assert!(
        ws.contains("by district:") && ws.contains("excludes the most: `old`"),
        "{ws}"
    );
    // The threshold swept: its saved value (80) counts what the saved version does, and a
    // higher threshold never more.
    let sw = mianshen(&[
        "whatif",
        "--snapshot",
        snap,
        "M01",
        "--sweep",
        "min_age=79..81",
    ]);
    let sws = stdout(&sw);
    assert!(
        sw.status.success(),
        "{}",
        String::from_utf8_lossy(&sw.stderr)
    );
    assert!(sws.contains("`min_age` over 3 values"), "{sws}");
    let count = |label: &str| -> i64 {
        sws.lines()
            .find(|l| l.split_whitespace().next() == Some(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no line {label}: {sws}"))
    };
    assert_eq!(count("80"), count("saved"), "{sws}");
    assert!(
        count("79") >= count("80") && count("80") >= count("81"),
        "{sws}"
    );
    assert!(count("saved") > 0, "{sws}");
    let both = mianshen(&[
        "whatif",
        "--snapshot",
        snap,
        "M01",
        "--sweep",
        "min_age=79..81",
        "--set",
        "min_age=85",
    ]);
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("both set and swept"));
    let bad = mianshen(&["whatif", "--snapshot", snap, "M01", "--set", "no_such=1"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no such parameter"));
    let unknown = mianshen(&["explain", "--snapshot", snap, "M01", "not-a-key"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no entity has the key"));
}

#[test]
fn a_corrupt_snapshot_and_a_broken_policy_are_refused_with_their_location() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/fixtures/snapshot/v2");
    let mut bytes = std::fs::read(fixture.join("snapshot.msnap")).unwrap();
    let path = dir.path().join("snapshot.msnap");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let v = mianshen(&["verify", dir.path().to_str().unwrap()]);
    assert!(!v.status.success());
    let err = String::from_utf8_lossy(&v.stderr);
    assert!(
        err.contains("checksum mismatch in section") || err.contains("malformed"),
        "{err}"
    );

    let pdir = tempfile::tempdir().unwrap();
    std::fs::write(
        pdir.path().join("x.policy"),
        "policy X \"x\" {\n  domain 惠民 subject person lead MZ mode direct article \"a\"\n  when a: GA.person.statu == \"正常\"\n  amount 1\n}\n",
    )
    .unwrap();
    let c = mianshen(&["policies", "check", pdir.path().to_str().unwrap()]);
    assert!(!c.status.success());
    let err = String::from_utf8_lossy(&c.stderr);
    assert!(
        err.contains("x.policy:3:11: unknown field GA.person.statu"),
        "{err}"
    );
    let ok = mianshen(&["policies", "check"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout(&ok).contains("27 policies, 12 relations"),
        "{}",
        stdout(&ok)
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_a_failing_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "this is not a config").unwrap();
    let o = mianshen(&[
        "ingest",
        "--sources",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("o").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("bad.toml"), "{}", stdout(&o));
    let empty = tempfile::tempdir().unwrap();
    let o = mianshen(&[
        "ingest",
        "--sources",
        empty.path().to_str().unwrap(),
        "--out",
        "x",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no source configs"));
    let o = mianshen(&[
        "generate",
        "--persons",
        "0",
        "--out",
        Path::new("x").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("persons"));
    let o = mianshen(&["inspect", "Cargo.toml"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a segment"));
}
