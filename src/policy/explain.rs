//! Explanations: for one entity and one policy, every condition's state and the values that
//! decided it, and the amount.

use std::collections::HashMap;
use std::fmt::Write;

use super::ast::{Lit, Tri};
use super::engine::{Engine, EngineError};
use super::eval::{At, Evaluator, fmt_num};

/// Where an entity stands with a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every condition TRUE.
    Candidate,
    /// No condition FALSE, some UNKNOWN.
    ToVerify,
    /// Exactly one condition FALSE.
    NearMiss,
    Ineligible,
    /// The entity is not of the policy's subject kind.
    NotSubject,
}

impl Outcome {
    /// Where an entity of the policy's subject kind stands, given each condition's state: the
    /// rules of the engine's candidate, to-verify and near-miss sets.
    pub fn of(states: &[Tri]) -> Outcome {
        let falses = states.iter().filter(|t| **t == Tri::False).count();
        if states.iter().all(|t| *t == Tri::True) {
            Outcome::Candidate
        } else if falses == 0 {
            Outcome::ToVerify
        } else if falses == 1 {
            Outcome::NearMiss
        } else {
            Outcome::Ineligible
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Candidate => "candidate",
            Outcome::ToVerify => "to verify",
            Outcome::NearMiss => "near miss",
            Outcome::Ineligible => "not eligible",
            Outcome::NotSubject => "not a subject of this policy",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConditionExplained {
    pub name: String,
    /// The condition as written.
    pub text: String,
    pub state: Tri,
    /// What the evaluation read: fields with values, aggregates, related entities.
    pub because: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub policy: String,
    pub version: u32,
    pub key: String,
    pub kind: String,
    pub as_of: String,
    pub outcome: Outcome,
    pub conditions: Vec<ConditionExplained>,
    /// The amount when it can be computed; `None` with the reason otherwise.
    pub amount: Option<f64>,
    pub amount_note: Vec<String>,
}

impl Explanation {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} v{} for {} ({}), as of {}: {}",
            self.policy,
            self.version,
            self.key,
            self.kind,
            self.as_of,
            self.outcome.as_str()
        );
        for c in &self.conditions {
            let _ = writeln!(s, "  {:<8} {:<14} {}", c.state.as_str(), c.name, c.text);
            for b in &c.because {
                let _ = writeln!(s, "             · {b}");
            }
        }
        match self.amount {
            Some(a) => {
                let _ = writeln!(s, "  amount   {}", fmt_num(a));
            }
            None => {
                let _ = writeln!(s, "  amount   –");
            }
        }
        for b in &self.amount_note {
            let _ = writeln!(s, "             · {b}");
        }
        s
    }
}

/// Explains policy `id` for the entity with stable key `key`.
pub fn explain(
    engine: &mut Engine<'_>,
    id: &str,
    key: &str,
    overrides: &HashMap<String, Lit>,
) -> Result<Explanation, EngineError> {
    let policy = engine.catalogue_policy(id)?;
    engine.run_referenced(&policy)?;
    let p = &policy;
    let e = engine
        .env
        .snap
        .entity_of_key(key)
        .ok()
        .flatten()
        .ok_or_else(|| EngineError::Param(format!("no entity has the key {key}")))?;
    let kind = engine.env.snap.kind(e).unwrap_or("?").to_string();
    let compiled = engine.compile(p, overrides)?;
    let ev = Evaluator::new(&engine.env);
    let mut conditions = Vec::new();
    for ((name, node), c) in compiled.conditions.iter().zip(&p.conditions) {
        let mut because: Vec<String> = Vec::new();
        let state = ev.tri(node, At::entity(e), &mut because);
        because.dedup();
        conditions.push(ConditionExplained {
            name: name.clone(),
            text: super::render::expr(&c.expr),
            state,
            because,
        });
    }
    let outcome = if kind != p.subject {
        Outcome::NotSubject
    } else {
        let states: Vec<Tri> = conditions.iter().map(|c| c.state).collect();
        Outcome::of(&states)
    };
    let mut amount_note = Vec::new();
    let amount = compiled
        .amount
        .as_ref()
        .and_then(|n| ev.val(n, At::entity(e), &mut amount_note).v.amount());
    Ok(Explanation {
        policy: p.id.clone(),
        version: p.version,
        key: key.to_string(),
        kind,
        as_of: engine.as_of().to_string(),
        outcome,
        conditions,
        amount,
        amount_note,
    })
}
