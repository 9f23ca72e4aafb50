//! Domain errors → gRPC status codes, with details a caller can act on.
//!
//! A policy that does not check comes back as INVALID_ARGUMENT with a `google.rpc.BadRequest`
//! detail: one field violation per diagnostic, its field `file:line:col`.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

use crate::policy::check::Diagnostic;
use crate::policy::engine::EngineError;
use crate::workflow::WorkflowError;

pub fn diagnostics(d: &[Diagnostic]) -> Status {
    let lines: Vec<String> = d.iter().map(|x| x.to_string()).collect();
    let violations: Vec<FieldViolation> = d
        .iter()
        .map(|x| FieldViolation::new(format!("{}:{}", x.file.display(), x.pos), x.msg.clone()))
        .collect();
    Status::with_error_details(
        Code::InvalidArgument,
        format!(
            "{} problem(s) in the policy:\n{}",
            d.len(),
            lines.join("\n")
        ),
        ErrorDetails::with_bad_request(violations),
    )
}

pub fn engine(e: EngineError) -> Status {
    match e {
        EngineError::NoPolicy(_) => Status::not_found(e.to_string()),
        EngineError::Param(_) | EngineError::Compile { .. } => {
            Status::invalid_argument(e.to_string())
        }
    }
}

pub fn workflow(e: WorkflowError) -> Status {
    match e {
        WorkflowError::Transition { .. } => Status::failed_precondition(e.to_string()),
        WorkflowError::Invalid(_) => Status::invalid_argument(e.to_string()),
        WorkflowError::Store(msg) => {
            eprintln!("mianshen serve: workflow store: {msg}");
            Status::unavailable("the workflow store failed; nothing was recorded, retry")
        }
    }
}

/// A blocking task that died (a bug): logged, and INTERNAL to the caller.
pub fn join(e: tokio::task::JoinError) -> Status {
    eprintln!("mianshen serve: a request task failed: {e}");
    Status::internal("the request failed inside the server; it has been logged")
}
