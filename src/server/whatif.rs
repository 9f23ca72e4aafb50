//! WhatIf: a parameter override or a policy text, evaluated on the served generation without
//! saving it, against the saved version. Analysts see aggregates; the sample of newly
//! (in)eligible keys is masked unless the role sees personal data.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::Role;
use super::pb::v1::{self as pb, what_if_request::Policy as Which, what_if_server::WhatIf};
use super::{Shared, handle, mask, status};
use crate::policy::ast::{Lit, Policy};
use crate::policy::check::check_with_catalogue;
use crate::policy::engine::{PolicyCounts, most_excluding};
use crate::policy::schema::Schema;
use crate::policy::sweep::{MAX_VALUES, sweep};
use crate::policy::whatif::what_if;

#[derive(Debug)]
pub struct WhatIfService(pub Arc<Shared>);

/// Cached atoms, compiled policies and results a served engine keeps before trimming.
pub const MAX_CACHED: usize = 2048;

/// Bytes of what-if results and atoms (beyond the catalogue's, which are pinned) a served
/// engine keeps before trimming: a few hundred what-ifs at the full city (M01's with a new
/// threshold grew the process by about 1 MB each, measured at 7.8M persons).
pub const MAX_CACHED_BYTES: usize = 512 << 20;

/// Parameter overrides of a request.
pub fn overrides(params: &[pb::Param]) -> Result<HashMap<String, Lit>, Status> {
    let mut out = HashMap::new();
    for p in params {
        let name = p.name.trim();
        if name.is_empty() {
            return Err(Status::invalid_argument("a parameter override has no name"));
        }
        out.insert(name.to_string(), Lit::parse_value(&p.value));
    }
    Ok(out)
}

/// The policy a request names: a served catalogue policy, or a text checked against the
/// served catalogue.
fn requested(served: &super::state::Served, which: Option<Which>) -> Result<Policy, Status> {
    match which {
        Some(Which::PolicyId(id)) => served
            .policy(&id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no policy {id} in the served catalogue"))),
        Some(Which::PolicyText(text)) => {
            let schema = Schema::of_snapshot(served.snap());
            check_with_catalogue(&served.catalogue, Path::new("request"), &text, &schema)
                .map_err(|d| status::diagnostics(&d))
        }
        None => Err(Status::invalid_argument("give policy_id or policy_text")),
    }
}

/// A sweep's row.
fn sweep_row(value: String, c: &PolicyCounts) -> pb::SweepRow {
    let most = most_excluding(&c.conditions);
    pb::SweepRow {
        value,
        candidates: c.candidates,
        to_verify: c.to_verify,
        near_miss: c.near_miss,
        most_excluding: most.map(|m| m.name.clone()).unwrap_or_default(),
        most_excluding_alone: most.map_or(0, |m| m.sole_blocker),
    }
}

#[tonic::async_trait]
impl WhatIf for WhatIfService {
    async fn sweep(
        &self,
        req: Request<pb::SweepRequest>,
    ) -> Result<Response<pb::SweepReply>, Status> {
        handle(&self.0, "WhatIf/Sweep", req, |caller, r| async move {
            caller.require(&[Role::Analyst], "run what-ifs")?;
            let served = self.0.served();
            let overrides = overrides(&r.params)?;
            let param = r.param.trim().to_string();
            if param.is_empty() {
                return Err(Status::invalid_argument("give the parameter to sweep"));
            }
            if r.values.is_empty() || r.values.len() > MAX_VALUES {
                return Err(Status::invalid_argument(format!(
                    "give 1 to {MAX_VALUES} values to sweep (got {})",
                    r.values.len()
                )));
            }
            let values: Vec<Lit> = r.values.iter().map(|v| Lit::parse_value(v)).collect();
            let which = r.policy.map(|p| match p {
                pb::sweep_request::Policy::PolicyId(id) => Which::PolicyId(id),
                pb::sweep_request::Policy::PolicyText(t) => Which::PolicyText(t),
            });
            let policy = requested(&served, which)?;
            let s = self
                .0
                .on_engine(&served, move |engine| {
                    let s = sweep(engine, &policy, &overrides, &param, &values);
                    engine.trim(MAX_CACHED, MAX_CACHED_BYTES);
                    s
                })
                .await?
                .map_err(status::engine)?;
            Ok(pb::SweepReply {
                pin: Some(served.pin([s.policy.as_str()])),
                policy: s.policy.clone(),
                param: s.param.clone(),
                saved: Some(sweep_row(String::new(), &s.saved)),
                rows: s
                    .rows
                    .iter()
                    .map(|(v, c)| sweep_row(v.to_string(), c))
                    .collect(),
                seconds: s.seconds,
            })
        })
        .await
    }

    async fn evaluate(
        &self,
        req: Request<pb::WhatIfRequest>,
    ) -> Result<Response<pb::WhatIfReply>, Status> {
        handle(&self.0, "WhatIf/Evaluate", req, |caller, r| async move {
            caller.require(&[Role::Analyst], "run what-ifs")?;
            let served = self.0.served();
            let overrides = overrides(&r.params)?;
            let policy = requested(&served, r.policy)?;
            let w = self
                .0
                .on_engine(&served, move |engine| {
                    let w = what_if(engine, &policy, &overrides);
                    // Every distinct override adds atoms and a result: keep the cache bounded.
                    engine.trim(MAX_CACHED, MAX_CACHED_BYTES);
                    w
                })
                .await?
                .map_err(status::engine)?;
            let personal = caller.sees_personal();
            let snap = served.snap();
            let sample = |set: &roaring::RoaringBitmap| -> Vec<String> {
                set.iter()
                    .take(r.sample as usize)
                    .filter_map(|e| snap.key(e))
                    .map(|k| {
                        if personal {
                            k.to_string()
                        } else {
                            mask::identifier(k)
                        }
                    })
                    .collect()
            };
            if personal && r.sample > 0 {
                self.0.audit.read(
                    &caller,
                    "WhatIf/Evaluate",
                    &format!("sample of {} newly (in)eligible", w.new.id),
                    &["key"],
                );
            }
            Ok(pb::WhatIfReply {
                pin: Some(served.pin([w.new.id.as_str()])),
                policy: w.new.id.clone(),
                candidates: w.new.candidates.len(),
                to_verify: w.new.to_verify.len(),
                total_amount: w.new.total,
                base_candidates: w.base.candidates.len(),
                base_total_amount: w.base.total,
                newly_eligible: w.newly_eligible.len(),
                newly_ineligible: w.newly_ineligible.len(),
                newly_eligible_sample: sample(&w.newly_eligible),
                newly_ineligible_sample: sample(&w.newly_ineligible),
                breakdowns: w
                    .breakdowns
                    .iter()
                    .map(|b| pb::Breakdown {
                        dimension: b.dimension.clone(),
                        rows: b
                            .rows
                            .iter()
                            .map(|(v, n, a)| pb::BreakdownRow {
                                value: v.clone(),
                                candidates: *n,
                                amount: *a,
                            })
                            .collect(),
                    })
                    .collect(),
                conditions: w
                    .new
                    .conditions
                    .iter()
                    .map(|c| pb::ConditionImpact {
                        name: c.name.clone(),
                        false_count: c.false_count,
                        sole_blocker: c.sole_blocker,
                    })
                    .collect(),
                most_excluding: w.most_excluding.map(|m| m.0).unwrap_or_default(),
                overlaps: w
                    .overlaps
                    .iter()
                    .map(|(p, n)| pb::Overlap {
                        policy: p.clone(),
                        common: *n,
                    })
                    .collect(),
                computed: w.new.computed as u32,
                seconds: w.seconds,
            })
        })
        .await
    }
}
