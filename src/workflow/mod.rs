//! The workflow ledger: what happened to each candidate, durable before it is acknowledged.
//!
//! Per policy and entity (by stable key), a work item moves through
//!
//! ```text
//! push ─► pushed ─┬─► confirmed ─► paid ─┬─► returned ─► paid …
//!                 ├─► doubted ─► confirmed | rejected │
//!                 └─► rejected            └─► clawed back
//! ```
//!
//! Every step is appended to a log with a sequence number, who recorded it and when, and the
//! item's current state is updated in the same transaction of an embedded ACID database
//! (redb), committed with immediate durability: when [`Ledger::record`] returns, the step is on
//! disk. A step carrying a caller's request id is recorded once: a retry after a lost answer
//! gets the first answer back.
//!
//! The ledger also keeps each served generation's candidate keys per policy, so that a lead
//! department can take only what changed since the generation it last pulled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// The log: sequence number → step (JSON).
const STEPS: TableDefinition<u64, &[u8]> = TableDefinition::new("steps");
/// Current state: `policy \x1f key` → item (JSON).
const ITEMS: TableDefinition<&str, &[u8]> = TableDefinition::new("items");
/// Idempotency: `actor \x1f request id` → sequence number of the step it recorded.
const REQUESTS: TableDefinition<&str, u64> = TableDefinition::new("requests");
/// Candidate keys per `policy \x1f generation (20 digits)`: keys joined by `\n`, sorted.
const CANDIDATES: TableDefinition<&str, &[u8]> = TableDefinition::new("candidates");
/// Each item's steps: `policy \x1f key \x1f seq (20 digits)` → sequence number.
const HISTORY: TableDefinition<&str, u64> = TableDefinition::new("history");
/// Counters: `next_seq`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const SEP: char = '\x1f';

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The database could not be opened, read or written.
    #[error("workflow store: {0}")]
    Store(String),
    /// The step is not allowed from the item's current state.
    #[error("{policy} {key}: cannot {action} an item that is {state}")]
    Transition {
        policy: String,
        key: String,
        action: &'static str,
        state: &'static str,
    },
    /// The step lacks something it needs (a reason, an amount).
    #[error("{0}")]
    Invalid(String),
}

fn store<E: std::fmt::Display>(e: E) -> WorkflowError {
    WorkflowError::Store(e.to_string())
}

/// A step a department records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Push,
    Confirm,
    Reject,
    Doubt,
    Pay,
    Return,
    Clawback,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Confirm => "confirm",
            Action::Reject => "reject",
            Action::Doubt => "doubt",
            Action::Pay => "pay",
            Action::Return => "return",
            Action::Clawback => "claw back",
        }
    }
}

/// Where a work item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pushed,
    Confirmed,
    Rejected,
    Doubted,
    Paid,
    Returned,
    ClawedBack,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pushed,
        State::Confirmed,
        State::Rejected,
        State::Doubted,
        State::Paid,
        State::Returned,
        State::ClawedBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pushed => "pushed",
            State::Confirmed => "confirmed",
            State::Rejected => "rejected",
            State::Doubted => "doubted",
            State::Paid => "paid",
            State::Returned => "returned",
            State::ClawedBack => "clawed back",
        }
    }

    /// The state after `action`, or `None` when the action is not allowed from here.
    pub fn after(from: Option<State>, action: Action) -> Option<State> {
        use Action as A;
        use State as S;
        match (from, action) {
            (None, A::Push) => Some(S::Pushed),
            (Some(S::Pushed | S::Doubted), A::Confirm) => Some(S::Confirmed),
            (Some(S::Pushed | S::Doubted | S::Confirmed), A::Reject) => Some(S::Rejected),
            (Some(S::Pushed), A::Doubt) => Some(S::Doubted),
            // Recurring benefits are paid again each period; a returned payment is paid anew.
            (Some(S::Confirmed | S::Paid | S::Returned), A::Pay) => Some(S::Paid),
            (Some(S::Paid), A::Return) => Some(S::Returned),
            (Some(S::Paid | S::Returned), A::Clawback) => Some(S::ClawedBack),
            _ => None,
        }
    }
}

/// One recorded step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub seq: u64,
    pub policy: String,
    pub key: String,
    pub action: Action,
    /// The item's state after the step.
    pub state: State,
    pub reason: String,
    pub amount: f64,
    pub reference: String,
    /// Who recorded it (a token's name) and for which department.
    pub actor: String,
    pub department: String,
    /// Unix seconds.
    pub at: i64,
    /// The snapshot generation served when it was recorded.
    pub generation: u64,
}

/// A work item: one (policy, entity) and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub state: State,
    pub pushed_at: i64,
    pub updated_at: i64,
    /// The generation it was pushed from.
    pub generation: u64,
    /// When it was first paid (for time to pay).
    pub first_paid_at: Option<i64>,
    pub paid_total: f64,
    /// The reason of the latest reject, doubt or clawback.
    pub reason: String,
    pub last_seq: u64,
}

/// A step to record.
#[derive(Debug, Clone, Default)]
pub struct NewStep {
    pub reason: String,
    pub amount: f64,
    pub reference: String,
    pub actor: String,
    pub department: String,
    pub request_id: String,
    pub at: i64,
    pub generation: u64,
}

impl NewStep {
    /// The log entry of this step.
    fn entry(&self, seq: u64, policy: &str, key: &str, action: Action, state: State) -> Step {
        Step {
            seq,
            policy: policy.to_string(),
            key: key.to_string(),
            action,
            state,
            reason: self.reason.clone(),
            amount: self.amount,
            reference: self.reference.clone(),
            actor: self.actor.clone(),
            department: self.department.clone(),
            at: self.at,
            generation: self.generation,
        }
    }

    /// A new item, as this step creates it.
    fn item(&self, state: State, seq: u64) -> Item {
        Item {
            state,
            pushed_at: self.at,
            updated_at: self.at,
            generation: self.generation,
            first_paid_at: None,
            paid_total: 0.0,
            reason: String::new(),
            last_seq: seq,
        }
    }
}

/// What recording a step did.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub seq: u64,
    pub state: State,
    /// The request id had been recorded before: nothing new was written.
    pub replayed: bool,
}

/// A policy's figures, from its items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyFigures {
    pub by_state: BTreeMap<State, u64>,
    /// Items ever pushed.
    pub pushed: u64,
    /// Items ever confirmed (confirmed now, or paid, returned or clawed back since).
    pub confirmed: u64,
    /// Items ever paid.
    pub paid: u64,
    pub amount_paid: f64,
    /// Seconds from push to first payment, sorted.
    pub time_to_pay: Vec<i64>,
    /// Reasons of rejected items, with counts, most frequent first.
    pub rejection_reasons: Vec<(String, u64)>,
}

/// The ledger, in one redb file.
#[derive(Debug)]
pub struct Ledger {
    db: Database,
}

fn item_key(policy: &str, key: &str) -> String {
    format!("{policy}{SEP}{key}")
}

fn history_key(item_key: &str, seq: u64) -> String {
    format!("{item_key}{SEP}{seq:020}")
}

/// Appends step `s` to the log and its item's history, and stores the item as it now is.
fn write_step(
    steps: &mut redb::Table<u64, &[u8]>,
    items: &mut redb::Table<&str, &[u8]>,
    history: &mut redb::Table<&str, u64>,
    item_key: &str,
    s: &Step,
    item: &Item,
) -> Result<(), WorkflowError> {
    steps.insert(s.seq, json(s)?.as_slice()).map_err(store)?;
    items
        .insert(item_key, json(item)?.as_slice())
        .map_err(store)?;
    history
        .insert(history_key(item_key, s.seq).as_str(), s.seq)
        .map_err(store)?;
    Ok(())
}

fn candidates_key(policy: &str, generation: u64) -> String {
    format!("{policy}{SEP}{generation:020}")
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, WorkflowError> {
    serde_json::to_vec(v).map_err(store)
}

fn unjson<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, WorkflowError> {
    serde_json::from_slice(b).map_err(store)
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Ledger, WorkflowError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(store)?;
        }
        let db = Database::create(path).map_err(store)?;
        // Create every table once, so that readers never meet a missing table.
        let tx = db.begin_write().map_err(store)?;
        {
            tx.open_table(STEPS).map_err(store)?;
            tx.open_table(ITEMS).map_err(store)?;
            tx.open_table(REQUESTS).map_err(store)?;
            tx.open_table(CANDIDATES).map_err(store)?;
            tx.open_table(HISTORY).map_err(store)?;
            tx.open_table(META).map_err(store)?;
        }
        tx.commit().map_err(store)?;
        Ok(Ledger { db })
    }

    /// Records `action` for every key of `keys` (one transaction); keys already in the ledger
    /// for the policy are left as they are. Returns `(pushed, already)`.
    pub fn push(
        &self,
        policy: &str,
        keys: &[String],
        step: &NewStep,
    ) -> Result<(u64, u64), WorkflowError> {
        let tx = self.db.begin_write().map_err(store)?;
        let (mut pushed, mut already) = (0, 0);
        {
            let mut items = tx.open_table(ITEMS).map_err(store)?;
            let mut steps = tx.open_table(STEPS).map_err(store)?;
            let mut history = tx.open_table(HISTORY).map_err(store)?;
            let mut meta = tx.open_table(META).map_err(store)?;
            let mut seq = meta
                .get("next_seq")
                .map_err(store)?
                .map(|v| v.value())
                .unwrap_or(1);
            for key in keys {
                let ik = item_key(policy, key);
                if items.get(ik.as_str()).map_err(store)?.is_some() {
                    already += 1;
                    continue;
                }
                let s = step.entry(seq, policy, key, Action::Push, State::Pushed);
                let item = step.item(State::Pushed, seq);
                write_step(&mut steps, &mut items, &mut history, &ik, &s, &item)?;
                seq += 1;
                pushed += 1;
            }
            meta.insert("next_seq", seq).map_err(store)?;
        }
        tx.commit().map_err(store)?;
        Ok((pushed, already))
    }

    /// Records one step for `(policy, key)`; durable when this returns.
    pub fn record(
        &self,
        policy: &str,
        key: &str,
        action: Action,
        step: &NewStep,
    ) -> Result<Recorded, WorkflowError> {
        match action {
            Action::Reject | Action::Doubt | Action::Clawback if step.reason.trim().is_empty() => {
                return Err(WorkflowError::Invalid(format!(
                    "to {} needs a reason",
                    action.as_str()
                )));
            }
            Action::Pay if !(step.amount.is_finite() && step.amount > 0.0) => {
                return Err(WorkflowError::Invalid(format!(
                    "a payment needs a positive amount, not {}",
                    step.amount
                )));
            }
            _ => {}
        }
        let tx = self.db.begin_write().map_err(store)?;
        let out;
        {
            let mut requests = tx.open_table(REQUESTS).map_err(store)?;
            let request = (!step.request_id.is_empty())
                .then(|| format!("{}{SEP}{}", step.actor, step.request_id));
            if let Some(r) = &request
                && let Some(seq) = requests.get(r.as_str()).map_err(store)?.map(|v| v.value())
            {
                let steps = tx.open_table(STEPS).map_err(store)?;
                let s: Step = match steps.get(seq).map_err(store)? {
                    Some(v) => unjson(v.value())?,
                    None => return Err(WorkflowError::Store(format!("step {seq} is missing"))),
                };
                return Ok(Recorded {
                    seq,
                    state: s.state,
                    replayed: true,
                });
            }
            let mut items = tx.open_table(ITEMS).map_err(store)?;
            let mut steps = tx.open_table(STEPS).map_err(store)?;
            let mut history = tx.open_table(HISTORY).map_err(store)?;
            let mut meta = tx.open_table(META).map_err(store)?;
            let ik = item_key(policy, key);
            let current: Option<Item> = match items.get(ik.as_str()).map_err(store)? {
                Some(v) => Some(unjson(v.value())?),
                None => None,
            };
            let from = current.as_ref().map(|i| i.state);
            let Some(state) = State::after(from, action) else {
                return Err(WorkflowError::Transition {
                    policy: policy.to_string(),
                    key: key.to_string(),
                    action: action.as_str(),
                    state: from.map_or("not pushed", State::as_str),
                });
            };
            let seq = meta
                .get("next_seq")
                .map_err(store)?
                .map(|v| v.value())
                .unwrap_or(1);
            let s = step.entry(seq, policy, key, action, state);
            let mut item = current.unwrap_or_else(|| step.item(state, seq));
            item.state = state;
            item.updated_at = step.at;
            item.last_seq = seq;
            match action {
                Action::Pay => {
                    item.first_paid_at.get_or_insert(step.at);
                    item.paid_total += step.amount;
                }
                Action::Clawback => item.paid_total -= step.amount.max(0.0),
                _ => {}
            }
            if matches!(action, Action::Reject | Action::Doubt | Action::Clawback) {
                item.reason = step.reason.trim().to_string();
            }
            write_step(&mut steps, &mut items, &mut history, &ik, &s, &item)?;
            meta.insert("next_seq", seq + 1).map_err(store)?;
            if let Some(r) = &request {
                requests.insert(r.as_str(), seq).map_err(store)?;
            }
            out = Recorded {
                seq,
                state,
                replayed: false,
            };
        }
        tx.commit().map_err(store)?;
        Ok(out)
    }

    /// The item of `(policy, key)`.
    pub fn item(&self, policy: &str, key: &str) -> Result<Option<Item>, WorkflowError> {
        let tx = self.db.begin_read().map_err(store)?;
        let items = tx.open_table(ITEMS).map_err(store)?;
        match items.get(item_key(policy, key).as_str()).map_err(store)? {
            Some(v) => Ok(Some(unjson(v.value())?)),
            None => Ok(None),
        }
    }

    /// Items of `policy` in `states` (all when empty), in key order after `after`.
    pub fn items(
        &self,
        policy: &str,
        states: &[State],
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Item)>, WorkflowError> {
        let tx = self.db.begin_read().map_err(store)?;
        let items = tx.open_table(ITEMS).map_err(store)?;
        let prefix = format!("{policy}{SEP}");
        let start = if after.is_empty() {
            prefix.clone()
        } else {
            // Strictly after: the key followed by the smallest character.
            format!("{prefix}{after}\0")
        };
        let mut out = Vec::new();
        for entry in items.range(start.as_str()..).map_err(store)? {
            let (k, v) = entry.map_err(store)?;
            let Some(key) = k.value().strip_prefix(&prefix) else {
                break;
            };
            let item: Item = unjson(v.value())?;
            if states.is_empty() || states.contains(&item.state) {
                out.push((key.to_string(), item));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every step of `(policy, key)`, oldest first.
    pub fn history(&self, policy: &str, key: &str) -> Result<Vec<Step>, WorkflowError> {
        let tx = self.db.begin_read().map_err(store)?;
        let history = tx.open_table(HISTORY).map_err(store)?;
        let steps = tx.open_table(STEPS).map_err(store)?;
        let prefix = format!("{}{SEP}", item_key(policy, key));
        let mut out = Vec::new();
        for entry in history.range(prefix.as_str()..).map_err(store)? {
            let (k, seq) = entry.map_err(store)?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            let seq = seq.value();
            match steps.get(seq).map_err(store)? {
                Some(v) => out.push(unjson(v.value())?),
                None => return Err(WorkflowError::Store(format!("step {seq} is missing"))),
            }
        }
        Ok(out)
    }

    /// Every step in the log, oldest first (for audits and tests).
    pub fn steps(&self) -> Result<Vec<Step>, WorkflowError> {
        let tx = self.db.begin_read().map_err(store)?;
        let steps = tx.open_table(STEPS).map_err(store)?;
        let mut out = Vec::new();
        for entry in steps.iter().map_err(store)? {
            let (_, v) = entry.map_err(store)?;
            out.push(unjson(v.value())?);
        }
        Ok(out)
    }

    /// The figures of `policy` from its items.
    pub fn figures(&self, policy: &str) -> Result<PolicyFigures, WorkflowError> {
        let mut f = PolicyFigures::default();
        let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
        for (_, item) in self.items(policy, &[], "", usize::MAX)? {
            *f.by_state.entry(item.state).or_default() += 1;
            f.pushed += 1;
            if matches!(
                item.state,
                State::Confirmed | State::Paid | State::Returned | State::ClawedBack
            ) {
                f.confirmed += 1;
            }
            if let Some(p) = item.first_paid_at {
                f.paid += 1;
                f.time_to_pay.push((p - item.pushed_at).max(0));
            }
            f.amount_paid += item.paid_total;
            if item.state == State::Rejected {
                *reasons.entry(item.reason.clone()).or_default() += 1;
            }
        }
        f.time_to_pay.sort_unstable();
        f.rejection_reasons = reasons.into_iter().collect();
        f.rejection_reasons
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(f)
    }

    /// Keeps `keys` as the candidates of `policy` in `generation` (replacing what was kept).
    pub fn keep_candidates(
        &self,
        policy: &str,
        generation: u64,
        keys: &BTreeSet<String>,
    ) -> Result<(), WorkflowError> {
        let mut text = String::new();
        for k in keys {
            text.push_str(k);
            text.push('\n');
        }
        let tx = self.db.begin_write().map_err(store)?;
        {
            let mut t = tx.open_table(CANDIDATES).map_err(store)?;
            t.insert(candidates_key(policy, generation).as_str(), text.as_bytes())
                .map_err(store)?;
        }
        tx.commit().map_err(store)?;
        Ok(())
    }

    /// The candidate keys of `policy` kept for `generation`, if any were.
    pub fn candidates(
        &self,
        policy: &str,
        generation: u64,
    ) -> Result<Option<BTreeSet<String>>, WorkflowError> {
        let tx = self.db.begin_read().map_err(store)?;
        let t = tx.open_table(CANDIDATES).map_err(store)?;
        let Some(v) = t
            .get(candidates_key(policy, generation).as_str())
            .map_err(store)?
        else {
            return Ok(None);
        };
        let text = std::str::from_utf8(v.value()).map_err(store)?;
        Ok(Some(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(actor: &str, at: i64) -> NewStep {
        NewStep {
            actor: actor.into(),
            department: "MZ".into(),
            at,
            generation: 1,
            ..Default::default()
        }
    }

    #[test]
    fn an_item_goes_from_push_to_payment_and_back() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("ledger.redb")).unwrap();
        let keys = vec!["A".to_string(), "B".to_string(), "C".to_string()];
        assert_eq!(l.push("M01", &keys, &step("sys", 100)).unwrap(), (3, 0));
        assert_eq!(
            l.push("M01", &keys[..1], &step("sys", 101)).unwrap(),
            (0, 1)
        );
        let r = l
            .record("M01", "A", Action::Confirm, &step("sys", 200))
            .unwrap();
        assert_eq!(r.state, State::Confirmed);
        let pay = NewStep {
            amount: 100.0,
            ..step("sys", 400)
        };
        assert_eq!(
            l.record("M01", "A", Action::Pay, &pay).unwrap().state,
            State::Paid
        );
        let rej = NewStep {
            reason: "moved away".into(),
            ..step("sys", 300)
        };
        l.record("M01", "B", Action::Reject, &rej).unwrap();
        // Not allowed: paying a rejected item, confirming what was never pushed.
        assert!(matches!(
            l.record("M01", "B", Action::Pay, &pay),
            Err(WorkflowError::Transition { .. })
        ));
        assert!(matches!(
            l.record("M01", "Z", Action::Confirm, &step("sys", 1)),
            Err(WorkflowError::Transition { .. })
        ));
        // A rejection needs a reason.
        assert!(matches!(
            l.record("M01", "C", Action::Reject, &step("sys", 1)),
            Err(WorkflowError::Invalid(_))
        ));
        let f = l.figures("M01").unwrap();
        assert_eq!((f.pushed, f.confirmed, f.paid), (3, 1, 1));
        assert_eq!(f.time_to_pay, vec![300]);
        assert_eq!(f.rejection_reasons, vec![("moved away".to_string(), 1)]);
        let h = l.history("M01", "A").unwrap();
        let actions: Vec<Action> = h.iter().map(|s| s.action).collect();
        assert_eq!(actions, vec![Action::Push, Action::Confirm, Action::Pay]);
        let pending = l.items("M01", &[State::Pushed], "", 10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].0, "C");
        assert_eq!(l.items("M01", &[], "A", 10).unwrap()[0].0, "B");
    }

    #[test]
    fn a_retried_request_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.redb");
        let l = Ledger::open(&path).unwrap();
        l.push("E01", &["K".to_string()], &step("sys", 1)).unwrap();
        let s = NewStep {
            request_id: "r-1".into(),
            ..step("sys", 2)
        };
        let a = l.record("E01", "K", Action::Confirm, &s).unwrap();
        let b = l.record("E01", "K", Action::Confirm, &s).unwrap();
        assert!(!a.replayed && b.replayed);
        assert_eq!(a.seq, b.seq);
        drop(l);
        // Reopened, the ledger has the same steps.
        let l = Ledger::open(&path).unwrap();
        assert_eq!(l.steps().unwrap().len(), 2);
        let keys: BTreeSet<String> = ["x".to_string(), "y".to_string()].into();
        l.keep_candidates("E01", 7, &keys).unwrap();
        assert_eq!(l.candidates("E01", 7).unwrap(), Some(keys));
        assert_eq!(l.candidates("E01", 8).unwrap(), None);
    }
}
