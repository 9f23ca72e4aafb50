//! Authentication and authorization: every call carries `authorization: Bearer <token>`; the
//! token names a caller with a role and a department.
//!
//! | role | may |
//! | --- | --- |
//! | service | candidate sets, workflow and profiles for the policies its department leads |
//! | analyst | counts, what-if, policy validation: aggregates, personal fields masked |
//! | hotline | one entity at a time by exact key: eligibility and profile, masked |
//! | supervisor | counts and the supervision report |
//! | admin | everything, reload and catalogue loads |
//!
//! No token or an unknown one → UNAUTHENTICATED; a role or department that may not →
//! PERMISSION_DENIED.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use tonic::{Request, Status};

use super::config::TokenConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Service,
    Analyst,
    Hotline,
    Supervisor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Service => "service",
            Role::Analyst => "analyst",
            Role::Hotline => "hotline",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub department: String,
}

impl Caller {
    /// PERMISSION_DENIED unless the caller has one of `roles` (admin always may).
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), Status> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} ({}) may not {what}",
                self.name,
                self.role.as_str()
            )))
        }
    }

    /// Whether the caller may see the entities of a policy led by `lead`.
    pub fn sees_policy(&self, lead: &str) -> bool {
        match self.role {
            Role::Service => self.department == lead,
            Role::Admin | Role::Hotline => true,
            Role::Analyst | Role::Supervisor => false,
        }
    }

    /// PERMISSION_DENIED unless the caller may see the entities of a policy led by `lead`.
    pub fn require_policy(&self, policy: &str, lead: &str) -> Result<(), Status> {
        if self.sees_policy(lead) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{} ({} of {}) may not read the entities of {policy}, which {lead} leads",
                self.name,
                self.role.as_str(),
                if self.department.is_empty() {
                    "no department"
                } else {
                    &self.department
                }
            )))
        }
    }

    /// Whether personal fields are shown unmasked.
    pub fn sees_personal(&self) -> bool {
        matches!(self.role, Role::Service | Role::Admin)
    }
}

/// The tokens, as an interceptor that puts the [`Caller`] into each request.
#[derive(Debug, Clone)]
pub struct Authenticate {
    tokens: Arc<HashMap<String, Arc<Caller>>>,
}

impl Authenticate {
    pub fn new(tokens: &[TokenConfig]) -> Authenticate {
        Authenticate {
            tokens: Arc::new(
                tokens
                    .iter()
                    .map(|t| {
                        (
                            t.token.clone(),
                            Arc::new(Caller {
                                name: t.name.clone(),
                                role: t.role,
                                department: t.department.clone(),
                            }),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

impl tonic::service::Interceptor for Authenticate {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let header = req
            .metadata()
            .get("authorization")
            .ok_or_else(|| Status::unauthenticated("no authorization: Bearer <token> header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or(h.strip_prefix("bearer ")))
            .ok_or_else(|| Status::unauthenticated("authorization is not `Bearer <token>`"))?;
        let caller = self
            .tokens
            .get(token.trim())
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))?;
        req.extensions_mut().insert(caller);
        Ok(req)
    }
}

/// The caller the interceptor found.
pub fn caller<T>(req: &Request<T>) -> Result<Arc<Caller>, Status> {
    req.extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no caller"))
}
