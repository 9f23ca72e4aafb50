//! What is being served: one snapshot generation, its policy engine and the catalogue's
//! results on it, swapped as a whole on reload.
//!
//! A [`Served`] is immutable once built, except for the engine's caches (behind a mutex, for
//! what-if and explanations). Requests take an `Arc` of the current one, so a reload never
//! pulls a snapshot from under a request: the old generation is dropped (and unmapped) when
//! its last request finishes.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use roaring::RoaringBitmap;

use super::eligibility::Templates;
use super::pb::v1 as pb;
use crate::date::Date;
use crate::policy::ast::{Policy, Tri};
use crate::policy::check::{self, Diagnostic};
use crate::policy::engine::{Engine, PolicyRun};
use crate::policy::render;
use crate::policy::schema::Schema;
use crate::snapshot::{KeyIndex, Snapshot};

/// What borrows the snapshot: the engine, and the key index every request's lookup reads.
struct Borrowers<'s> {
    engine: Mutex<Engine<'s>>,
    keys: KeyIndex<'s>,
}

self_cell::self_cell!(
    /// A snapshot and what borrows it.
    struct Loaded {
        owner: Snapshot,
        #[not_covariant]
        dependent: Borrowers,
    }
);

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loaded({})", self.borrow_owner().dir().display())
    }
}

/// Why a snapshot or catalogue could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("snapshot {dir}: {msg}")]
    Snapshot { dir: PathBuf, msg: String },
    #[error("the policy catalogue does not check against snapshot {dir}:\n{}", diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Catalogue {
        dir: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("evaluating the catalogue on {dir}: {msg}")]
    Engine { dir: PathBuf, msg: String },
}

/// Every entity's condition states, packed: two bits per condition (0 FALSE, 1 TRUE,
/// 2 UNKNOWN) of every policy of its kind, one row of `words` words per entity. Built once per
/// generation from the condition bitmaps, so that one entity's states are a few cache lines
/// instead of two bitmap probes per condition (each a likely cache miss).
#[derive(Debug, Default)]
pub struct StateRows {
    words: usize,
    data: Vec<u64>,
    /// Bit offset of each policy's first condition within a row of its subject kind.
    offsets: HashMap<String, usize>,
}

impl StateRows {
    fn build(policies: &[Policy], runs: &HashMap<String, PolicyRun>, entities: usize) -> StateRows {
        let mut cursor: HashMap<&str, usize> = HashMap::new();
        let mut offsets = HashMap::new();
        for p in policies {
            let Some(run) = runs.get(&p.id) else { continue };
            let at = cursor.entry(p.subject.as_str()).or_default();
            offsets.insert(p.id.clone(), *at);
            *at += 2 * run.conditions.len();
        }
        let bits = cursor.values().copied().max().unwrap_or(0);
        let words = bits.div_ceil(64);
        let mut data = vec![0u64; entities * words];
        for p in policies {
            let (Some(run), Some(&off)) = (runs.get(&p.id), offsets.get(&p.id)) else {
                continue;
            };
            for (i, c) in run.conditions.iter().enumerate() {
                let bit = off + 2 * i;
                for (set, code) in [(c.sets.t(), 1u64), (c.sets.u(), 2u64)] {
                    for e in set {
                        if let Some(w) = data.get_mut(e as usize * words + bit / 64) {
                            *w |= code << (bit % 64);
                        }
                    }
                }
            }
        }
        StateRows {
            words,
            data,
            offsets,
        }
    }

    /// The states of `n` conditions of `policy` for entity `e`.
    fn states(&self, policy: &str, n: usize, e: u32) -> Option<Vec<Tri>> {
        let off = *self.offsets.get(policy)?;
        let row = self
            .data
            .get(e as usize * self.words..(e as usize + 1) * self.words)?;
        Some(
            (0..n)
                .map(|i| {
                    let bit = off + 2 * i;
                    match (row[bit / 64] >> (bit % 64)) & 3 {
                        1 => Tri::True,
                        2 => Tri::Unknown,
                        _ => Tri::False,
                    }
                })
                .collect(),
        )
    }
}

/// One served generation.
#[derive(Debug)]
pub struct Served {
    loaded: Loaded,
    /// The catalogue's files, kept to check new texts against and to serve the next
    /// generation with.
    pub catalogue: Vec<(PathBuf, String)>,
    /// Catalogue policies in dependency order.
    pub policies: Vec<Policy>,
    /// Every catalogue policy's result on this snapshot.
    pub runs: HashMap<String, PolicyRun>,
    /// Every entity's condition states.
    pub states: StateRows,
    /// `ID@VERSION` by policy id.
    pub versions: HashMap<String, String>,
    /// Each policy's conditions as written, by policy id.
    pub condition_texts: HashMap<String, Vec<String>>,
    /// The encoded parts every eligibility reply of this generation shares.
    pub templates: Templates,
    pub generation: u64,
    pub built_at: String,
    pub as_of: Date,
    /// Unix seconds when it started serving.
    pub serving_since: i64,
    pub evaluated_seconds: f64,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Served {
    /// Opens the snapshot in `dir`, verifies every checksum when `verify`, checks the
    /// catalogue against it and evaluates every policy.
    pub fn load(
        dir: &Path,
        catalogue: Vec<(PathBuf, String)>,
        as_of: Date,
        verify: bool,
    ) -> Result<Served, LoadError> {
        let snap_err = |e: crate::error::SnapshotError| LoadError::Snapshot {
            dir: dir.to_path_buf(),
            msg: e.to_string(),
        };
        let snap = Snapshot::open(dir).map_err(snap_err)?;
        if verify {
            snap.verify().map_err(snap_err)?;
        }
        let schema = Schema::of_snapshot(&snap);
        let cat = check::load_texts(&catalogue, &schema).map_err(|d| LoadError::Catalogue {
            dir: dir.to_path_buf(),
            diagnostics: d,
        })?;
        let policies: Vec<Policy> = cat.policies.iter().map(|c| c.policy.clone()).collect();
        let generation = snap.generation();
        let built_at = snap.meta("built_at").unwrap_or_default().to_string();
        let loaded = Loaded::try_new(snap, |s| {
            Ok::<_, crate::error::SnapshotError>(Borrowers {
                engine: Mutex::new(Engine::new(s, cat, as_of)),
                keys: s.keys()?.fenced(),
            })
        })
        .map_err(snap_err)?;
        let started = Instant::now();
        let runs = loaded
            .with_dependent(|_, b| {
                let mut engine = b.engine.lock().unwrap_or_else(|p| p.into_inner());
                let runs = engine.run_all();
                // What-ifs come and go; the catalogue's own work stays cached.
                engine.pin();
                runs
            })
            .map_err(|e| LoadError::Engine {
                dir: dir.to_path_buf(),
                msg: e.to_string(),
            })?;
        let condition_texts = policies
            .iter()
            .map(|p| {
                let texts = p.conditions.iter().map(|c| render::expr(&c.expr)).collect();
                (p.id.clone(), texts)
            })
            .collect();
        let runs: HashMap<String, PolicyRun> =
            runs.into_iter().map(|r| (r.id.clone(), r)).collect();
        let states = StateRows::build(&policies, &runs, loaded.borrow_owner().entity_count());
        let versions: HashMap<String, String> = policies
            .iter()
            .map(|p| (p.id.clone(), format!("{}@{}", p.id, p.version)))
            .collect();
        let pin = pb::Pin {
            generation,
            built_at: built_at.clone(),
            as_of: as_of.to_string(),
            policy_versions: Vec::new(),
        };
        let templates = Templates::build(&pin, &policies, &runs, &condition_texts, &versions);
        Ok(Served {
            loaded,
            templates,
            versions,
            condition_texts,
            catalogue,
            policies,
            runs,
            states,
            generation,
            built_at,
            as_of,
            serving_since: unix_now(),
            evaluated_seconds: started.elapsed().as_secs_f64(),
        })
    }

    pub fn snap(&self) -> &Snapshot {
        self.loaded.borrow_owner()
    }

    /// Runs `f` with the engine (one caller at a time: what-if and explanations).
    pub fn with_engine<R>(&self, f: impl for<'s> FnOnce(&mut Engine<'s>) -> R) -> R {
        self.loaded.with_dependent(|_, b| {
            let mut engine = b.engine.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut engine)
        })
    }

    pub fn policy(&self, id: &str) -> Option<&Policy> {
        self.policies.iter().find(|p| p.id == id)
    }

    /// The pin of an answer that read `policies`.
    pub fn pin<'a>(&self, policies: impl IntoIterator<Item = &'a str>) -> pb::Pin {
        pb::Pin {
            generation: self.generation,
            built_at: self.built_at.clone(),
            as_of: self.as_of.to_string(),
            policy_versions: policies
                .into_iter()
                .map(|id| {
                    self.versions
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| id.to_string())
                })
                .collect(),
        }
    }

    /// The entity of a stable key, or of an id number / USCC in any accepted spelling (a
    /// lower-case check character, a legacy 15-digit id number).
    pub fn entity_of(&self, identifier: &str) -> Option<(u32, String)> {
        self.loaded.with_dependent(|_, b| {
            let found = |k: &str| -> Option<(u32, String)> {
                let e = b.keys.entity_of(k)?;
                Some((e, b.keys.key(e)?.to_string()))
            };
            let id = identifier.trim();
            if let Some(x) = found(id) {
                return Some(x);
            }
            if id.bytes().any(|b| b.is_ascii_lowercase())
                && let Some(x) = found(&id.to_ascii_uppercase())
            {
                return Some(x);
            }
            if id.len() == 15 {
                let p = crate::ids::upgrade_pid_15(id.as_bytes())?;
                return found(std::str::from_utf8(&p).ok()?);
            }
            None
        })
    }

    /// The kind of entity `e` (`person`, `household`, `enterprise`).
    pub fn kind(&self, e: u32) -> Option<&'static str> {
        self.loaded.with_dependent(|_, b| b.keys.kind(e))
    }

    /// The state of every condition of `policy` for entity `e`: from the packed rows, or from
    /// the condition sets.
    pub fn condition_states(&self, run: &PolicyRun, e: u32) -> Vec<Tri> {
        match self.states.states(&run.id, run.conditions.len(), e) {
            Some(s) => s,
            None => self.condition_states_from_sets(run, e),
        }
    }

    /// The state of every condition of `policy` for entity `e`, probing the condition sets.
    pub fn condition_states_from_sets(&self, run: &PolicyRun, e: u32) -> Vec<Tri> {
        run.conditions
            .iter()
            .map(|c| {
                if c.sets.t().contains(e) {
                    Tri::True
                } else if c.sets.u().contains(e) {
                    Tri::Unknown
                } else {
                    Tri::False
                }
            })
            .collect()
    }

    /// The set of `run` a request asks for.
    pub fn set_of<'r>(&self, run: &'r PolicyRun, set: pb::SetKind) -> &'r RoaringBitmap {
        match set {
            pb::SetKind::Candidates => &run.candidates,
            pb::SetKind::ToVerify => run.to_verify.set(),
            pb::SetKind::NearMiss => run.near_miss.set(),
        }
    }

    /// Stable keys of a set of entities.
    pub fn keys_of(&self, set: &RoaringBitmap) -> BTreeSet<String> {
        let snap = self.snap();
        set.iter()
            .filter_map(|e| snap.key(e).map(str::to_string))
            .collect()
    }
}
