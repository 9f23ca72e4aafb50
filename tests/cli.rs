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
    for cmd in ["demo", "generate", "ingest", "inspect"] {
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
    // A second run reuses the generated city.
    let again = mianshen(&["demo", "--persons", "600", "--work", work.to_str().unwrap()]);
    assert!(stdout(&again).contains("already generated"));
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
