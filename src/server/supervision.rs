//! Supervision: reach rate, fulfilment rate, time to pay and rejection reasons, per policy and
//! lead department, from the workflow ledger and the served candidate sets.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::Role;
use super::pb::v1::{self as pb, supervision_server::Supervision};
use super::{Shared, handle, status};
use crate::workflow::State;

#[derive(Debug)]
pub struct SupervisionService(pub Arc<Shared>);

/// The `q`-quantile of sorted values (nearest rank); 0 for none.
fn quantile(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[tonic::async_trait]
impl Supervision for SupervisionService {
    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportReply>, Status> {
        handle(&self.0, "Supervision/Report", req, |caller, r| async move {
            caller.require(&[Role::Supervisor], "read supervision reports")?;
            let served = self.0.served();
            for id in &r.policies {
                if served.policy(id).is_none() {
                    return Err(Status::not_found(format!(
                        "no policy {id} in the served catalogue"
                    )));
                }
            }
            let chosen: Vec<(String, String, u64)> = served
                .policies
                .iter()
                .filter(|p| r.policies.is_empty() || r.policies.contains(&p.id))
                .filter(|p| r.department.is_empty() || p.lead == r.department)
                .map(|p| {
                    let n = served.runs.get(&p.id).map_or(0, |x| x.candidates.len());
                    (p.id.clone(), p.lead.clone(), n)
                })
                .collect();
            let ledger = self.0.ledger.clone();
            let figures = tokio::task::spawn_blocking(move || {
                chosen
                    .into_iter()
                    .map(|(id, lead, n)| Ok((ledger.figures(&id)?, id, lead, n)))
                    .collect::<Result<Vec<_>, crate::workflow::WorkflowError>>()
            })
            .await
            .map_err(status::join)?
            .map_err(status::workflow)?;
            let policies = figures
                .into_iter()
                .map(|(f, id, lead, candidates)| {
                    let n = |s: State| f.by_state.get(&s).copied().unwrap_or(0);
                    pb::PolicyReport {
                        policy: id,
                        department: lead,
                        candidates,
                        pushed: f.pushed,
                        confirmed: f.confirmed,
                        rejected: n(State::Rejected),
                        doubted: n(State::Doubted),
                        paid: f.paid,
                        returned: n(State::Returned),
                        clawed_back: n(State::ClawedBack),
                        reach_rate: ratio(f.pushed, candidates),
                        fulfilment_rate: ratio(f.paid, f.confirmed),
                        time_to_pay_p50: quantile(&f.time_to_pay, 0.5),
                        time_to_pay_p90: quantile(&f.time_to_pay, 0.9),
                        amount_paid: f.amount_paid,
                        rejection_reasons: f
                            .rejection_reasons
                            .into_iter()
                            .map(|(reason, count)| pb::ReasonCount { reason, count })
                            .collect(),
                    }
                })
                .collect::<Vec<_>>();
            Ok(pb::ReportReply {
                pin: Some(served.pin(policies.iter().map(|p| p.policy.as_str()))),
                policies,
            })
        })
        .await
    }
}
