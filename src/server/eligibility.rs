//! Eligibility: for one entity, every policy with its outcome and the state of each condition
//! (the hotline's "which policies, and why not").
//!
//! Outcomes and condition states are read from the served generation's packed condition
//! states: no evaluation. A lookup's reply is written straight to protobuf bytes
//! ([`Encoded`]) from [`Templates`] made once per generation: each policy's id, version, name,
//! lead and period and each condition's name and text are encoded already, and a lookup adds
//! only the entity's outcomes, amounts and states. The bytes are the ones prost writes for
//! the same [`pb::EligibilityReply`] ([`message`] builds it; a test compares the two). With
//! `explain`, the entity is evaluated afresh to report the values each condition read, and
//! that reply is built as a message.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use prost::encoding::{self, WireType};
use tonic::{Request, Response, Status};

use super::auth::{Caller, Role};
use super::pb::encoded::eligibility_server::Eligibility;
use super::pb::v1 as pb;
use super::state::Served;
use super::{Shared, handle, mask};
use crate::policy::ast::{Policy, Tri};
use crate::policy::engine::PolicyRun;
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

/// A reply already encoded as protobuf bytes: the service writes them out as they are. It is
/// only ever encoded (the generated client decodes [`pb::EligibilityReply`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded(pub Vec<u8>);

impl Message for Encoded {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// The parts of every eligibility reply that are the same for all entities, encoded once per
/// generation, each as the fields prost writes for it.
#[derive(Debug, Default)]
pub struct Templates {
    /// The pin's generation, build time and as-of date (its fields 1–3).
    pin: Vec<u8>,
    /// By policy id.
    policies: HashMap<String, PolicyTemplate>,
}

#[derive(Debug)]
struct PolicyTemplate {
    /// `PolicyOutcome` fields 1 and 2: id and version (all a compact reply names).
    id: Vec<u8>,
    /// Fields 3 and 4: name and lead.
    names: Vec<u8>,
    /// Field 7: the amount's period (empty when there is none).
    period: Vec<u8>,
    /// The pin's field 4 for this policy: `ID@VERSION`.
    version: Vec<u8>,
    /// Each condition's `ConditionOutcome` fields 1 (name) and 2 (text as written).
    conditions: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Templates {
    /// The templates of `policies` (those with a run), with `pin` the generation's pin
    /// without policy versions and `versions` each policy's `ID@VERSION`.
    pub fn build(
        pin: &pb::Pin,
        policies: &[Policy],
        runs: &HashMap<String, PolicyRun>,
        texts: &HashMap<String, Vec<String>>,
        versions: &HashMap<String, String>,
    ) -> Templates {
        let policies = policies
            .iter()
            .filter_map(|p| Some((p, runs.get(&p.id)?)))
            .map(|(p, run)| {
                let texts = texts.get(&p.id);
                let conditions = run
                    .conditions
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let name = pb::ConditionOutcome {
                            name: c.name.clone(),
                            ..Default::default()
                        };
                        let text = pb::ConditionOutcome {
                            text: texts.and_then(|t| t.get(i)).cloned().unwrap_or_default(),
                            ..Default::default()
                        };
                        (name.encode_to_vec(), text.encode_to_vec())
                    })
                    .collect();
                let t = PolicyTemplate {
                    id: pb::PolicyOutcome {
                        policy: p.id.clone(),
                        version: p.version,
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    names: pb::PolicyOutcome {
                        name: p.name.clone(),
                        lead: p.lead.clone(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    period: pb::PolicyOutcome {
                        period: period(p),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    version: pb::Pin {
                        policy_versions: versions.get(&p.id).cloned().into_iter().collect(),
                        ..Default::default()
                    }
                    .encode_to_vec(),
                    conditions,
                };
                (p.id.clone(), t)
            })
            .collect();
        Templates {
            pin: pin.encode_to_vec(),
            policies,
        }
    }
}

/// The period of a policy's amount (`month`, `year`, …), empty when it has none.
pub fn period(p: &Policy) -> String {
    p.amount
        .as_ref()
        .map(|(_, per)| per.as_str().to_string())
        .unwrap_or_default()
}

/// One lookup, checked: the entity and the policies to answer for.
#[derive(Debug)]
pub struct Lookup<'a> {
    e: u32,
    /// The entity's key as the caller may see it.
    shown_key: String,
    /// The entity's key, for the audit line.
    pub key: String,
    kind: &'static str,
    chosen: Vec<&'a Policy>,
    compact: bool,
    with_text: bool,
    personal: bool,
}

impl<'a> Lookup<'a> {
    /// Checks `r` against the served generation and what `caller` may see.
    pub fn new(
        served: &'a Served,
        caller: &Caller,
        r: &pb::EligibilityRequest,
    ) -> Result<Lookup<'a>, Status> {
        caller.require(
            &[Role::Hotline, Role::Service],
            "check one entity's eligibility",
        )?;
        if r.key.trim().is_empty() {
            return Err(Status::invalid_argument(
                "key: give an id number, USCC or stable key",
            ));
        }
        let (e, key) = served
            .entity_of(&r.key)
            .ok_or_else(|| Status::not_found("no entity has this key"))?;
        let kind = served.kind(e).unwrap_or("?");
        for id in &r.policies {
            if served.policy(id).is_none() {
                return Err(Status::not_found(format!(
                    "no policy {id} in the served catalogue"
                )));
            }
        }
        let chosen = served
            .policies
            .iter()
            .filter(|p| r.policies.is_empty() || r.policies.contains(&p.id))
            .filter(|p| r.all_kinds || !r.policies.is_empty() || p.subject == kind)
            .filter(|p| caller.sees_policy(&p.lead))
            .filter(|p| served.runs.contains_key(&p.id))
            .collect();
        let personal = caller.sees_personal();
        Ok(Lookup {
            e,
            shown_key: if personal {
                key.clone()
            } else {
                mask::identifier(&key)
            },
            key,
            kind,
            chosen,
            compact: r.compact,
            with_text: r.with_text || r.explain,
            personal,
        })
    }

    /// The ids of the policies of this kind answered for, whose conditions `explain` reads.
    fn explained(&self) -> Vec<String> {
        self.chosen
            .iter()
            .filter(|p| p.subject == self.kind)
            .map(|p| p.id.clone())
            .collect()
    }

    /// Where the entity stands with each chosen policy.
    fn standings(&self, served: &'a Served) -> impl Iterator<Item = Standing<'a>> + '_ {
        self.chosen.iter().filter_map(move |p| {
            let run = served.runs.get(&p.id)?;
            let subject = p.subject == self.kind;
            let states = if subject {
                served.condition_states(run, self.e)
            } else {
                Vec::new()
            };
            let outcome = if subject {
                outcome_pb(Outcome::of(&states))
            } else {
                pb::Outcome::NotSubject
            };
            let amount = if outcome == pb::Outcome::Candidate {
                run.amount_of(self.e)
            } else {
                None
            };
            Some(Standing {
                policy: p,
                run,
                states,
                outcome,
                amount,
            })
        })
    }
}

/// Where an entity stands with one policy.
struct Standing<'a> {
    policy: &'a Policy,
    run: &'a PolicyRun,
    states: Vec<Tri>,
    outcome: pb::Outcome,
    amount: Option<f64>,
}

/// The reply as a message; `because` holds, by policy id, the values each condition read
/// (`explain`).
pub fn message(
    served: &Served,
    lookup: &Lookup<'_>,
    mut because: HashMap<String, Vec<Vec<String>>>,
) -> pb::EligibilityReply {
    let mut policies = Vec::with_capacity(lookup.chosen.len());
    for s in lookup.standings(served) {
        let p = s.policy;
        let texts = served
            .condition_texts
            .get(&p.id)
            .filter(|_| lookup.with_text);
        let mut why = because.remove(&p.id).unwrap_or_default().into_iter();
        let compact_states: Vec<i32> = if lookup.compact {
            s.states.iter().map(|t| state(*t) as i32).collect()
        } else {
            Vec::new()
        };
        let conditions = if lookup.compact { Vec::new() } else { s.states }
            .into_iter()
            .zip(&s.run.conditions)
            .enumerate()
            .map(|(i, (t, c))| pb::ConditionOutcome {
                name: c.name.clone(),
                text: texts.and_then(|t| t.get(i)).cloned().unwrap_or_default(),
                state: state(t) as i32,
                because: why
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|b| if lookup.personal { b } else { mask::text(&b) })
                    .collect(),
            })
            .collect();
        let (name, lead, period) = if lookup.compact {
            Default::default()
        } else {
            (p.name.clone(), p.lead.clone(), period(p))
        };
        policies.push(pb::PolicyOutcome {
            policy: p.id.clone(),
            version: p.version,
            name,
            lead,
            states: compact_states,
            outcome: s.outcome as i32,
            amount: s.amount,
            period,
            conditions,
        });
    }
    pb::EligibilityReply {
        pin: Some(served.pin(policies.iter().map(|p| p.policy.as_str()))),
        key: lookup.shown_key.clone(),
        kind: lookup.kind.to_string(),
        policies,
    }
}

/// The reply without `because`, written from the generation's templates: the bytes prost
/// writes for [`message`]'s reply.
pub fn encode(served: &Served, lookup: &Lookup<'_>) -> Encoded {
    let templates = &served.templates;
    let standings: Vec<(Standing<'_>, &PolicyTemplate)> = lookup
        .standings(served)
        .filter_map(|s| {
            let t = templates.policies.get(&s.policy.id)?;
            Some((s, t))
        })
        .collect();
    let mut out = Vec::with_capacity(2048);
    let versions = standings
        .iter()
        .map(|(_, t)| t.version.len())
        .sum::<usize>();
    delimited(1, templates.pin.len() + versions, &mut out);
    out.extend_from_slice(&templates.pin);
    for (_, t) in &standings {
        out.extend_from_slice(&t.version);
    }
    for (tag, s) in [(2, &lookup.shown_key[..]), (3, lookup.kind)] {
        if !s.is_empty() {
            delimited(tag, s.len(), &mut out);
            out.extend_from_slice(s.as_bytes());
        }
    }
    let mut body = Vec::with_capacity(512);
    for (s, t) in &standings {
        body.clear();
        body.extend_from_slice(&t.id);
        if !lookup.compact {
            body.extend_from_slice(&t.names);
        }
        encoding::int32::encode(5, &(s.outcome as i32), &mut body);
        if let Some(a) = s.amount {
            encoding::double::encode(6, &a, &mut body);
        }
        if lookup.compact {
            let states: Vec<i32> = s.states.iter().map(|x| state(*x) as i32).collect();
            encoding::int32::encode_packed(9, &states, &mut body);
        } else {
            body.extend_from_slice(&t.period);
            for (x, (name, text)) in s.states.iter().zip(&t.conditions) {
                let text: &[u8] = if lookup.with_text { text } else { &[] };
                // The state is always set (no state is 0): one key byte and one value byte.
                delimited(8, name.len() + text.len() + 2, &mut body);
                body.extend_from_slice(name);
                body.extend_from_slice(text);
                encoding::int32::encode(3, &(state(*x) as i32), &mut body);
            }
        }
        delimited(4, body.len(), &mut out);
        out.extend_from_slice(&body);
    }
    Encoded(out)
}

/// The key and length of a length-delimited field.
fn delimited(tag: u32, len: usize, out: &mut Vec<u8>) {
    encoding::encode_key(tag, WireType::LengthDelimited, out);
    encoding::encode_varint(len as u64, out);
}

#[tonic::async_trait]
impl Eligibility for EligibilityService {
    async fn check(
        &self,
        req: Request<pb::EligibilityRequest>,
    ) -> Result<Response<Encoded>, Status> {
        handle(&self.0, "Eligibility/Check", req, |caller, r| async move {
            let served = self.0.served();
            let lookup = Lookup::new(&served, &caller, &r)?;
            let reply = if r.explain {
                let because = explain_values(&self.0, &served, &lookup).await?;
                Encoded(message(&served, &lookup, because).encode_to_vec())
            } else {
                encode(&served, &lookup)
            };
            let fields: &[&str] = if r.explain {
                &["eligibility", "conditions", "values read"]
            } else {
                &["eligibility", "conditions"]
            };
            self.0
                .audit
                .read(&caller, "Eligibility/Check", &lookup.key, fields);
            Ok(reply)
        })
        .await
    }
}

/// The values each condition of the lookup's policies read, by policy id: the entity
/// evaluated afresh, one heavy request at a time.
async fn explain_values(
    shared: &Shared,
    served: &Arc<Served>,
    lookup: &Lookup<'_>,
) -> Result<HashMap<String, Vec<Vec<String>>>, Status> {
    let (ids, k) = (lookup.explained(), lookup.key.clone());
    shared
        .on_engine(served, move |engine| {
            ids.into_iter()
                .filter_map(|id| {
                    let x = explain::explain(engine, &id, &k, &HashMap::new()).ok()?;
                    Some((id, x.conditions.into_iter().map(|c| c.because).collect()))
                })
                .collect()
        })
        .await
}
