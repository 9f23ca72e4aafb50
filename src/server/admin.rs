//! Admin: what is served and where it came from, reload (verified before it is swapped in),
//! the policy catalogue (validate, load), and metrics.

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::Role;
use super::pb::v1::{self as pb, admin_server::Admin};
use super::state::LoadError;
use super::{Shared, handle};
use crate::policy::check::{Diagnostic, load_texts};
use crate::policy::schema::Schema;

#[derive(Debug)]
pub struct AdminService(pub Arc<Shared>);

fn diagnostics_pb(d: &[Diagnostic]) -> Vec<pb::Diagnostic> {
    d.iter()
        .map(|x| pb::Diagnostic {
            file: x.file.display().to_string(),
            line: x.pos.line,
            column: x.pos.col,
            message: x.msg.clone(),
        })
        .collect()
}

fn files_of(r: &pb::PoliciesRequest) -> Result<Vec<(PathBuf, String)>, Status> {
    if r.files.is_empty() {
        return Err(Status::invalid_argument("no policy files"));
    }
    Ok(r.files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let name = if f.name.is_empty() {
                format!("file{}.policy", i + 1)
            } else {
                f.name.clone()
            };
            (PathBuf::from(name), f.text.clone())
        })
        .collect())
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn info(&self, req: Request<pb::InfoRequest>) -> Result<Response<pb::InfoReply>, Status> {
        handle(&self.0, "Admin/Info", req, |_caller, _r| async move {
            let s = self.0.served();
            let snap = s.snap();
            Ok(pb::InfoReply {
                pin: Some(s.pin(s.policies.iter().map(|p| p.id.as_str()))),
                snapshot: snap.dir().display().to_string(),
                entities: snap.entity_count() as u64,
                bytes: snap.container().len(),
                meta: snap.meta_all().iter().cloned().collect(),
                policies: s
                    .policies
                    .iter()
                    .map(|p| pb::PolicyInfo {
                        id: p.id.clone(),
                        version: p.version,
                        name: p.name.clone(),
                        domain: p.domain.clone(),
                        subject: p.subject.clone(),
                        lead: p.lead.clone(),
                        mode: p.mode.clone(),
                        article: p.article.clone(),
                        conditions: p.conditions.iter().map(|c| c.name.clone()).collect(),
                    })
                    .collect(),
                serving_since: s.serving_since,
                evaluated_seconds: s.evaluated_seconds,
            })
        })
        .await
    }

    async fn reload(
        &self,
        req: Request<pb::ReloadRequest>,
    ) -> Result<Response<pb::ReloadReply>, Status> {
        handle(&self.0, "Admin/Reload", req, |caller, r| async move {
            caller.require(&[], "reload snapshots")?;
            let started = std::time::Instant::now();
            let dir = (!r.snapshot.is_empty()).then(|| PathBuf::from(&r.snapshot));
            let (new, previous) = self.0.reload(dir, None).await.map_err(|e| match e {
                LoadError::Catalogue { diagnostics, .. } => {
                    super::status::diagnostics(&diagnostics)
                }
                e => Status::failed_precondition(format!(
                    "refused; the previous generation keeps serving: {e}"
                )),
            })?;
            Ok(pb::ReloadReply {
                pin: Some(new.pin(new.policies.iter().map(|p| p.id.as_str()))),
                previous_generation: previous,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
        .await
    }

    async fn validate_policies(
        &self,
        req: Request<pb::PoliciesRequest>,
    ) -> Result<Response<pb::ValidateReply>, Status> {
        handle(
            &self.0,
            "Admin/ValidatePolicies",
            req,
            |caller, r| async move {
                caller.require(&[Role::Analyst], "validate policies")?;
                let files = files_of(&r)?;
                let served = self.0.served();
                let schema = Schema::of_snapshot(served.snap());
                Ok(match load_texts(&files, &schema) {
                    Ok(cat) => pb::ValidateReply {
                        ok: true,
                        diagnostics: Vec::new(),
                        policies: cat.policies.iter().map(|c| c.policy.id.clone()).collect(),
                    },
                    Err(d) => pb::ValidateReply {
                        ok: false,
                        diagnostics: diagnostics_pb(&d),
                        policies: Vec::new(),
                    },
                })
            },
        )
        .await
    }

    async fn load_policies(
        &self,
        req: Request<pb::PoliciesRequest>,
    ) -> Result<Response<pb::ValidateReply>, Status> {
        handle(&self.0, "Admin/LoadPolicies", req, |caller, r| async move {
            caller.require(&[], "load policy catalogues")?;
            let files = files_of(&r)?;
            match self.0.reload(None, Some(files)).await {
                Ok((new, _)) => Ok(pb::ValidateReply {
                    ok: true,
                    diagnostics: Vec::new(),
                    policies: new.policies.iter().map(|p| p.id.clone()).collect(),
                }),
                Err(LoadError::Catalogue { diagnostics, .. }) => Ok(pb::ValidateReply {
                    ok: false,
                    diagnostics: diagnostics_pb(&diagnostics),
                    policies: Vec::new(),
                }),
                Err(e) => Err(Status::failed_precondition(format!(
                    "refused; the previous catalogue keeps serving: {e}"
                ))),
            }
        })
        .await
    }

    async fn metrics(
        &self,
        req: Request<pb::MetricsRequest>,
    ) -> Result<Response<pb::MetricsReply>, Status> {
        handle(&self.0, "Admin/Metrics", req, |caller, _r| async move {
            caller.require(&[Role::Supervisor], "read metrics")?;
            Ok(pb::MetricsReply {
                text: self.0.metrics_text(),
            })
        })
        .await
    }
}
