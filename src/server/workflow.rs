//! Workflow: the lead departments' push → confirm / reject / doubt → payment → return or
//! clawback, per policy and entity, written to the ledger and durable before the reply.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::Role;
use super::candidates::readable;
use super::pb::v1::{self as pb, workflow_server::Workflow};
use super::state::unix_now;
use super::{Shared, handle, status};
use crate::workflow::{Action, NewStep, State};

#[derive(Debug)]
pub struct WorkflowService(pub Arc<Shared>);

pub fn action_of(a: i32) -> Result<Action, Status> {
    Ok(match pb::Action::try_from(a) {
        Ok(pb::Action::Push) => Action::Push,
        Ok(pb::Action::Confirm) => Action::Confirm,
        Ok(pb::Action::Reject) => Action::Reject,
        Ok(pb::Action::Doubt) => Action::Doubt,
        Ok(pb::Action::Pay) => Action::Pay,
        Ok(pb::Action::Return) => Action::Return,
        Ok(pb::Action::Clawback) => Action::Clawback,
        _ => {
            return Err(Status::invalid_argument(format!(
                "action {a} is not a workflow action"
            )));
        }
    })
}

pub fn action_pb(a: Action) -> pb::Action {
    match a {
        Action::Push => pb::Action::Push,
        Action::Confirm => pb::Action::Confirm,
        Action::Reject => pb::Action::Reject,
        Action::Doubt => pb::Action::Doubt,
        Action::Pay => pb::Action::Pay,
        Action::Return => pb::Action::Return,
        Action::Clawback => pb::Action::Clawback,
    }
}

pub fn state_pb(s: State) -> pb::WorkState {
    match s {
        State::Pushed => pb::WorkState::Pushed,
        State::Confirmed => pb::WorkState::Confirmed,
        State::Rejected => pb::WorkState::Rejected,
        State::Doubted => pb::WorkState::Doubted,
        State::Paid => pb::WorkState::Paid,
        State::Returned => pb::WorkState::Returned,
        State::ClawedBack => pb::WorkState::ClawedBack,
    }
}

fn state_of(s: i32) -> Result<State, Status> {
    State::ALL
        .into_iter()
        .find(|x| state_pb(*x) as i32 == s)
        .ok_or_else(|| Status::invalid_argument(format!("{s} is not a work state")))
}

#[tonic::async_trait]
impl Workflow for WorkflowService {
    type PendingStream = tokio_stream::Iter<std::vec::IntoIter<Result<pb::WorkItem, Status>>>;

    async fn push(&self, req: Request<pb::PushRequest>) -> Result<Response<pb::PushReply>, Status> {
        handle(&self.0, "Workflow/Push", req, |caller, r| async move {
            caller.require(&[Role::Service], "push candidates")?;
            let served = self.0.served();
            let (_, run) = readable(&served, &caller, &r.policy)?;
            let keys: Vec<String> = if r.keys.is_empty() {
                served.keys_of(&run.candidates).into_iter().collect()
            } else {
                let mut keys = Vec::with_capacity(r.keys.len());
                for k in &r.keys {
                    let (e, key) = served.entity_of(k).ok_or_else(|| {
                        Status::invalid_argument(format!("no entity has the key {k}"))
                    })?;
                    if !run.candidates.contains(e) && !run.to_verify.contains(e) {
                        return Err(Status::failed_precondition(format!(
                            "{k} is neither a candidate nor to be verified for {} in generation {}",
                            r.policy, served.generation
                        )));
                    }
                    keys.push(key);
                }
                keys
            };
            let step = NewStep {
                actor: caller.name.clone(),
                department: caller.department.clone(),
                at: unix_now(),
                generation: served.generation,
                ..Default::default()
            };
            let ledger = self.0.ledger.clone();
            let policy = r.policy.clone();
            let (pushed, already) =
                tokio::task::spawn_blocking(move || ledger.push(&policy, &keys, &step))
                    .await
                    .map_err(status::join)?
                    .map_err(status::workflow)?;
            Ok(pb::PushReply {
                pin: Some(served.pin([r.policy.as_str()])),
                pushed,
                already,
            })
        })
        .await
    }

    async fn record(
        &self,
        req: Request<pb::RecordRequest>,
    ) -> Result<Response<pb::RecordReply>, Status> {
        handle(&self.0, "Workflow/Record", req, |caller, r| async move {
            caller.require(&[Role::Service], "record workflow steps")?;
            let served = self.0.served();
            readable(&served, &caller, &r.policy)?;
            let action = action_of(r.action)?;
            if action == Action::Push {
                return Err(Status::invalid_argument("push with Workflow.Push"));
            }
            if r.key.trim().is_empty() {
                return Err(Status::invalid_argument("name the entity's key"));
            }
            let step = NewStep {
                reason: r.reason.clone(),
                amount: r.amount,
                reference: r.reference.clone(),
                actor: caller.name.clone(),
                department: caller.department.clone(),
                request_id: r.request_id.clone(),
                at: unix_now(),
                generation: served.generation,
            };
            let ledger = self.0.ledger.clone();
            let pin = served.pin([r.policy.as_str()]);
            let rec = tokio::task::spawn_blocking(move || {
                ledger.record(&r.policy, r.key.trim(), action, &step)
            })
            .await
            .map_err(status::join)?
            .map_err(status::workflow)?;
            Ok(pb::RecordReply {
                seq: rec.seq,
                state: state_pb(rec.state) as i32,
                replayed: rec.replayed,
                pin: Some(pin),
            })
        })
        .await
    }

    async fn pending(
        &self,
        req: Request<pb::PendingRequest>,
    ) -> Result<Response<Self::PendingStream>, Status> {
        handle(&self.0, "Workflow/Pending", req, |caller, r| async move {
            caller.require(&[Role::Service], "list work items")?;
            let served = self.0.served();
            readable(&served, &caller, &r.policy)?;
            let states: Vec<State> = if r.states.is_empty() {
                vec![State::Pushed, State::Doubted]
            } else {
                r.states
                    .iter()
                    .map(|s| state_of(*s))
                    .collect::<Result<_, _>>()?
            };
            let limit = match r.limit {
                0 => 1000,
                n => (n as usize).min(100_000),
            };
            let ledger = self.0.ledger.clone();
            let policy = r.policy.clone();
            let items = tokio::task::spawn_blocking(move || {
                ledger.items(&policy, &states, &r.after_key, limit)
            })
            .await
            .map_err(status::join)?
            .map_err(status::workflow)?;
            self.0.audit.read(
                &caller,
                "Workflow/Pending",
                &format!("{} work items ({})", r.policy, items.len()),
                &["key", "state"],
            );
            let out: Vec<Result<pb::WorkItem, Status>> = items
                .into_iter()
                .map(|(key, i)| {
                    Ok(pb::WorkItem {
                        policy: r.policy.clone(),
                        key,
                        state: state_pb(i.state) as i32,
                        pushed_at: i.pushed_at,
                        updated_at: i.updated_at,
                        generation: i.generation,
                    })
                })
                .collect();
            Ok(tokio_stream::iter(out))
        })
        .await
    }

    async fn history(
        &self,
        req: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryReply>, Status> {
        handle(&self.0, "Workflow/History", req, |caller, r| async move {
            caller.require(&[Role::Service], "read an entity's workflow history")?;
            let served = self.0.served();
            readable(&served, &caller, &r.policy)?;
            let ledger = self.0.ledger.clone();
            let (policy, key) = (r.policy.clone(), r.key.clone());
            let steps = tokio::task::spawn_blocking(move || ledger.history(&policy, &key))
                .await
                .map_err(status::join)?
                .map_err(status::workflow)?;
            self.0
                .audit
                .read(&caller, "Workflow/History", &r.key, &["workflow steps"]);
            Ok(pb::HistoryReply {
                pin: Some(served.pin([r.policy.as_str()])),
                steps: steps
                    .into_iter()
                    .map(|s| pb::Step {
                        seq: s.seq,
                        action: action_pb(s.action) as i32,
                        state: state_pb(s.state) as i32,
                        reason: s.reason,
                        amount: s.amount,
                        reference: s.reference,
                        actor: s.actor,
                        department: s.department,
                        at: s.at,
                        generation: s.generation,
                    })
                    .collect(),
            })
        })
        .await
    }
}
