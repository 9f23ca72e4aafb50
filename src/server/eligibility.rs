//! Eligibility: for one entity, every policy with its outcome and the state of each condition
//! (the hotline's "which policies, and why not").
//!
//! Outcomes and condition states are read from the served generation's condition sets: a few
//! bitmap lookups per policy, no evaluation. With `explain`, the entity is evaluated afresh to
//! report the values each condition read.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::Role;
use super::pb::v1::{self as pb, eligibility_server::Eligibility};
use super::{Shared, handle, mask};
use crate::policy::ast::Tri;
use crate::policy::explain::{self, Outcome};

#[derive(Debug)]
pub struct EligibilityService(pub Arc<Shared>);

pub fn outcome_pb(o: Outcome) -> pb::Outcome {
    match o {
        Outcome::Candidate => pb::Outcome::Candidate,
        Outcome::ToVerify => pb::Outcome::ToVerify,
        Outcome::NearMiss => pb::Outcome::NearMiss,
        Outcome::Ineligible => pb::Outcome::Ineligible,
        Outcome::NotSubject => pb::Outcome::NotSubject,
    }
}

pub fn state(t: Tri) -> pb::State {
    match t {
        Tri::True => pb::State::True,
        Tri::False => pb::State::False,
        Tri::Unknown => pb::State::Unknown,
    }
}

#[tonic::async_trait]
impl Eligibility for EligibilityService {
    async fn check(
        &self,
        req: Request<pb::EligibilityRequest>,
    ) -> Result<Response<pb::EligibilityReply>, Status> {
        handle(&self.0, "Eligibility/Check", req, |caller, r| async move {
            caller.require(
                &[Role::Hotline, Role::Service],
                "check one entity's eligibility",
            )?;
            if r.key.trim().is_empty() {
                return Err(Status::invalid_argument(
                    "key: give an id number, USCC or stable key",
                ));
            }
            let served = self.0.served();
            let (e, key) = served
                .entity_of(&r.key)
                .ok_or_else(|| Status::not_found("no entity has this key"))?;
            let kind = served.snap().kind(e).unwrap_or("?").to_string();
            for id in &r.policies {
                if served.policy(id).is_none() {
                    return Err(Status::not_found(format!(
                        "no policy {id} in the served catalogue"
                    )));
                }
            }
            let chosen: Vec<&crate::policy::ast::Policy> = served
                .policies
                .iter()
                .filter(|p| r.policies.is_empty() || r.policies.contains(&p.id))
                .filter(|p| r.all_kinds || !r.policies.is_empty() || p.subject == kind)
                .filter(|p| caller.sees_policy(&p.lead))
                .collect();
            let mut because: HashMap<String, Vec<Vec<String>>> = HashMap::new();
            if r.explain {
                let _permit = self
                    .0
                    .heavy
                    .acquire()
                    .await
                    .map_err(|_| Status::unavailable("shutting down"))?;
                let ids: Vec<String> = chosen
                    .iter()
                    .filter(|p| p.subject == kind)
                    .map(|p| p.id.clone())
                    .collect();
                let (s, k) = (served.clone(), key.clone());
                because = tokio::task::spawn_blocking(move || {
                    s.with_engine(|engine| {
                        ids.into_iter()
                            .filter_map(|id| {
                                let x = explain::explain(engine, &id, &k, &HashMap::new()).ok()?;
                                Some((id, x.conditions.into_iter().map(|c| c.because).collect()))
                            })
                            .collect()
                    })
                })
                .await
                .map_err(super::status::join)?;
            }
            let personal = caller.sees_personal();
            let mut policies = Vec::with_capacity(chosen.len());
            for p in &chosen {
                let Some(run) = served.runs.get(&p.id) else {
                    continue;
                };
                let subject = p.subject == kind;
                let states = if subject {
                    served.condition_states(run, e)
                } else {
                    Vec::new()
                };
                let outcome = if subject {
                    outcome_pb(Outcome::of(&states))
                } else {
                    pb::Outcome::NotSubject
                };
                let texts = served
                    .condition_texts
                    .get(&p.id)
                    .filter(|_| r.with_text || r.explain);
                let mut why = because.remove(&p.id).unwrap_or_default().into_iter();
                let compact_states: Vec<i32> = if r.compact {
                    states.iter().map(|t| state(*t) as i32).collect()
                } else {
                    Vec::new()
                };
                let conditions = if r.compact { Vec::new() } else { states }
                    .into_iter()
                    .zip(&run.conditions)
                    .enumerate()
                    .map(|(i, (t, c))| pb::ConditionOutcome {
                        name: c.name.clone(),
                        text: texts.and_then(|t| t.get(i)).cloned().unwrap_or_default(),
                        state: state(t) as i32,
                        because: why
                            .next()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|b| if personal { b } else { mask::text(&b) })
                            .collect(),
                    })
                    .collect();
                let (name, lead) = if r.compact {
                    (String::new(), String::new())
                } else {
                    (p.name.clone(), p.lead.clone())
                };
                policies.push(pb::PolicyOutcome {
                    policy: p.id.clone(),
                    version: p.version,
                    name,
                    lead,
                    states: compact_states,
                    outcome: outcome as i32,
                    amount: if outcome == pb::Outcome::Candidate {
                        run.amount_of(e)
                    } else {
                        None
                    },
                    period: p
                        .amount
                        .as_ref()
                        .filter(|_| !r.compact)
                        .map(|(_, per)| per.as_str().to_string())
                        .unwrap_or_default(),
                    conditions,
                });
            }
            let fields: &[&str] = if r.explain {
                &["eligibility", "conditions", "values read"]
            } else {
                &["eligibility", "conditions"]
            };
            self.0
                .audit
                .read(&caller, "Eligibility/Check", &key, fields);
            Ok(pb::EligibilityReply {
                pin: Some(served.pin(policies.iter().map(|p| p.policy.as_str()))),
                key: if personal {
                    key
                } else {
                    mask::identifier(&key)
                },
                kind,
                policies,
            })
        })
        .await
    }
}
