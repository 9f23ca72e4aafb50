//! Match: candidate sets (streamed in columnar batches, or as roaring bytes), counts, and
//! diffs between generations, for the policies' lead departments.

use std::pin::Pin as StdPin;
use std::sync::Arc;

use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::auth::{Caller, Role};
use super::pb::v1::{self as pb, match_server::Match};
use super::state::Served;
use super::{Shared, handle};
use crate::policy::ast::Policy;
use crate::policy::engine::PolicyRun;

#[derive(Debug)]
pub struct MatchService(pub Arc<Shared>);

type BoxStream<T> = StdPin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Flag bits of a streamed entity.
pub const FLAG_TO_VERIFY: u32 = 1;
pub const FLAG_AMOUNT_UNKNOWN: u32 = 2;

const DEFAULT_BATCH: usize = 4096;
const MAX_BATCH: usize = 65_536;

/// The policy, its run, and whether the caller may read its entities.
pub fn readable<'s>(
    served: &'s Served,
    caller: &Caller,
    id: &str,
) -> Result<(&'s Policy, &'s PolicyRun), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("name a policy"));
    }
    let p = served
        .policy(id)
        .ok_or_else(|| Status::not_found(format!("no policy {id} in the served catalogue")))?;
    caller.require_policy(id, &p.lead)?;
    let run = served
        .runs
        .get(id)
        .ok_or_else(|| Status::internal(format!("{id} has no result")))?;
    Ok((p, run))
}

fn set_kind(v: i32) -> Result<pb::SetKind, Status> {
    pb::SetKind::try_from(v).map_err(|_| Status::invalid_argument(format!("no set kind {v}")))
}

#[tonic::async_trait]
impl Match for MatchService {
    type CandidatesStream = BoxStream<pb::CandidateBatch>;
    type DiffStream = BoxStream<pb::DiffBatch>;

    async fn candidates(
        &self,
        req: Request<pb::CandidatesRequest>,
    ) -> Result<Response<Self::CandidatesStream>, Status> {
        handle(&self.0, "Match/Candidates", req, |caller, r| async move {
            caller.require(&[Role::Service], "read candidate sets")?;
            let served = self.0.served();
            let (_, run) = readable(&served, &caller, &r.policy)?;
            let set = set_kind(r.set)?;
            let batch = match r.batch_size as usize {
                0 => DEFAULT_BATCH,
                n => n.min(MAX_BATCH),
            };
            let limit = if r.limit == 0 { u64::MAX } else { r.limit };
            let count = served.set_of(run, set).len().min(limit);
            self.0.audit.read(
                &caller,
                "Match/Candidates",
                &format!(
                    "{} {} of generation {} ({count} entities)",
                    r.policy,
                    set.as_str_name(),
                    served.generation
                ),
                if r.with_keys {
                    &["entity", "key", "amount"]
                } else {
                    &["entity", "amount"]
                },
            );
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let policy = r.policy.clone();
            tokio::task::spawn_blocking(move || {
                stream_set(&served, &policy, set, batch, r.with_keys, limit, &tx);
            });
            Ok(Box::pin(ReceiverStream::new(rx)) as Self::CandidatesStream)
        })
        .await
    }

    async fn bitmap(
        &self,
        req: Request<pb::CandidatesRequest>,
    ) -> Result<Response<pb::BitmapReply>, Status> {
        handle(&self.0, "Match/Bitmap", req, |caller, r| async move {
            caller.require(&[Role::Service], "read candidate sets")?;
            let served = self.0.served();
            let (_, run) = readable(&served, &caller, &r.policy)?;
            let kind = set_kind(r.set)?;
            let set = served.set_of(run, kind);
            let mut bytes = Vec::with_capacity(set.serialized_size());
            set.serialize_into(&mut bytes)
                .map_err(|e| Status::internal(format!("serializing the bitmap: {e}")))?;
            self.0.audit.read(
                &caller,
                "Match/Bitmap",
                &format!(
                    "{} {} of generation {} ({} entities)",
                    r.policy,
                    kind.as_str_name(),
                    served.generation,
                    set.len()
                ),
                &["entity"],
            );
            Ok(pb::BitmapReply {
                pin: Some(served.pin([r.policy.as_str()])),
                count: set.len(),
                roaring: bytes,
            })
        })
        .await
    }

    async fn count(
        &self,
        req: Request<pb::CountRequest>,
    ) -> Result<Response<pb::CountReply>, Status> {
        handle(&self.0, "Match/Count", req, |_caller, r| async move {
            let served = self.0.served();
            let ids: Vec<String> = if r.policies.is_empty() {
                served.policies.iter().map(|p| p.id.clone()).collect()
            } else {
                r.policies.clone()
            };
            let mut counts = Vec::with_capacity(ids.len());
            for id in &ids {
                let p = served.policy(id).ok_or_else(|| {
                    Status::not_found(format!("no policy {id} in the served catalogue"))
                })?;
                let Some(run) = served.runs.get(id) else {
                    continue;
                };
                counts.push(pb::PolicyCount {
                    policy: p.id.clone(),
                    version: p.version,
                    name: p.name.clone(),
                    lead: p.lead.clone(),
                    subject: p.subject.clone(),
                    universe: run.universe,
                    candidates: run.candidates.len(),
                    to_verify: run.to_verify.len(),
                    near_miss: run.near_miss.len(),
                    total_amount: run.total,
                    period: super::eligibility::period(p),
                });
            }
            Ok(pb::CountReply {
                pin: Some(served.pin(ids.iter().map(String::as_str))),
                counts,
            })
        })
        .await
    }

    async fn diff(
        &self,
        req: Request<pb::DiffRequest>,
    ) -> Result<Response<Self::DiffStream>, Status> {
        handle(&self.0, "Match/Diff", req, |caller, r| async move {
            caller.require(&[Role::Service], "read candidate sets")?;
            let served = self.0.served();
            let (_, run) = readable(&served, &caller, &r.policy)?;
            let ledger = self.0.ledger.clone();
            let (policy, since) = (r.policy.clone(), r.since_generation);
            let old = tokio::task::spawn_blocking(move || ledger.candidates(&policy, since))
                .await
                .map_err(super::status::join)?
                .map_err(super::status::workflow)?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "generation {} of {} was never served here: no candidates to compare with",
                        r.since_generation, r.policy
                    ))
                })?;
            let now = served.keys_of(&run.candidates);
            let newly: Vec<String> = now.difference(&old).cloned().collect();
            let gone: Vec<String> = old.difference(&now).cloned().collect();
            self.0.audit.read(
                &caller,
                "Match/Diff",
                &format!(
                    "{} candidates, generation {} against {} (+{} −{})",
                    r.policy,
                    served.generation,
                    r.since_generation,
                    newly.len(),
                    gone.len()
                ),
                &["key"],
            );
            let batch = match r.batch_size as usize {
                0 => DEFAULT_BATCH,
                n => n.min(MAX_BATCH),
            };
            let mut out = Vec::new();
            let mut pin = Some(served.pin([r.policy.as_str()]));
            let (mut a, mut b) = (newly.chunks(batch), gone.chunks(batch));
            loop {
                let (x, y) = (a.next(), b.next());
                if x.is_none() && y.is_none() && pin.is_none() {
                    break;
                }
                out.push(Ok(pb::DiffBatch {
                    pin: pin.take(),
                    newly_eligible: x.map(<[String]>::to_vec).unwrap_or_default(),
                    no_longer_eligible: y.map(<[String]>::to_vec).unwrap_or_default(),
                }));
            }
            Ok(Box::pin(tokio_stream::iter(out)) as Self::DiffStream)
        })
        .await
    }
}

/// Sends a set in batches; stops quietly when the client goes away.
fn stream_set(
    served: &Served,
    policy: &str,
    set: pb::SetKind,
    batch: usize,
    with_keys: bool,
    limit: u64,
    tx: &tokio::sync::mpsc::Sender<Result<pb::CandidateBatch, Status>>,
) {
    let Some(run) = served.runs.get(policy) else {
        return;
    };
    let bits = served.set_of(run, set);
    let snap = served.snap();
    let mut amounts = run.amount_list().peekable();
    // The set's to-verify members, walked beside the set (a merge, not a probe per entity).
    let doubtful = if set == pb::SetKind::Candidates {
        roaring::RoaringBitmap::new()
    } else {
        bits & &**run.to_verify.set()
    };
    let mut doubtful = doubtful.iter().peekable();
    let mut b = pb::CandidateBatch {
        pin: Some(served.pin([policy])),
        ..Default::default()
    };
    let mut sent = 0u64;
    for e in bits.iter().take(limit.min(bits.len()) as usize) {
        while amounts.next_if(|(x, _)| *x < e).is_some() {}
        let amount = amounts.next_if(|(x, _)| *x == e).map(|(_, a)| a);
        let mut flags = 0;
        if doubtful.next_if(|&x| x == e).is_some() {
            flags |= FLAG_TO_VERIFY;
        }
        if amount.is_none() && set == pb::SetKind::Candidates {
            flags |= FLAG_AMOUNT_UNKNOWN;
        }
        b.entities.push(e);
        if set == pb::SetKind::Candidates {
            b.amounts.push(amount.unwrap_or(f64::NAN));
        }
        b.flags.push(flags);
        if with_keys {
            b.keys.push(snap.key(e).unwrap_or_default().to_string());
        }
        sent += 1;
        if b.entities.len() >= batch {
            let full = std::mem::take(&mut b);
            if tx.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    b.total = sent;
    let _ = tx.blocking_send(Ok(b));
}
