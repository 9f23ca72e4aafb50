//! The policy language and engine as analysts and departments use them: the catalogue checks
//! and every case test passes; static errors name file, line and column; and, on random
//! profiles and random policies, the bitmap engine agrees with a row-by-row evaluation of
//! each entity, including UNKNOWN (missing values, doubtful links) and relations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;

use mianshen::date::Date;
use mianshen::policy::ast::Lit;
use mianshen::policy::ast::Policy;
use mianshen::policy::ast::Tri;
use mianshen::policy::cases::run_cases;
use mianshen::policy::check::{Catalogue, DOMAINS, load_dir, load_texts};
use mianshen::policy::engine::Engine;
use mianshen::policy::eval::{At, Evaluator, NoTrace, Node, RowFilters, V};
use mianshen::policy::scan::AggValues;
use mianshen::policy::schema::Schema;
use mianshen::snapshot::Snapshot;
use mianshen::snapshot::build::{MemColumn, MemTable, MemValues, write_memory};

fn catalogue_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/policies")
}

#[test]
fn the_catalogue_checks_and_every_case_passes() {
    let schema = Schema::of_city();
    let cat = load_dir(&catalogue_dir(), &schema).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    assert!(cat.policies.len() >= 27);
    for d in DOMAINS {
        assert!(
            cat.policies.iter().any(|p| p.policy.domain == d),
            "no policy in {d}"
        );
    }
    for c in &cat.policies {
        let p = &c.policy;
        assert!(!p.article.is_empty() && !p.lead.is_empty(), "{}", p.id);
        assert!(p.amount.is_some(), "{} has no amount", p.id);
        assert!(!p.cases.is_empty(), "{} has no case", p.id);
    }
    let results = run_cases(&cat, &schema).unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.failures.is_empty())
        .map(|r| format!("{} {:?}: {}", r.policy, r.case, r.failures.join("; ")))
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    assert!(results.len() >= 54, "{} cases", results.len());
}

#[test]
fn a_case_with_a_wrong_expectation_fails() {
    let schema = Schema::of_city();
    let rel = std::fs::read_to_string(catalogue_dir().join("relations.policy")).unwrap();
    let text = r#"
policy X01 "test" {
  domain 惠民 subject person lead MZ mode direct article "a"
  when old: age(GA.person.birth_date) >= 80
  amount 10
  case "wrong state" { row GA.person { birth_date = 1930-01-01 } expect old = false }
  case "wrong amount" { row GA.person { birth_date = 1930-01-01 } amount 11 }
  case "right" { row GA.person { birth_date = 1930-01-01 } expect old = true amount 10 }
}"#;
    let files = vec![
        (PathBuf::from("relations.policy"), rel),
        (PathBuf::from("x.policy"), text.to_string()),
    ];
    let cat = load_texts(&files, &schema).unwrap();
    let results = run_cases(&cat, &schema).unwrap();
    let by_name: HashMap<&str, &Vec<String>> = results
        .iter()
        .map(|r| (r.case.as_str(), &r.failures))
        .collect();
    assert!(by_name["wrong state"][0].contains("expected FALSE, got TRUE"));
    assert!(by_name["wrong amount"][0].contains("expected 11, got 10"));
    assert!(by_name["right"].is_empty());
}

/// The diagnostics of one broken policy text, as `line:col: message`.
fn errors(text: &str) -> Vec<String> {
    let schema = Schema::of_city();
    let rel = std::fs::read_to_string(catalogue_dir().join("relations.policy")).unwrap();
    let files = vec![
        (PathBuf::from("relations.policy"), rel),
        (PathBuf::from("bad.policy"), text.to_string()),
    ];
    match load_texts(&files, &schema) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .into_iter()
            .map(|x| {
                assert_eq!(x.file, PathBuf::from("bad.policy"));
                format!("{}: {}", x.pos, x.msg)
            })
            .collect(),
    }
}

const HEAD: &str =
    "policy B \"b\" {\n  domain 惠民 subject person lead MZ mode direct article \"a\"\n";

#[test]
fn static_errors_name_line_and_column() {
    let e = errors(&format!(
        "{HEAD}  when a: GA.person.birthdate > 2000-01-01\n  amount 1\n}}"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("3:11: unknown field GA.person.birthdate"),
        "{e:?}"
    );
    assert!(e[0].contains("did you mean `birth_date`"), "{e:?}");

    let e = errors(&format!(
        "{HEAD}  when a: GA.person.status == 3\n  amount 1\n}}"
    ));
    assert!(
        e[0].starts_with("3:28: cannot compare a string with a number"),
        "{e:?}"
    );

    let e = errors(&format!(
        "{HEAD}  when a: age(GA.person.birth_date) >= min_age\n  amount 1\n}}"
    ));
    assert!(
        e[0].contains("`min_age` is not a declared parameter"),
        "{e:?}"
    );

    let e = errors(&format!(
        "{HEAD}  when a: true\n  amount band age(GA.person.birth_date) {{ 80 .. 90 => 1, 85 .. 100 => 2 }}\n}}"
    ));
    assert!(
        e[0].starts_with("4:58: bands overlap between 85 and 90"),
        "{e:?}"
    );
    let e = errors(&format!(
        "{HEAD}  when a: true\n  amount band age(GA.person.birth_date) {{ 80 .. 90 => 1, 91 .. => 2 }}\n}}"
    ));
    assert!(
        e[0].contains("bands leave a gap between 90 and 91"),
        "{e:?}"
    );

    let e = errors(&format!(
        "{HEAD}  when a: RS.contrib.month > 2020-01-01\n  amount 1\n}}"
    ));
    assert!(e[0].contains("RS.contrib is an event table"), "{e:?}");

    let e = errors(&format!(
        "{HEAD}  when a: SC.ent.status == \"存续\"\n  amount 1\n}}"
    ));
    assert!(
        e[0].contains("SC.ent rows are about enterprises, not persons"),
        "{e:?}"
    );

    let e = errors(&format!(
        "{HEAD}  when a: exists(GA.person)\n  amount \"x\"\n}}"
    ));
    assert!(e[0].starts_with("4:10: the amount is a string"), "{e:?}");

    let e = errors(&format!(
        "{HEAD}  when a: count(members: true) > 1\n  amount 1\n}}"
    ));
    assert!(
        e[0].contains("relation `members` starts from a household, not a person"),
        "{e:?}"
    );

    // Cycles between policies.
    let e = errors(
        "policy P \"p\" { domain 惠民 subject person lead MZ mode direct article \"a\"\n when a: not policy(Q)\n amount 1 }\n\
         policy Q \"q\" { domain 惠民 subject person lead MZ mode direct article \"a\"\n when a: policy(P)\n amount 1 }",
    );
    assert!(e.iter().any(|x| x.contains("cycle: P → Q → P")), "{e:?}");

    // Syntax errors keep their position too.
    let e = errors(&format!("{HEAD}  when a: GA.person.status ==\n}}"));
    assert!(e[0].starts_with("4:1: expected a value"), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// The bitmap engine against a row-by-row evaluator, on random data and random policies.

/// A register row: (person, age, status, flag, doubtful); `None` fields are missing.
type RegisterRow = (u32, Option<i64>, Option<u8>, Option<bool>, bool);

/// A random city: persons with 0–2 register rows and 0–4 events, grouped into households.
#[derive(Debug, Clone)]
struct World {
    persons: usize,
    households: usize,
    register: Vec<RegisterRow>,
    /// Per event row: (person, amount, kind, doubtful).
    events: Vec<(u32, Option<i64>, u8, bool)>,
    /// Per membership row: (person, household, doubtful).
    members: Vec<(u32, u32, bool)>,
}

/// One household of persons registered at these ages (status 正常), no events, no
/// memberships.
fn registered(ages: &[i64]) -> World {
    World {
        persons: ages.len(),
        households: 1,
        register: (0u32..)
            .zip(ages)
            .map(|(i, &age)| (i, Some(age), Some(0), None, false))
            .collect(),
        events: vec![],
        members: vec![],
    }
}

const STATUS: [&str; 3] = ["正常", "迁出", "死亡注销"];
const KIND: [&str; 2] = ["a", "b"];

fn world() -> impl Strategy<Value = World> {
    (4usize..40, 1usize..8).prop_flat_map(|(persons, households)| {
        let p = persons as u32;
        let register = proptest::collection::vec(
            (
                0..p,
                proptest::option::weighted(0.85, 0i64..100),
                proptest::option::weighted(0.9, 0u8..3),
                proptest::option::weighted(0.8, any::<bool>()),
                proptest::bool::weighted(0.1),
            ),
            0..persons * 2,
        );
        let events = proptest::collection::vec(
            (
                0..p,
                proptest::option::weighted(0.9, 0i64..1000),
                0u8..2,
                proptest::bool::weighted(0.1),
            ),
            0..persons * 3,
        );
        let members = proptest::collection::vec(
            (0..p, 0..households as u32, proptest::bool::weighted(0.1)),
            0..persons,
        );
        (register, events, members).prop_map(move |(register, events, members)| World {
            persons,
            households,
            register,
            events,
            members,
        })
    })
}

fn write_world(w: &World, path: &Path) {
    let mut entities: Vec<(String, String)> = (0..w.persons)
        .map(|i| (format!("P{i}"), "person".to_string()))
        .collect();
    entities.extend((0..w.households).map(|h| (format!("H{h}"), "household".to_string())));
    let hh = |h: u32| w.persons as u32 + h;
    let register = MemTable {
        name: "T.reg".into(),
        kind: "identity".into(),
        subject: "person".into(),
        entity: w.register.iter().map(|r| r.0).collect(),
        doubtful: w.register.iter().map(|r| r.4).collect(),
        columns: vec![
            MemColumn {
                name: "age".into(),
                role: "integer".into(),
                values: MemValues::Int(w.register.iter().map(|r| r.1).collect()),
                refs: None,
            },
            MemColumn {
                name: "status".into(),
                role: "category".into(),
                values: MemValues::Dict(
                    w.register
                        .iter()
                        .map(|r| r.2.map(|s| STATUS[s as usize].to_string()))
                        .collect(),
                ),
                refs: None,
            },
            // A birth date derived from the age column: a date field for threshold atoms.
            MemColumn {
                name: "born".into(),
                role: "date".into(),
                values: MemValues::Int(
                    w.register
                        .iter()
                        .map(|r| {
                            r.1.map(|a| i64::from(Date::from_ymd(1925, 1, 1).unwrap().0) + a)
                        })
                        .collect(),
                ),
                refs: None,
            },
            MemColumn {
                name: "flag".into(),
                role: "flag".into(),
                values: MemValues::Int(w.register.iter().map(|r| r.3.map(i64::from)).collect()),
                refs: None,
            },
        ],
    };
    let events = MemTable {
        name: "T.ev".into(),
        kind: "event".into(),
        subject: "person".into(),
        entity: w.events.iter().map(|r| r.0).collect(),
        doubtful: w.events.iter().map(|r| r.3).collect(),
        columns: vec![
            MemColumn {
                name: "amount".into(),
                role: "amount".into(),
                values: MemValues::Int(w.events.iter().map(|r| r.1.map(|a| a * 100)).collect()),
                refs: None,
            },
            // A date derived from the amount: dates for `min` and `max`.
            MemColumn {
                name: "day".into(),
                role: "date".into(),
                values: MemValues::Int(
                    w.events
                        .iter()
                        .map(|r| {
                            r.1.filter(|a| a % 11 != 0)
                                .map(|a| i64::from(Date::from_ymd(2024, 1, 1).unwrap().0) + a)
                        })
                        .collect(),
                ),
                refs: None,
            },
            // A month derived from the amount (24 months, some missing): 2024-01 to 2025-12,
            // so that windows back from the as-of date (2025-12-31) hold some and not others.
            // A small domain, so windowed counts read the table's calendar (two rows in one
            // month make their person irregular, and scanned).
            MemColumn {
                name: "month".into(),
                role: "month".into(),
                values: MemValues::Int(
                    w.events
                        .iter()
                        .map(|r| r.1.filter(|a| a % 29 != 0).map(|a| 2024 * 12 + a % 24))
                        .collect(),
                ),
                refs: None,
            },
            MemColumn {
                name: "kind".into(),
                role: "category".into(),
                values: MemValues::Dict(
                    w.events
                        .iter()
                        .map(|r| Some(KIND[r.2 as usize].to_string()))
                        .collect(),
                ),
                refs: None,
            },
        ],
    };
    let members = MemTable {
        name: "T.mem".into(),
        kind: "reference".into(),
        subject: "person".into(),
        entity: w.members.iter().map(|r| r.0).collect(),
        doubtful: w.members.iter().map(|r| r.2).collect(),
        columns: vec![MemColumn {
            name: "household".into(),
            role: "key".into(),
            values: MemValues::Dict(
                w.members
                    .iter()
                    .map(|r| Some(format!("H{}", r.1)))
                    .collect(),
            ),
            refs: Some(w.members.iter().map(|r| Some(hh(r.1))).collect()),
        }],
    };
    write_memory(path, &entities, &[register, events, members]).unwrap();
}

/// A snapshot of `w` in a temporary folder and a catalogue of `files` (name, text) checked
/// against it.
fn world_catalogue(
    w: &World,
    files: &[(&str, String)],
) -> (tempfile::TempDir, Snapshot, Catalogue) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.msnap");
    write_world(w, &path);
    let snap = Snapshot::open(&path).unwrap();
    let schema = Schema::of_snapshot(&snap);
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(n, t)| (PathBuf::from(n), t.clone()))
        .collect();
    let cat = load_texts(&files, &schema).unwrap_or_else(|d| panic!("{d:?}"));
    (dir, snap, cat)
}

/// `w` with the relations and one policy, its id `id`: the snapshot, the catalogue and the
/// policy.
fn one_policy(w: &World, id: &str, text: &str) -> (tempfile::TempDir, Snapshot, Catalogue, Policy) {
    let (dir, snap, cat) = world_catalogue(
        w,
        &[
            ("r.policy", RELATIONS.to_string()),
            ("p.policy", text.to_string()),
        ],
    );
    let policy = cat.get(id).unwrap().policy.clone();
    (dir, snap, cat, policy)
}

/// A random person-level boolean expression over the world's fields.
fn person_cond() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (0i64..100, 0usize..6).prop_map(|(k, op)| format!(
            "T.reg.age {} {k}",
            ["==", "!=", "<", "<=", ">", ">="][op]
        )),
        (0usize..3).prop_map(|s| format!("T.reg.status == \"{}\"", STATUS[s])),
        (0usize..3, 0usize..3)
            .prop_map(|(a, b)| format!("T.reg.status in {{\"{}\", \"{}\"}}", STATUS[a], STATUS[b])),
        Just("T.reg.flag".to_string()),
        (10i64..90).prop_map(|k| format!("T.reg.age in {k} .. {}", k + 20)),
        Just("is_missing(T.reg.age)".to_string()),
        (0usize..2).prop_map(|k| format!("exists(T.ev where T.ev.kind == \"{}\")", KIND[k])),
        (0i64..4, 0usize..3).prop_map(|(k, op)| format!(
            "count(T.ev where T.ev.amount > 300) {} {k}",
            [">=", "==", "<"][op]
        )),
        (0i64..3000).prop_map(|k| format!("sum(T.ev.amount) >= {k}")),
        (0i64..1000).prop_map(|k| format!("max(T.ev.amount where T.ev.kind == \"a\") > {k}")),
        Just("exists(T.mem)".to_string()),
        // Windows over the month column: counted from the calendar where it is exact.
        (0usize..2, 1i64..30, 0i64..4).prop_map(|(k, n, c)| format!(
            "count(T.ev where T.ev.kind == \"{}\" and T.ev.month within {n} months) >= {c}",
            KIND[k]
        )),
        (1i64..30).prop_map(|n| format!("exists(T.ev where T.ev.month within {n} months)")),
        // A filter whose parts are tabulated (the dictionary field) or not (the wide amounts).
        (0usize..2, 0i64..1000).prop_map(|(k, a)| format!(
            "count(T.ev where T.ev.kind == \"{}\" and not (T.ev.amount > {a})) >= 1",
            KIND[k]
        )),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner.clone().prop_map(|a| format!("not ({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) and ({b})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) or ({b})")),
        ]
    })
}

/// A random household-level condition: quantifiers over members.
fn household_cond() -> impl Strategy<Value = String> {
    (person_cond(), 0usize..4, 0i64..3).prop_map(|(c, q, k)| match q {
        0 => format!("any(members: {c})"),
        1 => format!("all(members: {c})"),
        2 => format!("count(members: {c}) >= {k}"),
        _ => format!("not any(members: {c}) or count(members) == {k}"),
    })
}

const RELATIONS: &str = "relation members of household = person <- T.mem.household\n";

fn policy_text(id: &str, subject: &str, conds: &[String]) -> String {
    let mut s = format!(
        "policy {id} \"random\" {{\n  domain 惠民 subject {subject} lead X mode direct article \"a\"\n"
    );
    for (i, c) in conds.iter().enumerate() {
        s += &format!("  when c{i}: {c}\n");
    }
    // Person amounts read one field (the columnar kernel evaluates them per distinct value):
    // many distinct values (summed per candidate in debug builds) or three (counted per value).
    s += if subject == "person" && conds.len().is_multiple_of(2) {
        "  amount band T.reg.age { .. 30 => 1, 30 .. 60 => T.reg.age * 10, 60 .. => 7 }\n}\n"
    } else if subject == "person" {
        "  amount band T.reg.age { .. 30 => 1.5, 30 .. 60 => 20, 60 .. => 7 }\n}\n"
    } else {
        "  amount 1\n}\n"
    };
    s
}

fn tri_set(t: &roaring::RoaringBitmap, u: &roaring::RoaringBitmap, e: u32) -> Tri {
    if t.contains(e) {
        Tri::True
    } else if u.contains(e) {
        Tri::Unknown
    } else {
        Tri::False
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    #[test]
    fn bitmap_engine_agrees_with_row_by_row_evaluation(
        w in world(),
        pconds in proptest::collection::vec(person_cond(), 1..4),
        hconds in proptest::collection::vec(household_cond(), 1..3),
        shared in person_cond(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.msnap");
        write_world(&w, &path);
        let snap = Snapshot::open(&path).unwrap();
        let schema = Schema::of_snapshot(&snap);
        // Two person policies share a condition, so the second reads it from the cache.
        let mut p1 = pconds.clone();
        p1.push(shared.clone());
        let p2 = vec![shared, "T.reg.age >= 50".to_string()];
        let files = vec![
            (PathBuf::from("r.policy"), RELATIONS.to_string()),
            (PathBuf::from("p1.policy"), policy_text("P1", "person", &p1)),
            (PathBuf::from("p2.policy"), policy_text("P2", "person", &p2)),
            (PathBuf::from("h1.policy"), policy_text("H1", "household", &hconds)),
        ];
        let cat = load_texts(&files, &schema).unwrap_or_else(|d| panic!("{d:?}"));
        let as_of = Date::from_ymd(2025, 12, 31).unwrap();
        let mut engine = Engine::new(&snap, cat.clone(), as_of);
        let mut runs = Vec::new();
        for id in ["P1", "P2", "H1"] {
            let run = engine.run(id, &HashMap::new()).unwrap();
            let policy = &cat.get(id).unwrap().policy;
            // The naive side: compile the same conditions and evaluate each entity alone.
            let mut naive_engine = Engine::new(&snap, cat.clone(), as_of);
            let compiled = naive_engine.compile(policy, &HashMap::new()).unwrap();
            let ev = Evaluator::new(&naive_engine.env);
            let universe = snap.universe(&policy.subject).unwrap();
            let mut candidates = BTreeSet::new();
            let mut to_verify = BTreeSet::new();
            let mut near_miss = BTreeSet::new();
            let mut false_counts = vec![0u64; compiled.conditions.len()];
            let mut sole_blockers = vec![0u64; compiled.conditions.len()];
            for e in 0..snap.entity_count() as u32 {
                let states: Vec<Tri> = compiled
                    .conditions
                    .iter()
                    .map(|(_, n)| ev.tri(n, At::entity(e), &mut NoTrace))
                    .collect();
                for (c, s) in run.conditions.iter().zip(&states) {
                    let got = if universe.contains(e) { tri_set(c.sets.t(), c.sets.u(), e) } else { Tri::False };
                    let want = if universe.contains(e) { *s } else { Tri::False };
                    prop_assert_eq!(got, want, "policy {} condition {} entity {}", id, c.name, e);
                }
                if !universe.contains(e) {
                    continue;
                }
                let falses = states.iter().filter(|s| **s == Tri::False).count();
                if states.iter().all(|s| *s == Tri::True) {
                    candidates.insert(e);
                } else if falses == 0 {
                    to_verify.insert(e);
                }
                if falses == 1 {
                    near_miss.insert(e);
                }
                for (i, st) in states.iter().enumerate() {
                    if *st == Tri::False {
                        false_counts[i] += 1;
                        if falses == 1 {
                            sole_blockers[i] += 1;
                        }
                    }
                }
            }
            // Amounts: the interpreter's value for each candidate, or counted as missing.
            let amount = compiled.amount.as_ref().unwrap();
            let mut want_amounts = Vec::new();
            let mut want_missing = 0;
            for &e in &candidates {
                match ev.val(amount, At::entity(e), &mut NoTrace).v {
                    V::Num(l, h) if l == h && l.is_finite() => want_amounts.push((e, l)),
                    _ => want_missing += 1,
                }
            }
            prop_assert_eq!(&run.amount_list().collect::<Vec<_>>(), &want_amounts, "policy {} amounts", id);
            prop_assert_eq!(run.amount_missing, want_missing);
            // The total: counted per value or summed, against the plain sum.
            let want_total: f64 = want_amounts.iter().map(|a| a.1).sum();
            prop_assert!(
                (run.total - want_total).abs() <= 1e-9 * want_total.abs().max(1.0),
                "policy {} total {} against {}", id, run.total, want_total
            );
            // Totalled while combining (an amount of one field), or from the amounts kept.
            let (total, missing) = run.amounts.total(&run.candidates);
            prop_assert!((run.total - total).abs() <= 1e-9 * total.abs().max(1.0));
            prop_assert_eq!(run.amount_missing, missing);
            prop_assert_eq!(run.candidates.iter().collect::<BTreeSet<_>>(), candidates);
            prop_assert_eq!(run.to_verify.iter().collect::<BTreeSet<_>>(), to_verify);
            prop_assert_eq!(run.near_miss.iter().collect::<BTreeSet<_>>(), near_miss);
            let got: Vec<(u64, u64)> =
                run.conditions.iter().map(|c| (c.false_count, c.sole_blocker)).collect();
            let want: Vec<(u64, u64)> = false_counts.into_iter().zip(sole_blockers).collect();
            prop_assert_eq!(got, want, "policy {} false counts and sole blockers", id);
            runs.push(run);
        }
        // Counted together, block-major, the candidates written out: what each run holds.
        let ps: Vec<_> = ["P1", "P2", "H1"].iter().map(|id| cat.get(id).unwrap().policy.clone()).collect();
        let together = engine.count_policies_with_candidates(&ps, &HashMap::new()).unwrap();
        for (t, run) in together.iter().zip(&runs) {
            prop_assert_eq!(t.candidate_ids.as_ref(), Some(&*run.candidates), "policy {}", t.id);
            prop_assert_eq!(
                (t.candidates, t.to_verify, t.near_miss),
                (run.candidates.len(), run.to_verify.len(), run.near_miss.len())
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// What-ifs on thresholds reuse kept values and field columns across parameter values:
    /// every value gives what a fresh engine evaluating entity by entity gives.
    #[test]
    fn threshold_what_ifs_agree_with_row_by_row_evaluation(
        w in world(),
        ks in proptest::collection::vec(0i64..5, 1..5),
        checkpoints in proptest::bool::ANY,
    ) {
        let text = "policy P3 \"thresholds\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
            param k = 1\n\
            when few: count(T.ev where T.ev.amount > 300) >= k\n\
            when old: T.reg.age >= k * 20\n\
            when rich: sum(T.ev.amount) in k * 500 .. 4000\n\
            amount k * count(T.ev where T.ev.amount > 300) + 1\n}\n";
        let (_dir, snap, cat, policy) = one_policy(&w, "P3", text);
        let as_of = Date::from_ymd(2025, 12, 31).unwrap();
        let mut engine = Engine::new(&snap, cat.clone(), as_of);
        if !checkpoints {
            // Thresholds answered without the columns' checkpoints, as past their budget.
            engine.limit_checkpoints(0);
        }
        for k in ks {
            let set = HashMap::from([("k".to_string(), Lit::Num(k as f64))]);
            let run = engine.run_policy(&policy, &set).unwrap();
            let mut naive = Engine::new(&snap, cat.clone(), as_of);
            let compiled = naive.compile(&policy, &set).unwrap();
            let ev = Evaluator::new(&naive.env);
            let universe = snap.universe("person").unwrap();
            for e in &universe {
                for ((_, n), c) in compiled.conditions.iter().zip(&run.conditions) {
                    prop_assert_eq!(
                        tri_set(c.sets.t(), c.sets.u(), e),
                        ev.tri(n, At::entity(e), &mut NoTrace),
                        "k {} condition {} entity {}", k, c.name, e
                    );
                }
            }
            // The amount reads the kept values of `few`'s aggregate.
            let want = interpreted_amounts(&ev, compiled.amount.as_ref().unwrap(), &run.candidates);
            prop_assert_eq!(&run.amount_list().collect::<Vec<_>>(), &want, "k {} amounts", k);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// What-ifs on an amount's rates and on a threshold that moves the candidates: the
    /// engine keeps the amount's scans and reuses them for candidates within their scope;
    /// every run gives the interpreter's amounts.
    #[test]
    fn amount_what_ifs_agree_with_row_by_row_evaluation(
        w in world(),
        runs in proptest::collection::vec((0i64..4, 1i64..4), 1..6),
    ) {
        let text = "policy P4 \"amounts\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
            param k = 1\n\
            param rate = 1\n\
            when few: count(T.ev where T.ev.amount > 300) >= k\n\
            amount rate * max(T.ev.amount where T.ev.kind == \"a\") + max(T.ev.amount where T.ev.kind == \"b\")\n\
                   + (if exists(T.ev where T.ev.kind == \"a\") then 1 else 2)\n}\n";
        let (_dir, snap, cat, policy) = one_policy(&w, "P4", text);
        let as_of = Date::from_ymd(2025, 12, 31).unwrap();
        let mut engine = Engine::new(&snap, cat.clone(), as_of);
        for (k, rate) in runs {
            let set = HashMap::from([
                ("k".to_string(), Lit::Num(k as f64)),
                ("rate".to_string(), Lit::Num(rate as f64)),
            ]);
            let run = engine.run_policy(&policy, &set).unwrap();
            let mut naive = Engine::new(&snap, cat.clone(), as_of);
            let compiled = naive.compile(&policy, &set).unwrap();
            let ev = Evaluator::new(&naive.env);
            let want = interpreted_amounts(&ev, compiled.amount.as_ref().unwrap(), &run.candidates);
            prop_assert_eq!(&run.amount_list().collect::<Vec<_>>(), &want, "k {} rate {} amounts", k, rate);
            // Recombined from cached conditions and kept scans: the same again.
            engine.forget_results();
            let again = engine.run_policy(&policy, &set).unwrap();
            prop_assert_eq!(&again.amount_list().collect::<Vec<_>>(), &want, "k {} rate {} recombined", k, rate);
        }
    }
}

/// A random numeric amount: aggregates (intervals where rows are doubtful), a field, a
/// difference of dates, under arithmetic (divisions by zero among them), `min`/`max`,
/// `round`, negation and `if` on person conditions (UNKNOWN where links are doubtful).
fn amount_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        (0i64..5).prop_map(|k| k.to_string()),
        (0usize..2).prop_map(|k| format!("max(T.ev.amount where T.ev.kind == \"{}\")", KIND[k])),
        Just("sum(T.ev.amount)".to_string()),
        Just("min(T.ev.amount)".to_string()),
        Just("count(T.ev where T.ev.amount > 300)".to_string()),
        Just("T.reg.age".to_string()),
        Just("(max(T.ev.day) - min(T.ev.day))".to_string()),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone(), 0usize..4)
                .prop_map(|(a, b, op)| format!("({a} {} {b})", ["+", "-", "*", "/"][op])),
            inner.clone().prop_map(|a| format!("(-{a})")),
            (inner.clone(), inner.clone(), any::<bool>())
                .prop_map(|(a, b, m)| format!("{}({a}, {b})", if m { "min" } else { "max" })),
            inner.clone().prop_map(|a| format!("round({a})")),
            (person_cond(), inner.clone(), inner)
                .prop_map(|(c, a, b)| format!("(if {c} then {a} else {b})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Amounts evaluated a chunk of candidates at a time over lanes (`policy::lanes`) are the
    /// interpreter's, candidate by candidate, for any tree of the nodes the lanes know and the
    /// ones they leave to the interpreter; and again when recombined from the kept scans.
    #[test]
    fn amounts_over_lanes_agree_with_the_interpreter(
        w in world(),
        cond in person_cond(),
        amount in amount_expr(),
    ) {
        let text = format!(
            "policy P5 \"lanes\" {{\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
             when c: {cond}\n  amount {amount}\n}}\n"
        );
        let (_dir, snap, cat, policy) = one_policy(&w, "P5", &text);
        let as_of = Date::from_ymd(2025, 12, 31).unwrap();
        let none = HashMap::new();
        let mut engine = Engine::new(&snap, cat.clone(), as_of);
        let run = engine.run_policy(&policy, &none).unwrap();
        let mut naive = Engine::new(&snap, cat, as_of);
        let compiled = naive.compile(&policy, &none).unwrap();
        let ev = Evaluator::new(&naive.env);
        let want = interpreted_amounts(&ev, compiled.amount.as_ref().unwrap(), &run.candidates);
        prop_assert_eq!(&run.amount_list().collect::<Vec<_>>(), &want, "amount {}", amount);
        engine.forget_results();
        let again = engine.run_policy(&policy, &none).unwrap();
        prop_assert_eq!(&again.amount_list().collect::<Vec<_>>(), &want, "amount {} recombined", amount);
    }
}

/// A city with many distinct values in one field (ages up to 40,000 days), so that atoms on it
/// take the columnar kernels' threshold path (binary search over sorted values).
fn wide_world() -> impl Strategy<Value = World> {
    (1200usize..1600).prop_flat_map(|persons| {
        let p = persons as u32;
        proptest::collection::vec(
            (
                0..p,
                proptest::option::weighted(0.95, 0i64..40_000),
                proptest::option::weighted(0.9, 0u8..3),
                proptest::option::weighted(0.8, any::<bool>()),
                proptest::bool::weighted(0.05),
            ),
            persons..persons + persons / 4,
        )
        .prop_map(move |register| World {
            persons,
            households: 1,
            register,
            events: vec![],
            members: vec![],
        })
    })
}

/// The interpreter's amount for each candidate that has an exact one.
fn interpreted_amounts(
    ev: &Evaluator<'_, '_>,
    amount: &Node,
    candidates: &roaring::RoaringBitmap,
) -> Vec<(u32, f64)> {
    candidates
        .iter()
        .filter_map(|e| match ev.val(amount, At::entity(e), &mut NoTrace).v {
            V::Num(l, h) if l == h && l.is_finite() => Some((e, l)),
            _ => None,
        })
        .collect()
}

/// Policy `id`'s condition sets from the engine against the interpreter, person by person.
fn conditions_agree(snap: &Snapshot, cat: &Catalogue, id: &str) -> Result<(), TestCaseError> {
    let policy = cat.get(id).unwrap().policy.clone();
    let as_of = Date::from_ymd(2025, 12, 31).unwrap();
    let mut engine = Engine::new(snap, cat.clone(), as_of);
    let run = engine.run_policy(&policy, &HashMap::new()).unwrap();
    let mut naive = Engine::new(snap, cat.clone(), as_of);
    let compiled = naive.compile(&policy, &HashMap::new()).unwrap();
    let ev = Evaluator::new(&naive.env);
    for e in &snap.universe(&policy.subject).unwrap() {
        for ((_, n), c) in compiled.conditions.iter().zip(&run.conditions) {
            prop_assert_eq!(
                tri_set(c.sets.t(), c.sets.u(), e),
                ev.tri(n, At::entity(e), &mut NoTrace),
                "condition {} entity {}",
                c.name,
                e
            );
        }
    }
    Ok(())
}

/// A city of more entities than one parallel reader's chunk (65,536): calendars and relation
/// indexes are read a chunk of entities per task, from each chunk's first entity's runs, and
/// relation edges placed a block of entities at a time. Persons, then households, straddle
/// the chunks' bounds; the engine's sets must be the interpreter's for every entity.
#[test]
fn readers_split_into_entity_chunks_agree_with_the_interpreter() {
    let persons = 150_000usize;
    let households = 40_000usize;
    let mix = |i: usize, k: usize| (i.wrapping_mul(2_654_435_761) >> 7) % k;
    let w = World {
        persons,
        households,
        register: (0..persons)
            .filter(|i| i % 3 != 0)
            .map(|i| {
                (
                    i as u32,
                    Some(mix(i, 100) as i64),
                    Some((i % 3) as u8),
                    None,
                    i % 41 == 0,
                )
            })
            .collect(),
        events: (0..persons * 2)
            .filter(|i| i % 5 != 0)
            .map(|i| {
                let amount = (mix(i, 23) != 0).then_some(mix(i, 1000) as i64);
                ((i / 2) as u32, amount, (i % 2) as u8, i % 37 == 0)
            })
            .collect(),
        // Persons 65,536 and 131,072, first in their chunks, among the members.
        members: (0..persons)
            .filter(|i| i % 5 != 0)
            .map(|i| (i as u32, mix(i, households) as u32, i % 53 == 0))
            .collect(),
    };
    let text = "policy C1 \"chunks\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
        when recent: count(T.ev where T.ev.month within 12 months) >= 1\n\
        when kind_a: exists(T.ev where T.ev.kind == \"a\" and T.ev.month within 6 months)\n\
        amount 1\n}\n\
        policy C2 \"chunks\" {\n  domain 惠民 subject household lead X mode direct article \"a\"\n\
        when older: any(members: T.reg.age > 60)\n\
        when pair: count(members: exists(T.ev where T.ev.month within 3 months)) >= 2\n\
        amount 1\n}\n";
    let (_dir, snap, cat) = world_catalogue(
        &w,
        &[
            ("r.policy", RELATIONS.to_string()),
            ("p.policy", text.to_string()),
        ],
    );
    assert!(snap.entity_count() > 2 * 65_536);
    conditions_agree(&snap, &cat, "C1").unwrap();
    conditions_agree(&snap, &cat, "C2").unwrap();
    // The interpreter reads the same relation index: the index itself against the rows.
    let as_of = Date::from_ymd(2025, 12, 31).unwrap();
    let mut engine = Engine::new(&snap, cat.clone(), as_of);
    engine.run("C2", &HashMap::new()).unwrap();
    let members = engine
        .env
        .rels
        .iter()
        .find(|r| r.name == "members")
        .unwrap();
    let mut want: Vec<std::collections::BTreeMap<u32, bool>> = vec![Default::default(); households];
    for &(p, h, doubtful) in &w.members {
        let e = snap.entity_of_key(&format!("P{p}")).unwrap().unwrap();
        let d = want[h as usize].entry(e).or_insert(true);
        *d &= doubtful;
    }
    for (h, want) in want.iter().enumerate() {
        let e = snap.entity_of_key(&format!("H{h}")).unwrap().unwrap();
        let got: Vec<(u32, bool)> = members.of(e).to_vec();
        assert_eq!(
            got,
            want.iter().map(|(&p, &d)| (p, d)).collect::<Vec<_>>(),
            "household H{h}"
        );
    }
}

/// Monotone and non-monotone shapes of one field compared with constants.
fn threshold_cond() -> impl Strategy<Value = String> {
    (0usize..12, 0i64..40_000, 0i64..40_000, 0i64..110).prop_map(|(shape, a, b, y)| {
        let (lo, hi) = (a.min(b), a.max(b));
        match shape {
            0 => format!("T.reg.age >= {a}"),
            1 => format!("T.reg.age * -2 + 7 < {}", -a),
            2 => format!("T.reg.age in {lo} .. {hi}"),
            3 => format!("T.reg.age in {{{a}, {b}, {lo}}}"),
            4 => format!("T.reg.age == {a}"),
            5 => format!("T.reg.age != {a}"),
            6 => format!("floor(T.reg.age / 7) <= {}", a / 7),
            7 => format!("max(T.reg.age, 20000) > {a}"),
            8 => format!("age(T.reg.born) >= {y}"),
            9 => format!("month(T.reg.born + {y} years) < month(as_of)"),
            10 => format!("year(T.reg.born) == {}", 1925 + y),
            // Not monotone: every value is evaluated.
            _ => format!("T.reg.age - floor(T.reg.age / 100) * 100 < {}", y),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    #[test]
    fn threshold_kernels_agree_with_row_by_row_evaluation(
        w in wide_world(),
        conds in proptest::collection::vec(threshold_cond(), 1..5),
    ) {
        let (_dir, snap, cat) = world_catalogue(
            &w,
            &[("r.policy", RELATIONS.to_string()), ("t.policy", policy_text("T1", "person", &conds))],
        );
        conditions_agree(&snap, &cat, "T1")?;
    }
}

/// Few persons with long runs of events (thousands of rows each, so that the columnar scan
/// cuts them across windows and tasks), some through doubtful links, some values missing.
fn long_world() -> impl Strategy<Value = World> {
    (6usize..12, 5000usize..9000).prop_flat_map(|(persons, n)| {
        let p = persons as u32;
        let events = proptest::collection::vec(
            (
                prop_oneof![3 => 0..3u32, 1 => 0..p],
                proptest::option::weighted(0.95, 0i64..1000),
                0u8..2,
                proptest::bool::weighted(0.05),
            ),
            n..n + 1,
        );
        events.prop_map(move |events| World {
            persons,
            households: 1,
            register: vec![],
            events,
            members: vec![],
        })
    })
}

/// Aggregates over the event table, their filters tabulated (the kind), interpreted (the wide
/// amounts) or both.
fn aggregate_cond() -> impl Strategy<Value = String> {
    let filter = prop_oneof![
        (0usize..2).prop_map(|k| format!("T.ev.kind == \"{}\"", KIND[k])),
        (0i64..1000).prop_map(|a| format!("T.ev.amount > {a}")),
        (0usize..2, 0i64..1000)
            .prop_map(|(k, a)| format!("not (T.ev.kind == \"{}\" or T.ev.amount <= {a})", KIND[k])),
        (0i64..800)
            .prop_map(|d| format!("T.ev.day < 2024-01-01 + {d} days or is_missing(T.ev.day)")),
        // Two parts over one column, merged into one table, and negations folded into it.
        (0i64..800, 0i64..400).prop_map(|(d, w)| format!(
            "T.ev.day > 2024-01-01 + {d} days and T.ev.day <= 2024-01-01 + {} days",
            d + w
        )),
        (0usize..2, 0usize..2).prop_map(|(k, j)| format!(
            "not (T.ev.kind == \"{}\" or not (T.ev.kind != \"{}\"))",
            KIND[k], KIND[j]
        )),
        // Windows over the month column (a calendar and its irregular persons' scan), alone,
        // with the kind, negated, or TRUE for a missing month.
        (1i64..30).prop_map(|n| format!("T.ev.month within {n} months")),
        (0usize..2, 1i64..30).prop_map(|(k, n)| format!(
            "T.ev.kind == \"{}\" and T.ev.month within {n} months",
            KIND[k]
        )),
        (0usize..2, 1i64..30).prop_map(|(k, n)| format!(
            "not (T.ev.month within {n} months) and T.ev.kind != \"{}\"",
            KIND[k]
        )),
        (1i64..30).prop_map(|n| format!("T.ev.month within {n} months or is_missing(T.ev.month)")),
    ];
    (0usize..6, filter, 0i64..600_000, 0i64..1000, 0i64..3000).prop_map(|(agg, f, s, a, c)| {
        match agg {
            0 => format!("sum(T.ev.amount where {f}) >= {s}"),
            1 => format!("count(T.ev where {f}) >= {c}"),
            2 => format!("min(T.ev.amount where {f}) <= {a}"),
            3 => format!("max(T.ev.day where {f}) >= 2024-01-01 + {a} days"),
            4 => format!("not exists(T.ev where {f})"),
            _ => format!("min(T.ev.day where {f}) < 2024-01-01 + {a} days"),
        }
    })
}

/// Every aggregate of `conds` (conditions of a person policy over `w`), the engine's values
/// against the interpreter's, and the policy's sets and amounts.
fn aggregates_agree(w: &World, conds: &[String]) -> Result<(), TestCaseError> {
    let mut text = policy_text("A1", "person", conds);
    // An amount reading an aggregate: scanned for the candidates.
    text = text.replace(
        "amount band T.reg.age { .. 30 => 1, 30 .. 60 => T.reg.age * 10, 60 .. => 7 }",
        "amount sum(T.ev.amount where T.ev.kind == \"a\") + count(T.ev where T.ev.amount > 500)",
    );
    let (_dir, snap, cat, policy) = one_policy(w, "A1", &text);
    conditions_agree(&snap, &cat, "A1")?;
    let as_of = Date::from_ymd(2025, 12, 31).unwrap();
    let mut engine = Engine::new(&snap, cat.clone(), as_of);
    let run = engine.run_policy(&policy, &HashMap::new()).unwrap();
    let mut naive = Engine::new(&snap, cat.clone(), as_of);
    let compiled = naive.compile(&policy, &HashMap::new()).unwrap();
    let ev = Evaluator::new(&naive.env);
    // Every aggregate's value, scanned and interpreted (counts to the row, sums and
    // extremes bit for bit).
    for (name, n) in &compiled.conditions {
        let filters = RowFilters::of(&naive.env, n);
        let aggs = AggValues::of(&naive.env, n, &filters, None);
        let fast = Evaluator::new(&naive.env).with_aggs(&aggs);
        let mut nodes = Vec::new();
        n.visit(&mut |x| {
            if matches!(x, Node::TableAgg { .. }) {
                nodes.push(x)
            }
        });
        for e in 0..snap.entity_count() as u32 {
            for x in &nodes {
                let (got, want) = (
                    fast.val(x, At::entity(e), &mut NoTrace),
                    ev.val(x, At::entity(e), &mut NoTrace),
                );
                prop_assert_eq!(got.v, want.v, "condition {} entity {}", name, e);
            }
        }
    }
    let want = interpreted_amounts(&ev, compiled.amount.as_ref().unwrap(), &run.candidates);
    prop_assert_eq!(&run.amount_list().collect::<Vec<_>>(), &want);
    Ok(())
}

/// Many persons with a few events each: most persons' windows are counted from the calendar,
/// the others (a doubtful row, a missing month, two rows in one month) scanned.
fn calendar_world() -> impl Strategy<Value = World> {
    (150usize..400).prop_flat_map(|persons| {
        let p = persons as u32;
        let events = proptest::collection::vec(
            (
                0..p,
                proptest::option::weighted(0.99, 0i64..1000),
                0u8..2,
                proptest::bool::weighted(0.02),
            ),
            persons..persons * 2,
        );
        events.prop_map(move |events| World {
            persons,
            households: 1,
            register: vec![],
            events,
            members: vec![],
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    #[test]
    fn aggregate_scans_agree_with_row_by_row_evaluation(
        w in long_world(),
        conds in proptest::collection::vec(aggregate_cond(), 1..4),
    ) {
        aggregates_agree(&w, &conds)?;
    }

    #[test]
    fn calendar_counts_agree_with_row_by_row_evaluation(
        w in calendar_world(),
        conds in proptest::collection::vec(aggregate_cond(), 1..4),
    ) {
        aggregates_agree(&w, &conds)?;
    }
}

/// A column's checkpoints are taken out of the engine's budget; past it, thresholds are
/// answered without them, alike.
#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "a column this small takes checkpoints only with debug assertions (columns::CHECKPOINT_AT)"
)]
fn checkpoints_stay_within_their_budget() {
    let w = registered(&[85, 30, 62]);
    let text = "policy P5 \"t\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
        param k = 1\n  when old: T.reg.age >= k * 20\n  amount 1\n}\n";
    let (_dir, snap, cat) = world_catalogue(&w, &[("p.policy", text.to_string())]);
    let policy = cat.get("P5").unwrap().policy.clone();
    let runs = |limit: Option<usize>| {
        let mut engine = Engine::new(&snap, cat.clone(), Date::from_ymd(2025, 12, 31).unwrap());
        if let Some(bytes) = limit {
            engine.limit_checkpoints(bytes);
        }
        let candidates: Vec<u64> = (1..5)
            .map(|k| {
                let set = HashMap::from([("k".to_string(), Lit::Num(f64::from(k)))]);
                engine.run_policy(&policy, &set).unwrap().candidates.len()
            })
            .collect();
        (candidates, engine.column_bytes())
    };
    let (with, with_bytes) = runs(None);
    let (without, without_bytes) = runs(Some(0));
    assert_eq!(
        with,
        vec![3, 2, 2, 1],
        "ages 85, 30 and 62 against 20, 40, 60 and 80"
    );
    assert_eq!(without, with);
    assert!(
        with_bytes > without_bytes,
        "checkpoints built: {with_bytes} bytes against {without_bytes} without"
    );
}

/// A served engine trims what what-ifs cached but keeps the catalogue's pinned work.
#[test]
fn trimming_keeps_pinned_atoms() {
    let w = World {
        persons: 3,
        households: 1,
        register: vec![
            (0, Some(85), Some(0), None, false),
            (1, Some(30), Some(0), None, false),
        ],
        events: vec![(0, Some(400), 0, false), (0, Some(500), 1, false)],
        members: vec![],
    };
    let text = "policy P4 \"t\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
        param k = 1\n  when few: count(T.ev where T.ev.amount > 300) >= k\n  when old: T.reg.age >= k * 20\n  amount 1\n}\n";
    let (_dir, snap, cat) = world_catalogue(&w, &[("p.policy", text.to_string())]);
    let policy = cat.get("P4").unwrap().policy.clone();
    let mut engine = Engine::new(&snap, cat, Date::from_ymd(2025, 12, 31).unwrap());
    engine.run_all().unwrap();
    engine.pin();
    let pinned = engine.cached();
    for k in 2..8 {
        let set = HashMap::from([("k".to_string(), Lit::Num(f64::from(k)))]);
        assert!(engine.run_policy(&policy, &set).unwrap().computed > 0);
    }
    assert!(engine.cached() > pinned);
    let held = engine.unpinned_bytes();
    assert!(held > 0);
    assert!(!engine.trim(usize::MAX, held), "within the budget");
    assert!(engine.trim(usize::MAX, held - 1), "a byte past it");
    assert_eq!(engine.cached(), pinned, "dropped by bytes");
    for k in 2..8 {
        let set = HashMap::from([("k".to_string(), Lit::Num(f64::from(k)))]);
        assert!(engine.run_policy(&policy, &set).unwrap().computed > 0);
    }
    let before = engine.cached();
    assert!(!engine.trim(usize::MAX, usize::MAX), "within both bounds");
    assert_eq!(engine.cached(), before, "nothing dropped");
    assert!(engine.trim(1, usize::MAX));
    assert_eq!(engine.cached(), pinned, "only the pinned atoms stay");
    assert_eq!(engine.unpinned_bytes(), 0);
    // Past the byte budget, the same.
    for k in 2..5 {
        let set = HashMap::from([("k".to_string(), Lit::Num(f64::from(k)))]);
        engine.run_policy(&policy, &set).unwrap();
    }
    assert!(engine.cached() > pinned);
    // The budget is of the bytes `unpinned_bytes` counts (kept up to date as entries are
    // cached): at it, nothing is dropped; a byte below it, all that is not pinned.
    let held = engine.unpinned_bytes();
    assert!(!engine.trim(usize::MAX, held), "within the budget");
    assert!(engine.trim(usize::MAX, held - 1));
    assert_eq!(engine.cached(), pinned, "dropped by bytes");
    assert_eq!(engine.unpinned_bytes(), 0);
    engine.forget_results();
    assert_eq!(engine.run("P4", &HashMap::new()).unwrap().computed, 0);
    let set = HashMap::from([("k".to_string(), Lit::Num(3.0))]);
    assert!(
        engine.run_policy(&policy, &set).unwrap().computed > 0,
        "dropped, so computed again"
    );
}

/// Relation semantics worked by hand: a doubtful membership makes a member uncertain.
#[test]
fn doubtful_members_are_uncertain() {
    let w = World {
        // Person 2's membership comes from a doubtful link.
        members: vec![(0, 0, false), (1, 0, false), (2, 0, true)],
        ..registered(&[85, 30, 90])
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.msnap");
    write_world(&w, &path);
    let snap = Snapshot::open(&path).unwrap();
    let schema = Schema::of_snapshot(&snap);
    let files = vec![
        (PathBuf::from("r.policy"), RELATIONS.to_string()),
        (
            PathBuf::from("h.policy"),
            policy_text(
                "H",
                "household",
                &[
                    "count(members: T.reg.age >= 80) >= 2".into(),
                    "count(members: T.reg.age >= 80) >= 1".into(),
                    "all(members: T.reg.age >= 80)".into(),
                    "count(members) == 3".into(),
                ],
            ),
        ),
    ];
    let cat = load_texts(&files, &schema).unwrap();
    let mut engine = Engine::new(&snap, cat, Date::from_ymd(2025, 12, 31).unwrap());
    let run = engine.run("H", &HashMap::new()).unwrap();
    let h = 3;
    let states: Vec<Tri> = run
        .conditions
        .iter()
        .map(|c| tri_set(c.sets.t(), c.sets.u(), h))
        .collect();
    // One sure 80+ member and one uncertain one: "at least two" is UNKNOWN, "at least one"
    // TRUE; person 1 (30) is a sure member, so "all" is FALSE; the count is 2..3, so "== 3"
    // is UNKNOWN.
    assert_eq!(
        states,
        vec![Tri::Unknown, Tri::True, Tri::False, Tri::Unknown]
    );
}

/// Regression: a birth date plus 95 years lies past 2100; the shift used to fall back to the
/// birth date itself, making every child "95 or older".
#[test]
fn date_arithmetic_past_2100_is_not_clamped_to_the_input() {
    let schema = Schema::of_city();
    let text = r#"
policy X02 "test" {
  domain 惠民 subject person lead MZ mode direct article "a"
  param min_age = 95
  when old: month(GA.person.birth_date + min_age years) < month(as_of)
  amount 1
  case "a child" { row GA.person { birth_date = 2011-12-01 } expect old = false }
  case "a centenarian" { row GA.person { birth_date = 1925-01-01 } expect old = true }
}"#;
    let files = vec![(PathBuf::from("x.policy"), text.to_string())];
    let cat = load_texts(&files, &schema).unwrap();
    for r in run_cases(&cat, &schema).unwrap() {
        assert!(r.failures.is_empty(), "{}: {:?}", r.case, r.failures);
    }
}

/// A condition reading another policy's result is cached (a second run computes nothing),
/// and when that policy's states change, the condition reads the new states, not the
/// cached ones.
#[test]
fn conditions_reading_a_policy_follow_its_states() {
    let w = registered(&[85, 30, 70]);
    let texts = [
        (
            "a.policy",
            "policy A \"old\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
             when old: T.reg.age >= 60\n  amount 1\n}\n"
                .to_string(),
        ),
        (
            "b.policy",
            "policy B \"not A\" {\n  domain 惠民 subject person lead X mode direct article \"a\"\n\
             when registered: T.reg.age >= 0\n  when not_a: not policy(A)\n  amount 1\n}\n"
                .to_string(),
        ),
    ];
    let (_dir, snap, cat) = world_catalogue(&w, &texts);
    let b = cat.get("B").unwrap().policy.clone();
    let mut engine = Engine::new(&snap, cat, Date::from_ymd(2025, 12, 31).unwrap());
    let none = HashMap::new();
    let first = engine.run("B", &none).unwrap();
    assert_eq!(first.candidates.iter().collect::<Vec<_>>(), vec![1]);
    engine.forget_results();
    assert_eq!(engine.run_policy(&b, &none).unwrap().computed, 0, "cached");
    // A now holds person 1 only: B's candidates are the others.
    let one: roaring::RoaringBitmap = [1u32].into_iter().collect();
    engine.set_policy_states("A", Arc::new(one), Default::default());
    let again = engine.run_policy(&b, &none).unwrap();
    assert_eq!(again.candidates.iter().collect::<Vec<_>>(), vec![0, 2]);
    let counted = engine
        .count_policies(std::slice::from_ref(&b), &none)
        .unwrap();
    assert_eq!(counted[0].candidates, 2);
    assert_eq!(counted[0].candidate_ids, None);
    let with_ids = engine.count_policies_with_candidates(&[b], &none).unwrap();
    assert_eq!(with_ids[0].candidates, 2);
    assert_eq!(with_ids[0].candidate_ids.as_ref(), Some(&*again.candidates));
}
