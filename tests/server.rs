//! The gRPC server as its users call it: a real server on 127.0.0.1:0 serving a small city's
//! snapshot, real tonic clients with bearer tokens. Every RPC, the auth matrix, masking and
//! audit, hot reload under load with zero failed requests, refusal of a corrupt snapshot, and
//! (with the binary) SIGTERM and a kill -9 during workflow writes that loses no acknowledged
//! step.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use mianshen::date::Date;
use mianshen::pipeline::{Input, build};
use mianshen::policy::ast::Tri;
use mianshen::server::config::ServerConfig;
use mianshen::server::pb::v1 as pb;
use mianshen::server::{Running, ServeOptions, start};
use mianshen::source::city::CityParams;

const CONFIG: &str = r#"
[[tokens]]
name = "t-admin"
token = "test-admin-token-0000"
role = "admin"
department = "DSJ"

[[tokens]]
name = "t-analyst"
token = "test-analyst-token-000"
role = "analyst"
department = "FG"

[[tokens]]
name = "t-hotline"
token = "test-hotline-token-000"
role = "hotline"
department = "12345"

[[tokens]]
name = "t-supervisor"
token = "test-supervisor-token-0"
role = "supervisor"
department = "DC"

[[tokens]]
name = "t-mz"
token = "test-mz-service-token-0"
role = "service"
department = "MZ"

[[tokens]]
name = "t-rs"
token = "test-rs-service-token-0"
role = "service"
department = "RS"
"#;

const ADMIN: &str = "test-admin-token-0000";
const ANALYST: &str = "test-analyst-token-000";
const HOTLINE: &str = "test-hotline-token-000";
const SUPERVISOR: &str = "test-supervisor-token-0";
const MZ: &str = "test-mz-service-token-0";
const RS: &str = "test-rs-service-token-0";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh folder under cargo's target tmp dir. Folders of earlier runs (whose process is
/// gone) are removed on first use, so runs do not pile up snapshots on the disk.
fn scratch() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let root = ROOT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("server-tests");
        for old in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let pid = old.file_name().to_string_lossy().into_owned();
            if !Path::new("/proc").join(&pid).exists() {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        base.join(std::process::id().to_string())
    });
    let dir = root.join(NEXT.fetch_add(1, Ordering::Relaxed).to_string());
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small city built once per test binary: `(snapshot dir, work dir)`; the work dir keeps
/// the ingested and resolved builds, so that another generation is cheap to write.
fn city() -> &'static (PathBuf, PathBuf) {
    static CITY: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    CITY.get_or_init(|| {
        let dir = scratch();
        let (snap, work) = (dir.join("snapshot"), dir.join("work"));
        build(
            &Input::City(CityParams::new(4000, 20_251_231)),
            &snap,
            &work,
            false,
        )
        .unwrap();
        (snap, work)
    })
}

/// A copy of the city's snapshot in a folder of its own.
fn snapshot_copy() -> PathBuf {
    let dir = scratch().join("snapshot");
    std::fs::create_dir_all(&dir).unwrap();
    let file = mianshen::snapshot::FILE_NAME;
    std::fs::copy(city().0.join(file), dir.join(file)).unwrap();
    dir
}

fn options(snapshot: PathBuf, data: PathBuf) -> ServeOptions {
    ServeOptions {
        snapshot,
        listen: "127.0.0.1:0".parse().unwrap(),
        config: ServerConfig::parse(CONFIG, "test").unwrap(),
        catalogue: root().join("datasets/policies"),
        as_of: Date::from_ymd(2025, 12, 31).unwrap(),
        data,
    }
}

async fn serve() -> (Running, PathBuf) {
    let data = scratch();
    let running = start(options(snapshot_copy(), data.clone())).await.unwrap();
    (running, data)
}

#[derive(Clone)]
struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            r.metadata_mut().insert("authorization", v.clone());
        }
        Ok(r)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

struct Clients {
    matching: pb::match_client::MatchClient<Authed>,
    whatif: pb::what_if_client::WhatIfClient<Authed>,
    eligibility: pb::eligibility_client::EligibilityClient<Authed>,
    profiles: pb::profiles_client::ProfilesClient<Authed>,
    workflow: pb::workflow_client::WorkflowClient<Authed>,
    supervision: pb::supervision_client::SupervisionClient<Authed>,
    admin: pb::admin_client::AdminClient<Authed>,
}

async fn channel(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

impl Clients {
    /// An eligibility lookup that must succeed.
    async fn check(&mut self, req: pb::EligibilityRequest) -> pb::EligibilityReply {
        self.eligibility.check(req).await.unwrap().into_inner()
    }
}

async fn clients(addr: std::net::SocketAddr, token: Option<&str>) -> Clients {
    let ch = channel(addr).await;
    let b = Bearer(token.map(|t| format!("Bearer {t}").parse().unwrap()));
    Clients {
        matching: pb::match_client::MatchClient::with_interceptor(ch.clone(), b.clone()),
        whatif: pb::what_if_client::WhatIfClient::with_interceptor(ch.clone(), b.clone()),
        eligibility: pb::eligibility_client::EligibilityClient::with_interceptor(
            ch.clone(),
            b.clone(),
        ),
        profiles: pb::profiles_client::ProfilesClient::with_interceptor(ch.clone(), b.clone()),
        workflow: pb::workflow_client::WorkflowClient::with_interceptor(ch.clone(), b.clone()),
        supervision: pb::supervision_client::SupervisionClient::with_interceptor(
            ch.clone(),
            b.clone(),
        ),
        admin: pb::admin_client::AdminClient::with_interceptor(ch, b),
    }
}

/// Every entity of a policy's set, streamed with keys: `(entities, keys, amounts)`.
async fn stream(
    c: &mut Clients,
    policy: &str,
    set: pb::SetKind,
) -> Result<(Vec<u32>, Vec<String>, Vec<f64>, Option<pb::Pin>), tonic::Status> {
    let mut s = c
        .matching
        .candidates(pb::CandidatesRequest {
            policy: policy.into(),
            set: set as i32,
            batch_size: 100,
            with_keys: true,
            limit: 0,
        })
        .await?
        .into_inner();
    let (mut ids, mut keys, mut amounts, mut pin, mut total) = (vec![], vec![], vec![], None, 0);
    while let Some(b) = s.message().await? {
        if b.pin.is_some() {
            pin = b.pin;
        }
        total = b.total.max(total);
        ids.extend(b.entities);
        keys.extend(b.keys);
        amounts.extend(b.amounts);
    }
    assert_eq!(
        total as usize,
        ids.len(),
        "the last batch counts what was sent"
    );
    Ok((ids, keys, amounts, pin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_and_names_its_generation_and_policy_versions() {
    let (running, data) = serve().await;
    let addr = running.addr;
    let mut mz = clients(addr, Some(MZ)).await;

    // Match: counts of every policy, then M01's candidates streamed, as a bitmap, diffed.
    let counts = mz
        .matching
        .count(pb::CountRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counts.counts.len(), 27);
    let pin = counts.pin.unwrap();
    assert_eq!(pin.generation, 1);
    assert_eq!(pin.as_of, "2025-12-31");
    assert!(pin.policy_versions.iter().any(|v| v == "M01@1"), "{pin:?}");
    let m01 = counts.counts.iter().find(|c| c.policy == "M01").unwrap();
    assert!(m01.candidates > 0, "the test city has 高龄津贴 candidates");
    let (ids, keys, amounts, pin) = stream(&mut mz, "M01", pb::SetKind::Candidates)
        .await
        .unwrap();
    assert_eq!(ids.len() as u64, m01.candidates);
    assert_eq!(pin.unwrap().policy_versions, vec!["M01@1".to_string()]);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "entity order");
    assert!(amounts.iter().all(|a| [50.0, 100.0, 300.0].contains(a)));
    let total: f64 = amounts.iter().sum();
    assert!((total - m01.total_amount).abs() < 1e-6);
    let bitmap = mz
        .matching
        .bitmap(pb::CandidatesRequest {
            policy: "M01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let b = roaring::RoaringBitmap::deserialize_from(&bitmap.roaring[..]).unwrap();
    assert_eq!(b.iter().collect::<Vec<_>>(), ids);
    let mut diff = mz
        .matching
        .diff(pb::DiffRequest {
            policy: "M01".into(),
            since_generation: 1,
            batch_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = diff.message().await.unwrap().unwrap();
    assert!(first.pin.is_some());
    assert!(first.newly_eligible.is_empty() && first.no_longer_eligible.is_empty());
    let never = mz
        .matching
        .diff(pb::DiffRequest {
            policy: "M01".into(),
            since_generation: 99,
            batch_size: 0,
        })
        .await;
    let code = match never {
        Err(s) => s.code(),
        Ok(r) => match r.into_inner().message().await {
            Err(s) => s.code(),
            Ok(_) => Code::Ok,
        },
    };
    assert_eq!(code, Code::NotFound);
    let near = stream(&mut mz, "M01", pb::SetKind::NearMiss).await.unwrap();
    assert!(near.0.iter().all(|e| !ids.contains(e)));
    // Flag bit 0 marks exactly the set's entities that are also to be verified.
    let to_verify = running.shared.served().runs["M01"].to_verify.clone();
    for set in [pb::SetKind::NearMiss, pb::SetKind::ToVerify] {
        let mut s = mz
            .matching
            .candidates(pb::CandidatesRequest {
                policy: "M01".into(),
                set: set as i32,
                batch_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut seen = 0;
        while let Some(b) = s.message().await.unwrap() {
            assert_eq!(b.entities.len(), b.flags.len());
            for (e, f) in b.entities.iter().zip(&b.flags) {
                assert_eq!(f & 1 == 1, to_verify.contains(*e), "{set:?} {e}");
            }
            seen += b.entities.len();
        }
        assert!(seen > 0, "{set:?} is empty: the flags were not exercised");
    }

    // Eligibility: a candidate of M01, all its conditions TRUE, with the values read.
    let mut hotline = clients(addr, Some(HOTLINE)).await;
    let key = keys[0].clone();
    let e = hotline
        .check(pb::EligibilityRequest {
            key: key.clone(),
            explain: true,
            ..Default::default()
        })
        .await;
    assert_eq!(e.kind, "person");
    assert_ne!(e.key, key, "the hotline sees the key masked");
    let p = e.policies.iter().find(|p| p.policy == "M01").unwrap();
    assert_eq!(p.outcome, pb::Outcome::Candidate as i32);
    assert_eq!(p.amount, Some(amounts[0]));
    assert!(
        p.conditions
            .iter()
            .all(|c| c.state == pb::State::True as i32 && !c.text.is_empty())
    );
    assert!(p.conditions.iter().any(|c| !c.because.is_empty()));
    let p_conditions = p.conditions.len();
    assert!(e.policies.iter().all(|p| p.outcome != 0));
    // The near-miss entity fails exactly one condition.
    if let Some(k) = near.1.first() {
        let e = hotline
            .check(pb::EligibilityRequest {
                key: k.clone(),
                policies: vec!["M01".into()],
                ..Default::default()
            })
            .await;
        let p = &e.policies[0];
        assert_eq!(p.outcome, pb::Outcome::NearMiss as i32);
        let falses = p
            .conditions
            .iter()
            .filter(|c| c.state == pb::State::False as i32)
            .count();
        assert_eq!(falses, 1);
    }

    // The compact reply: the same outcomes and states, without names.
    let full = hotline
        .check(pb::EligibilityRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await;
    let compact = hotline
        .check(pb::EligibilityRequest {
            key: key.clone(),
            compact: true,
            ..Default::default()
        })
        .await;
    assert_eq!(full.policies.len(), compact.policies.len());
    for (f, c) in full.policies.iter().zip(&compact.policies) {
        assert_eq!(
            (f.policy.as_str(), f.outcome, f.amount),
            (c.policy.as_str(), c.outcome, c.amount)
        );
        let states: Vec<i32> = f.conditions.iter().map(|x| x.state).collect();
        assert_eq!(states, c.states);
        assert!(c.conditions.is_empty() && c.name.is_empty());
    }

    // Profiles: resolve and read, masked for the hotline, unmasked for the lead department.
    let r = hotline
        .profiles
        .resolve(pb::ResolveRequest {
            identifier: key.to_lowercase(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.entity, ids[0]);
    let masked = hotline
        .profiles
        .get(pb::ProfileRequest {
            key: key.clone(),
            rows_per_table: 5,
        })
        .await
        .unwrap()
        .into_inner();
    let clear = mz
        .profiles
        .get(pb::ProfileRequest {
            key: key.clone(),
            rows_per_table: 5,
        })
        .await
        .unwrap()
        .into_inner();
    let field = |p: &pb::Profile, table: &str, name: &str| {
        p.records
            .iter()
            .find(|r| r.table == table)
            .and_then(|r| r.fields.iter().find(|f| f.name == name))
            .map(|f| f.value.clone())
            .unwrap()
    };
    let name = field(&clear, "GA.person", "name");
    let masked_name = field(&masked, "GA.person", "name");
    assert_ne!(name, masked_name);
    assert!(masked_name.ends_with('*'), "{masked_name}");
    assert_eq!(clear.key, key);
    assert!(!clear.tables.is_empty());
    assert!(
        clear.relations.iter().any(|r| r.relation == "household"),
        "{:?}",
        clear.relations
    );

    // Workflow: push, confirm, pay, reject with a reason; pending, history.
    let push = mz
        .workflow
        .push(pb::PushRequest {
            policy: "M01".into(),
            keys: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(push.pushed, ids.len() as u64);
    let again = mz
        .workflow
        .push(pb::PushRequest {
            policy: "M01".into(),
            keys: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.pushed, again.already), (0, ids.len() as u64));
    let rec = |key: &str, action: pb::Action, reason: &str, amount: f64| pb::RecordRequest {
        policy: "M01".into(),
        key: key.into(),
        action: action as i32,
        reason: reason.into(),
        amount,
        reference: String::new(),
        request_id: String::new(),
    };
    mz.workflow
        .record(rec(&key, pb::Action::Confirm, "", 0.0))
        .await
        .unwrap();
    let paid = mz
        .workflow
        .record(rec(&key, pb::Action::Pay, "", amounts[0]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.state, pb::WorkState::Paid as i32);
    if keys.len() > 1 {
        mz.workflow
            .record(rec(&keys[1], pb::Action::Reject, "已迁出本市", 0.0))
            .await
            .unwrap();
        // Paying a rejected item is refused and records nothing.
        let s = mz
            .workflow
            .record(rec(&keys[1], pb::Action::Pay, "", 50.0))
            .await
            .unwrap_err();
        assert_eq!(s.code(), Code::FailedPrecondition);
    }
    let s = mz
        .workflow
        .record(rec(&key, pb::Action::Reject, "", 0.0))
        .await
        .unwrap_err();
    assert_eq!(
        s.code(),
        Code::InvalidArgument,
        "a rejection needs a reason"
    );
    let mut pending = mz
        .workflow
        .pending(pb::PendingRequest {
            policy: "M01".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(item) = pending.message().await.unwrap() {
        assert_eq!(item.state, pb::WorkState::Pushed as i32);
        n += 1;
    }
    assert_eq!(n, ids.len().saturating_sub(2).min(1000));
    let h = mz
        .workflow
        .history(pb::HistoryRequest {
            policy: "M01".into(),
            key: key.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let actions: Vec<i32> = h.steps.iter().map(|s| s.action).collect();
    assert_eq!(
        actions,
        vec![
            pb::Action::Push as i32,
            pb::Action::Confirm as i32,
            pb::Action::Pay as i32
        ]
    );
    assert!(
        h.steps
            .iter()
            .all(|s| s.actor == "t-mz" && s.generation == 1)
    );

    // Supervision: from the ledger.
    let mut sup = clients(addr, Some(SUPERVISOR)).await;
    let rep = sup
        .supervision
        .report(pb::ReportRequest {
            policies: vec!["M01".into()],
            department: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let m = &rep.policies[0];
    assert_eq!((m.pushed, m.paid, m.confirmed), (ids.len() as u64, 1, 1));
    assert!((m.reach_rate - 1.0).abs() < 1e-9);
    assert!((m.fulfilment_rate - 1.0).abs() < 1e-9);
    assert!((m.amount_paid - amounts[0]).abs() < 1e-9);
    if keys.len() > 1 {
        assert_eq!(m.rejection_reasons[0].reason, "已迁出本市");
    }

    // WhatIf: a raised threshold reaches fewer; a broken text comes back with line and column.
    let mut analyst = clients(addr, Some(ANALYST)).await;
    let w = analyst
        .whatif
        .evaluate(pb::WhatIfRequest {
            policy: Some(pb::what_if_request::Policy::PolicyId("M01".into())),
            params: vec![pb::Param {
                name: "min_age".into(),
                value: "85".into(),
            }],
            sample: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(w.base_candidates, m01.candidates);
    assert!(w.candidates < w.base_candidates);
    assert_eq!(w.newly_ineligible, w.base_candidates - w.candidates);
    assert_eq!(w.newly_eligible, 0);
    assert!(w.breakdowns.iter().any(|b| b.dimension == "district"));
    assert!(!w.most_excluding.is_empty());
    assert!(
        w.newly_ineligible_sample
            .iter()
            .all(|k| k.contains("****") && !keys.contains(k)),
        "analysts see masked keys: {:?}",
        w.newly_ineligible_sample
    );
    // Sweep: the saved value counts what the saved version does, 85 what the what-if did.
    let m01_sweep = |param: &str, values: &[&str]| pb::SweepRequest {
        policy: Some(pb::sweep_request::Policy::PolicyId("M01".into())),
        params: vec![],
        param: param.into(),
        values: values.iter().map(|v| v.to_string()).collect(),
    };
    let sw = analyst
        .whatif
        .sweep(m01_sweep("min_age", &["80", "85"]))
        .await
        .unwrap()
        .into_inner();
    let saved = sw.saved.expect("the saved version's row");
    assert_eq!(saved.candidates, m01.candidates);
    assert_eq!(sw.rows.len(), 2);
    assert_eq!(
        (sw.rows[0].value.as_str(), sw.rows[1].value.as_str()),
        ("80", "85")
    );
    assert_eq!(sw.rows[0].candidates, saved.candidates);
    assert_eq!(sw.rows[1].candidates, w.candidates, "as the what-if at 85");
    assert_eq!(sw.rows[1].most_excluding, "old");
    let many = vec!["80"; 257];
    for (param, values) in [
        ("min_age", &[][..]),
        ("no_such", &["1"][..]),
        ("min_age", &["old"][..]),
        ("min_age", &many[..]),
    ] {
        let e = analyst
            .whatif
            .sweep(m01_sweep(param, values))
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "{param} {values:?}: {}",
            e.message()
        );
    }
    let bad = analyst
        .whatif
        .evaluate(pb::WhatIfRequest {
            policy: Some(pb::what_if_request::Policy::PolicyText(
                "policy X01 \"新\" {\n  domain 惠民 subject person lead MZ mode direct\n  version 1\n  when a: GA.person.no_such_field > 3\n}\n".into(),
            )),
            params: vec![],
            sample: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("request:4:"), "{}", bad.message());
    use tonic_types::StatusExt;
    let details = bad.get_error_details();
    let br = details.bad_request().expect("a BadRequest detail");
    assert!(
        br.field_violations
            .iter()
            .any(|v| v.field.starts_with("request:4:") && !v.description.is_empty()),
        "{:?} / {}",
        br.field_violations,
        bad.message()
    );

    // Admin: info, validate, metrics.
    let mut admin = clients(addr, Some(ADMIN)).await;
    let info = admin
        .admin
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.policies.len(), 27);
    let m01_info = info.policies.iter().find(|p| p.id == "M01").unwrap();
    assert_eq!(m01_info.conditions.len(), p_conditions);
    assert_eq!(info.meta.get("generation").map(String::as_str), Some("1"));
    let v = analyst
        .admin
        .validate_policies(pb::PoliciesRequest {
            files: vec![pb::PolicyFile {
                name: "x.policy".into(),
                text: "policy Y {".into(),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!v.ok);
    assert_eq!(v.diagnostics[0].file, "x.policy");
    assert!(v.diagnostics[0].line >= 1);
    let metrics = admin
        .admin
        .metrics(pb::MetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .text;
    assert!(metrics.contains("mianshen_requests_total{rpc=\"Match/Count\",code=\"OK\"} 1"));
    assert!(metrics.contains("mianshen_snapshot_generation 1"));
    assert!(metrics.contains(&format!(
        "mianshen_policy_candidates{{policy=\"M01\"}} {}",
        m01.candidates
    )));

    // The audit log has the hotline's reads, by entity.
    running.stop().await.unwrap();
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"who\":\"t-hotline\"") && l.contains(&key)),
        "{audit}"
    );
    assert!(audit.contains("Match/Candidates"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_authenticated_and_each_role_reads_only_what_it_may() {
    let (running, _) = serve().await;
    let addr = running.addr;
    let req = || pb::CandidatesRequest {
        policy: "M01".into(),
        ..Default::default()
    };
    async fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
        match r {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    }
    // No token, an unknown token.
    let mut none = clients(addr, None).await;
    assert_eq!(
        code(none.matching.count(pb::CountRequest::default()).await).await,
        Code::Unauthenticated
    );
    let mut wrong = clients(addr, Some("not-a-token-at-all")).await;
    assert_eq!(
        code(wrong.matching.bitmap(req()).await).await,
        Code::Unauthenticated
    );
    // A lead department reads its own policies' candidates only.
    let mut mz = clients(addr, Some(MZ)).await;
    let mut rs = clients(addr, Some(RS)).await;
    assert_eq!(code(mz.matching.bitmap(req()).await).await, Code::Ok);
    assert_eq!(
        code(rs.matching.bitmap(req()).await).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(rs.matching.candidates(req()).await).await,
        Code::PermissionDenied
    );
    let push = pb::PushRequest {
        policy: "M01".into(),
        keys: vec![],
    };
    assert_eq!(
        code(rs.workflow.push(push.clone()).await).await,
        Code::PermissionDenied
    );
    // Analysts: aggregates and what-if, no entities.
    let mut analyst = clients(addr, Some(ANALYST)).await;
    assert_eq!(
        code(analyst.matching.count(pb::CountRequest::default()).await).await,
        Code::Ok
    );
    assert_eq!(
        code(analyst.matching.candidates(req()).await).await,
        Code::PermissionDenied
    );
    let key = {
        let b = mz.matching.candidates(pb::CandidatesRequest {
            with_keys: true,
            ..req()
        });
        let mut s = b.await.unwrap().into_inner();
        s.message().await.unwrap().unwrap().keys[0].clone()
    };
    let check = pb::EligibilityRequest {
        key: key.clone(),
        ..Default::default()
    };
    assert_eq!(
        code(analyst.eligibility.check(check.clone()).await).await,
        Code::PermissionDenied
    );
    let profile = pb::ProfileRequest {
        key: key.clone(),
        rows_per_table: 1,
    };
    assert_eq!(
        code(analyst.profiles.get(profile.clone()).await).await,
        Code::PermissionDenied
    );
    // The hotline: one entity by exact key; no sets, no what-if, no workflow.
    let mut hotline = clients(addr, Some(HOTLINE)).await;
    assert_eq!(
        code(hotline.eligibility.check(check.clone()).await).await,
        Code::Ok
    );
    assert_eq!(
        code(hotline.matching.bitmap(req()).await).await,
        Code::PermissionDenied
    );
    let w = pb::WhatIfRequest {
        policy: Some(pb::what_if_request::Policy::PolicyId("M01".into())),
        params: vec![],
        sample: 0,
    };
    assert_eq!(
        code(hotline.whatif.evaluate(w.clone()).await).await,
        Code::PermissionDenied
    );
    let sweep = pb::SweepRequest {
        policy: Some(pb::sweep_request::Policy::PolicyId("M01".into())),
        params: vec![],
        param: "min_age".into(),
        values: vec!["80".into()],
    };
    assert_eq!(
        code(hotline.whatif.sweep(sweep).await).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(hotline.workflow.push(push.clone()).await).await,
        Code::PermissionDenied
    );
    let missing = pb::EligibilityRequest {
        key: "411402190001010000".into(),
        ..Default::default()
    };
    assert_eq!(
        code(hotline.eligibility.check(missing).await).await,
        Code::NotFound
    );
    // A service sees only its own policies in an eligibility answer, and profiles of its
    // candidates only.
    let mine = rs
        .eligibility
        .check(check.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(mine.policies.iter().all(|p| p.lead == "RS"));
    assert_eq!(code(mz.profiles.get(profile.clone()).await).await, Code::Ok);
    assert_eq!(
        code(rs.profiles.get(profile.clone()).await).await,
        Code::PermissionDenied
    );
    // Supervisors: reports and counts, nothing personal; admin-only operations.
    let mut sup = clients(addr, Some(SUPERVISOR)).await;
    assert_eq!(
        code(sup.supervision.report(pb::ReportRequest::default()).await).await,
        Code::Ok
    );
    assert_eq!(
        code(sup.eligibility.check(check).await).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(sup.admin.reload(pb::ReloadRequest::default()).await).await,
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            analyst
                .supervision
                .report(pb::ReportRequest::default())
                .await
        )
        .await,
        Code::PermissionDenied
    );
    // Bad requests.
    let mut admin = clients(addr, Some(ADMIN)).await;
    let none_named = pb::CandidatesRequest::default();
    assert_eq!(
        code(admin.matching.bitmap(none_named).await).await,
        Code::InvalidArgument
    );
    let unknown = pb::CandidatesRequest {
        policy: "ZZZ".into(),
        ..Default::default()
    };
    assert_eq!(
        code(admin.matching.bitmap(unknown).await).await,
        Code::NotFound
    );
    let bad_action = pb::RecordRequest {
        policy: "M01".into(),
        key: key.clone(),
        action: 42,
        ..Default::default()
    };
    assert_eq!(
        code(admin.workflow.record(bad_action).await).await,
        Code::InvalidArgument
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_serve_generic_clients() {
    let (running, _) = serve().await;
    let ch = channel(running.addr).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    for service in ["", "mianshen.v1.Eligibility", "mianshen.v1.Match"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let bearer = Bearer(Some(format!("Bearer {ADMIN}").parse().unwrap()));
    let mut refl = ServerReflectionClient::with_interceptor(ch, bearer);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut s = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = s.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("not a list of services: {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for svc in mianshen::server::SERVICES {
        assert!(names.iter().any(|n| n == svc), "{svc} not in {names:?}");
    }
    // Prometheus scrapes plain HTTP on the same port.
    let body = http_get(running.addr, "/metrics").await;
    assert!(body.contains("mianshen_snapshot_generation 1"), "{body}");
    running.stop().await.unwrap();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_generation_is_swapped_in_under_load_and_a_corrupt_one_is_refused() {
    let (running, _) = serve().await;
    let addr = running.addr;
    let served_dir = running.shared.snapshot_dir.lock().unwrap().clone();
    let mut mz = clients(addr, Some(MZ)).await;
    let (_, keys, _, _) = stream(&mut mz, "M01", pb::SetKind::Candidates)
        .await
        .unwrap();
    let keys = std::sync::Arc::new(keys);

    // Load: eligibility lookups and counts from 8 clients until told to stop.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ok = std::sync::Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (stop, ok, keys) = (stop.clone(), ok.clone(), keys.clone());
        let mut c = clients(addr, Some(HOTLINE)).await;
        let mut m = clients(addr, Some(ADMIN)).await;
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut i = w;
            let mut generations = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                let r = c
                    .eligibility
                    .check(pb::EligibilityRequest {
                        key: keys[i % keys.len()].clone(),
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(r) => {
                        generations.insert(r.into_inner().pin.unwrap().generation);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
                if let Err(e) = m.matching.count(pb::CountRequest::default()).await {
                    failures.push(e.to_string());
                }
                i += 8;
            }
            (failures, generations)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new generation written into the served folder (the snapshot stage only).
    let work = city().1.clone();
    let dir = served_dir.clone();
    tokio::task::spawn_blocking(move || {
        build(
            &Input::Built {
                ingested: work.join("ingested"),
                resolved: work.join("resolved"),
            },
            &dir,
            &scratch(),
            false,
        )
        .unwrap();
    })
    .await
    .unwrap();
    let mut admin = clients(addr, Some(ADMIN)).await;
    let r = admin
        .admin
        .reload(pb::ReloadRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.previous_generation, 1);
    assert_eq!(r.pin.unwrap().generation, 2);

    // A corrupt snapshot (one flipped byte in the middle) is refused; generation 2 serves on.
    let corrupt = scratch();
    let file = mianshen::snapshot::FILE_NAME;
    let mut bytes = std::fs::read(served_dir.join(file)).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(corrupt.join(file), bytes).unwrap();
    let refused = admin
        .admin
        .reload(pb::ReloadRequest {
            snapshot: corrupt.display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("refused"),
        "{}",
        refused.message()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all_generations = std::collections::BTreeSet::new();
    for t in tasks {
        let (failures, generations) = t.await.unwrap();
        assert!(
            failures.is_empty(),
            "requests failed during reload: {failures:?}"
        );
        all_generations.extend(generations);
    }
    assert!(ok.load(Ordering::Relaxed) > 50, "the load ran");
    assert!(
        all_generations.contains(&1) && all_generations.contains(&2),
        "{all_generations:?}"
    );
    let info = admin
        .admin
        .info(pb::InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.pin.unwrap().generation, 2);
    let metrics = running.shared.metrics_text();
    assert!(metrics.contains("mianshen_reloads_total{result=\"ok\"} 1"));
    assert!(metrics.contains("mianshen_reloads_total{result=\"refused\"} 1"));
    // The diff since generation 1 is empty: the same city, rebuilt.
    let mut d = mz
        .matching
        .diff(pb::DiffRequest {
            policy: "M01".into(),
            since_generation: 1,
            batch_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let b = d.message().await.unwrap().unwrap();
    assert_eq!(b.pin.unwrap().generation, 2);
    assert!(b.newly_eligible.is_empty() && b.no_longer_eligible.is_empty());
    running.stop().await.unwrap();
}

/// The binary, serving on a free port; returns once it answers health checks.
struct Child {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl Drop for Child {
    /// A test that fails leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// The child is reaped by `Child`'s drop, or killed when the server never comes up.
#[allow(clippy::zombie_processes)]
async fn spawn_server(snapshot: &Path, data: &Path) -> Child {
    let cfg = data.join("server.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&cfg, CONFIG).unwrap();
    let addr = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_mianshen"))
        .args(["serve", "--snapshot"])
        .arg(snapshot)
        .arg("--config")
        .arg(&cfg)
        .arg("--data")
        .arg(data)
        .args(["--listen", &addr.to_string()])
        .arg("--catalogue")
        .arg(root().join("datasets/policies"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if let Ok(ch) = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
        {
            let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
            if h.check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
            {
                return Child { child, addr };
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut child = child;
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not come up on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_workflow_writes_loses_no_acknowledged_step_and_sigterm_stops_cleanly() {
    let snapshot = snapshot_copy();
    let data = scratch();
    let mut server = spawn_server(&snapshot, &data).await;
    let mut mz = clients(server.addr, Some(MZ)).await;
    let (_, keys, _, _) = stream(&mut mz, "M01", pb::SetKind::Candidates)
        .await
        .unwrap();
    mz.workflow
        .push(pb::PushRequest {
            policy: "M01".into(),
            keys: vec![],
        })
        .await
        .unwrap();
    // Writers confirm keys as fast as they can; each acknowledged step is remembered.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, u64)>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut c = clients(server.addr, Some(MZ)).await;
        let acked = acked.clone();
        let keys: Vec<String> = keys.iter().skip(w).step_by(4).cloned().collect();
        writers.push(tokio::spawn(async move {
            for k in keys {
                let r = c
                    .workflow
                    .record(pb::RecordRequest {
                        policy: "M01".into(),
                        key: k.clone(),
                        action: pb::Action::Confirm as i32,
                        request_id: format!("confirm-{k}"),
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(r) => acked.lock().unwrap().push((k, r.into_inner().seq)),
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill -9 once some, not all, are acknowledged.
    for _ in 0..200 {
        if acked.lock().unwrap().len() >= keys.len().min(20) / 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "some steps were acknowledged before the kill"
    );

    // Every acknowledged step is in the ledger after the crash.
    let ledger = mianshen::workflow::Ledger::open(&data.join("ledger.redb")).unwrap();
    for (key, seq) in &acked {
        let item = ledger.item("M01", key).unwrap().expect("the item survives");
        assert_eq!(item.state, mianshen::workflow::State::Confirmed, "{key}");
        let h = ledger.history("M01", key).unwrap();
        assert!(h.iter().any(|s| s.seq == *seq), "step {seq} of {key} lost");
    }
    drop(ledger);

    // Restarted on the same data, the server answers from the ledger; a retried request id is
    // recorded once.
    let mut server = spawn_server(&snapshot, &data).await;
    let mut mz = clients(server.addr, Some(MZ)).await;
    let (key, seq) = &acked[0];
    let again = mz
        .workflow
        .record(pb::RecordRequest {
            policy: "M01".into(),
            key: key.clone(),
            action: pb::Action::Confirm as i32,
            request_id: format!("confirm-{key}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.replayed);
    assert_eq!(again.seq, *seq);
    // SIGTERM: a graceful stop with a zero exit status.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = server.child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exited = exited.expect("the server stops within 10 s of SIGTERM");
    assert!(exited.success(), "{exited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_talks_to_the_server() {
    let has_grpc = std::process::Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_grpc {
        eprintln!(
            "skipped: python3 with grpcio and grpcio-tools is not installed (CI installs it)"
        );
        return;
    }
    let (running, _) = serve().await;
    let script = root().join("examples/python/client.py");
    let target = running.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .args(["--target", &target, "--token", ADMIN, "--first", "3"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("serving generation 1"), "{stdout}");
    assert!(stdout.contains("candidate of M01"), "{stdout}");
    assert!(stdout.contains("OUTCOME_CANDIDATE"), "{stdout}");
    assert!(
        stdout.contains("without a token: UNAUTHENTICATED"),
        "{stdout}"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_cut_off() {
    let (running, _) = serve().await;
    let mut analyst = clients(running.addr, Some(ANALYST)).await;
    // A new policy text must be checked, compiled and run: far longer than a microsecond.
    let text = "policy X02 \"新\" {\n  domain 惠民 subject person lead MZ mode direct\n  article \"试行\"\n  version 1\n  when old: age(GA.person.birth_date) >= 77\n}\n";
    let mut req = tonic::Request::new(pb::WhatIfRequest {
        policy: Some(pb::what_if_request::Policy::PolicyText(text.into())),
        params: vec![],
        sample: 0,
    });
    req.set_timeout(Duration::from_micros(1));
    let e = analyst.whatif.evaluate(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    // Without a deadline the same request is answered.
    let ok = analyst
        .whatif
        .evaluate(pb::WhatIfRequest {
            policy: Some(pb::what_if_request::Policy::PolicyText(text.into())),
            params: vec![],
            sample: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.candidates > 0);
    assert_eq!(
        ok.base_candidates, 0,
        "a new policy is compared with nobody"
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_condition_states_agree_with_the_condition_bitmaps() {
    let (running, _) = serve().await;
    let served = running.shared.served();
    let n = served.snap().entity_count() as u32;
    let mut compared = 0;
    for p in &served.policies {
        let run = &served.runs[&p.id];
        for e in (0..n).filter(|e| served.snap().kind(*e) == Some(p.subject.as_str())) {
            let packed = served.condition_states(run, e);
            assert_eq!(
                packed,
                served.condition_states_from_sets(run, e),
                "{} {e}",
                p.id
            );
            let f = packed.iter().filter(|t| **t == Tri::False).count();
            let all = packed.iter().all(|t| *t == Tri::True);
            assert_eq!(all, run.candidates.contains(e), "{} {e}", p.id);
            assert_eq!(!all && f == 0, run.to_verify.contains(e), "{} {e}", p.id);
            assert_eq!(f == 1, run.near_miss.contains(e), "{} {e}", p.id);
            compared += 1;
        }
    }
    assert!(compared > 10_000);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eligibility_replies_written_from_templates_are_the_bytes_prost_writes() {
    use mianshen::server::auth::{Caller, Role};
    use mianshen::server::eligibility::{Lookup, encode, message};
    use prost::Message;

    let (running, _) = serve().await;
    let served = running.shared.served();
    let caller = |role, department: &str| Caller {
        name: "t".into(),
        role,
        department: department.into(),
    };
    // Personal and masked keys; a department that leads only some policies.
    let callers = [
        caller(Role::Admin, "DSJ"),
        caller(Role::Hotline, "12345"),
        caller(Role::Service, "MZ"),
    ];
    let first_of = |kind: &str| {
        served
            .policies
            .iter()
            .find(|p| p.subject == kind)
            .map(|p| p.id.clone())
            .unwrap()
    };
    let asks = |key: String| {
        let ask = pb::EligibilityRequest {
            key,
            ..Default::default()
        };
        vec![
            ask.clone(),
            pb::EligibilityRequest {
                compact: true,
                ..ask.clone()
            },
            pb::EligibilityRequest {
                with_text: true,
                ..ask.clone()
            },
            pb::EligibilityRequest {
                all_kinds: true,
                compact: true,
                ..ask.clone()
            },
            pb::EligibilityRequest {
                policies: vec![first_of("person"), first_of("enterprise")],
                with_text: true,
                ..ask.clone()
            },
        ]
    };
    let (mut compared, mut amounts, mut outcomes) = (0, 0, std::collections::HashSet::new());
    let n = served.snap().entity_count() as u32;
    for e in (0..n).step_by(5) {
        let key = served.snap().key(e).unwrap().to_string();
        for c in &callers {
            for ask in asks(key.clone()) {
                let lookup = Lookup::new(&served, c, &ask).unwrap();
                let fast = encode(&served, &lookup).0;
                let built = message(&served, &lookup, Default::default());
                assert_eq!(fast, built.encode_to_vec(), "entity {e}, {c:?}, {ask:?}");
                for p in &built.policies {
                    amounts += usize::from(p.amount.is_some());
                    outcomes.insert(p.outcome);
                }
                compared += 1;
            }
        }
    }
    // The comparison covered amounts and every outcome, not only empty answers.
    assert!(compared > 10_000, "{compared}");
    assert!(amounts > 100, "{amounts}");
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_catalogue_is_loaded_whole_and_a_broken_one_changes_nothing() {
    let (running, _) = serve().await;
    let mut admin = clients(running.addr, Some(ADMIN)).await;
    let count = |c: &pb::CountReply| {
        c.counts
            .iter()
            .find(|x| x.policy == "M01")
            .unwrap()
            .candidates
    };
    let before = admin
        .matching
        .count(pb::CountRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The catalogue as files, with M01 raised to 85 and its version bumped.
    let mut files = Vec::new();
    for (path, text) in
        mianshen::policy::check::read_dir_texts(&root().join("datasets/policies")).unwrap()
    {
        let text = if text.starts_with("policy M01 ") {
            text.replace("param min_age = 80", "param min_age = 85")
                .replace("version 1 ", "version 2 ")
        } else {
            text
        };
        files.push(pb::PolicyFile {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            text,
        });
    }
    let broken = {
        let mut f = files.clone();
        f.push(pb::PolicyFile {
            name: "broken.policy".into(),
            text: "policy Z01 \"坏\" {\n  subject nobody\n}\n".into(),
        });
        f
    };
    let r = admin
        .admin
        .load_policies(pb::PoliciesRequest { files: broken })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.ok);
    assert!(
        r.diagnostics.iter().any(|d| d.file == "broken.policy"),
        "{:?}",
        r.diagnostics
    );
    let same = admin
        .matching
        .count(pb::CountRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        count(&same),
        count(&before),
        "a broken catalogue changes nothing"
    );
    let r = admin
        .admin
        .load_policies(pb::PoliciesRequest { files })
        .await
        .unwrap()
        .into_inner();
    assert!(r.ok, "{:?}", r.diagnostics);
    assert_eq!(r.policies.len(), 27);
    let after = admin
        .matching
        .count(pb::CountRequest {
            policies: vec!["M01".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(count(&after) < count(&before));
    assert_eq!(
        after.pin.unwrap().policy_versions,
        vec!["M01@2".to_string()]
    );
    running.stop().await.unwrap();
}

/// Admin.Info over `endpoint` with `token`: the policies it names, or why the call failed
/// (in the handshake or after it).
async fn info_over(endpoint: tonic::transport::Endpoint, token: &str) -> Result<usize, String> {
    let ch = endpoint
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let b = Bearer(Some(format!("Bearer {token}").parse().unwrap()));
    pb::admin_client::AdminClient::with_interceptor(ch, b)
        .info(pb::InfoRequest {})
        .await
        .map(|r| r.into_inner().policies.len())
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// mTLS: with `[tls] client_ca`, a client gets through the handshake only with a certificate
/// that CA signed, and still needs its token after it; plaintext, no certificate and a
/// stranger's certificate are all refused. A broken certificate file stops the server from
/// starting, with the file named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_admits_only_clients_whose_certificate_the_ca_signed() {
    use mianshen::server::config::TlsConfig;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let fixtures = root().join("tests/fixtures/tls");
    let pem = |f: &str| std::fs::read(fixtures.join(f)).unwrap();
    let mut opts = options(snapshot_copy(), scratch());
    opts.config.tls = Some(TlsConfig {
        cert: fixtures.join("server.pem"),
        key: fixtures.join("server.key"),
        client_ca: Some(fixtures.join("ca.pem")),
    });
    let running = start(opts.clone()).await.unwrap();
    let port = running.addr.port();
    let tls = |identity: Option<(&str, &str)>| {
        let mut c = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem("ca.pem")))
            .domain_name("localhost");
        if let Some((cert, key)) = identity {
            c = c.identity(Identity::from_pem(pem(cert), pem(key)));
        }
        Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .tls_config(c)
            .unwrap()
    };

    let ours = tls(Some(("client.pem", "client.key")));
    assert_eq!(info_over(ours.clone(), ADMIN).await, Ok(27));
    let e = info_over(ours, "not-a-token-of-ours-0").await.unwrap_err();
    assert!(e.starts_with("Unauthenticated"), "{e}");
    for (what, endpoint) in [
        ("no client certificate", tls(None)),
        (
            "a stranger's certificate",
            tls(Some(("stranger.pem", "stranger.key"))),
        ),
        (
            "plaintext",
            Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(10)),
        ),
    ] {
        let r = info_over(endpoint, ADMIN).await;
        assert!(r.is_err(), "{what} got through: {r:?}");
    }
    running.stop().await.unwrap();

    // The server's key file holding no key: refused at start, the file named.
    let not_pem = scratch().join("server.key");
    std::fs::write(&not_pem, "not a key").unwrap();
    if let Some(t) = opts.config.tls.as_mut() {
        t.key = not_pem.clone();
    }
    let Err(e) = start(opts).await else {
        panic!("a broken key must not serve");
    };
    assert!(
        e.to_string().contains(&not_pem.display().to_string()),
        "{e}"
    );
}
