//! What preparing a snapshot for policies costs: the structures the engine derives on first use
//! (field columns, row calendars, relation indexes) and each condition's sets, with the time
//! each took. They depend on the snapshot (and conditions on the as-of date), not on a policy's
//! parameters, so a process pays for them once; `mianshen match` prints the ledger, so that a
//! cold run says where its time went.
//!
//! The ledger is bounded: totals per step and the slowest [`SLOWEST`] items, however long the
//! engine serves.

use std::sync::Mutex;
use std::time::Instant;

/// The slowest items kept.
pub const SLOWEST: usize = 12;

/// What was prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A condition's TRUE / UNKNOWN sets (an outermost atom: the structures it built are
    /// counted within it, and under their own steps too).
    Condition,
    /// A primary-row field of every entity, by rank ([`FieldColumn`](super::columns::FieldColumn)).
    Field,
    /// An event table's rows per entity as bitsets ([`Calendar`](super::calendar::Calendar)).
    Calendar,
    /// A relation's adjacency index.
    Relation,
}
// (`step as usize` indexes the totals: the variants are in `Step::ALL`'s order.)

impl Step {
    pub const ALL: [Step; 4] = [Step::Condition, Step::Field, Step::Calendar, Step::Relation];

    pub fn name(self) -> &'static str {
        match self {
            Step::Condition => "conditions",
            Step::Field => "field columns",
            Step::Calendar => "row calendars",
            Step::Relation => "relation indexes",
        }
    }
}

/// One prepared item.
#[derive(Debug, Clone)]
pub struct Item {
    pub step: Step,
    pub what: String,
    pub seconds: f64,
}

#[derive(Debug, Default)]
struct Book {
    /// Per step (in [`Step::ALL`] order): how many, and seconds in all.
    totals: [(usize, f64); 4],
    /// The slowest items, slowest first.
    slowest: Vec<Item>,
}

/// Totals per step and the slowest items.
#[derive(Debug, Default)]
pub struct Ledger {
    book: Mutex<Book>,
}

impl Ledger {
    /// Notes `what` (named only if it is among the slowest), prepared since `started`.
    pub fn note(&self, step: Step, started: Instant, what: impl FnOnce() -> String) {
        let seconds = started.elapsed().as_secs_f64();
        let Ok(mut b) = self.book.lock() else { return };
        let i = step as usize;
        b.totals[i].0 += 1;
        b.totals[i].1 += seconds;
        if b.slowest.len() == SLOWEST && b.slowest.last().is_some_and(|l| l.seconds >= seconds) {
            return;
        }
        let at = b.slowest.partition_point(|x| x.seconds >= seconds);
        b.slowest.insert(
            at,
            Item {
                step,
                what: what(),
                seconds,
            },
        );
        b.slowest.truncate(SLOWEST);
    }

    /// How many of `step` were prepared, and their seconds in all.
    pub fn total(&self, step: Step) -> (usize, f64) {
        let i = step as usize;
        self.book.lock().map(|b| b.totals[i]).unwrap_or_default()
    }

    /// The slowest items, slowest first.
    pub fn slowest(&self) -> Vec<Item> {
        self.book
            .lock()
            .map(|b| b.slowest.clone())
            .unwrap_or_default()
    }

    /// Forgets everything noted.
    pub fn clear(&self) {
        if let Ok(mut b) = self.book.lock() {
            *b = Book::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_totals_and_the_slowest_in_order() {
        let l = Ledger::default();
        let t = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        for i in 0..(SLOWEST + 5) {
            l.note(Step::Field, t, || format!("f{i}"));
        }
        l.note(Step::Relation, t, || "r".into());
        assert_eq!(l.total(Step::Field).0, SLOWEST + 5);
        assert_eq!(l.total(Step::Relation).0, 1);
        assert_eq!(l.total(Step::Calendar), (0, 0.0));
        let s = l.slowest();
        assert_eq!(s.len(), SLOWEST);
        assert!(s.windows(2).all(|w| w[0].seconds >= w[1].seconds));
        // The latest noted is the slowest (time kept running since `t`).
        assert_eq!(s[0].what, "r");
        assert!(l.total(Step::Field).1 >= 0.002 * (SLOWEST + 5) as f64);
        l.clear();
        assert_eq!(l.total(Step::Field).0, 0);
        assert!(l.slowest().is_empty());
    }
}
