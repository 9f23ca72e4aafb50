//! Profiles: an identifier to its entity, and the entity as the departments know it (its
//! records in every table, its relations), masked for roles that do not see personal data.
//!
//! A service (a lead department's system) reads only entities that are candidates, to-verify
//! or near-miss of a policy it leads; the hotline reads any one entity by its exact key.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::{Caller, Role};
use super::pb::v1::{self as pb, profiles_server::Profiles};
use super::state::Served;
use super::{Shared, handle, mask};
use crate::date::{Date, Month};
use crate::policy::schema::{Scale, Ty, column_type};
use crate::snapshot::column::Value;

#[derive(Debug)]
pub struct ProfilesService(pub Arc<Shared>);

/// PERMISSION_DENIED unless a service caller's department leads a policy `e` is in.
fn service_may_read(served: &Served, caller: &Caller, e: u32) -> Result<(), Status> {
    if caller.role != Role::Service {
        return Ok(());
    }
    let mine = served
        .policies
        .iter()
        .filter(|p| p.lead == caller.department);
    for p in mine {
        if let Some(r) = served.runs.get(&p.id)
            && (r.candidates.contains(e) || r.to_verify.contains(e) || r.near_miss.contains(e))
        {
            return Ok(());
        }
    }
    Err(Status::permission_denied(format!(
        "{} may read only entities of the policies {} leads",
        caller.name, caller.department
    )))
}

/// A stored value as text: dates, months, yuan, units.
pub fn value_text(role: &str, ty: &str, v: Value<'_>) -> Option<String> {
    match v {
        Value::Missing => None,
        Value::Str(s) => Some(s.to_string()),
        Value::Int(i) => Some(match column_type(role, ty) {
            (Ty::Date, _) => Date(i as i32).to_string(),
            (Ty::Month, _) => Month(i as i32).to_string(),
            (Ty::Bool, _) => (i != 0).to_string(),
            (_, Scale::Money) => format!("{:.2}", i as f64 / 100.0),
            (_, Scale::Milli) => format!("{}", i as f64 / 1000.0),
            _ => i.to_string(),
        }),
    }
}

fn entity(served: &Served, caller: &Caller, key: &str) -> Result<(u32, String), Status> {
    if key.trim().is_empty() {
        return Err(Status::invalid_argument(
            "give an id number, USCC or stable key",
        ));
    }
    let (e, key) = served
        .entity_of(key)
        .ok_or_else(|| Status::not_found("no entity has this key"))?;
    service_may_read(served, caller, e)?;
    Ok((e, key))
}

#[tonic::async_trait]
impl Profiles for ProfilesService {
    async fn resolve(
        &self,
        req: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveReply>, Status> {
        handle(&self.0, "Profiles/Resolve", req, |caller, r| async move {
            caller.require(&[Role::Hotline, Role::Service], "resolve identifiers")?;
            let served = self.0.served();
            let (e, key) = entity(&served, &caller, &r.identifier)?;
            self.0
                .audit
                .read(&caller, "Profiles/Resolve", &key, &["key", "kind"]);
            Ok(pb::ResolveReply {
                pin: Some(served.pin([])),
                key: if caller.sees_personal() {
                    key
                } else {
                    mask::identifier(&key)
                },
                kind: served.snap().kind(e).unwrap_or("?").to_string(),
                entity: e,
            })
        })
        .await
    }

    async fn get(&self, req: Request<pb::ProfileRequest>) -> Result<Response<pb::Profile>, Status> {
        handle(&self.0, "Profiles/Get", req, |caller, r| async move {
            caller.require(&[Role::Hotline, Role::Service], "read profiles")?;
            let served = self.0.served();
            let (e, key) = entity(&served, &caller, &r.key)?;
            let personal = caller.sees_personal();
            let per_table = match r.rows_per_table {
                0 => 20,
                n => n as usize,
            };
            let snap = served.snap();
            let kind = snap.kind(e).unwrap_or("?").to_string();
            let mut records = Vec::new();
            let mut tables = Vec::new();
            for info in snap.tables() {
                let Ok(t) = snap.table(&info.name) else {
                    continue;
                };
                let rows = t.rows_of(e);
                if rows.is_empty() {
                    continue;
                }
                tables.push(pb::TableRows {
                    table: info.name.clone(),
                    rows: rows.len() as u64,
                });
                let doubtful = t.doubtful().unwrap_or_default();
                let cols: Vec<_> = info
                    .columns
                    .iter()
                    .filter_map(|c| Some((c, t.column(&c.name).ok()?)))
                    .collect();
                for row in rows.take(per_table) {
                    let fields = cols
                        .iter()
                        .map(|(c, col)| {
                            let v = value_text(&c.role, &c.ty, col.value(row));
                            let mask_it = !personal
                                && kind == "person"
                                && mask::PERSONAL_ROLES.contains(&c.role.as_str());
                            pb::Field {
                                name: c.name.clone(),
                                missing: v.is_none(),
                                value: match v {
                                    Some(v) if mask_it => mask::field(&c.role, &v),
                                    Some(v) => v,
                                    None => String::new(),
                                },
                            }
                        })
                        .collect();
                    records.push(pb::Record {
                        table: info.name.clone(),
                        row: row as u64,
                        doubtful: doubtful.contains(row as u32),
                        fields,
                    });
                }
            }
            // Relations of the catalogue that start from this kind (household members,
            // employer, represented enterprises, …).
            let s = served.clone();
            let k = kind.clone();
            let related = tokio::task::spawn_blocking(move || {
                s.with_engine(|engine| {
                    let rels: Vec<_> = engine
                        .cat
                        .relations
                        .values()
                        .filter(|r| r.from == k)
                        .cloned()
                        .collect();
                    rels.into_iter()
                        .filter_map(|r| {
                            let i = engine.env.rel_idx(&r).ok()?;
                            let edges = engine.env.rels[i].of(e).to_vec();
                            Some((r.name.clone(), r.to.clone(), edges))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .await
            .map_err(super::status::join)?;
            let relations = related
                .into_iter()
                .filter(|(_, _, edges)| !edges.is_empty())
                .map(|(name, to, edges)| pb::Related {
                    relation: name,
                    keys: edges
                        .iter()
                        .map(|&(x, _)| {
                            let k = snap.key(x).unwrap_or_default();
                            if personal || to != "person" {
                                k.to_string()
                            } else {
                                mask::identifier(k)
                            }
                        })
                        .collect(),
                    doubtful: edges.iter().map(|&(_, d)| d).collect(),
                    kind: to,
                })
                .collect();
            // Which fields: the tables read, and whether personal fields were shown.
            let mut fields: Vec<&str> = tables.iter().map(|t| t.table.as_str()).collect();
            fields.push("relations");
            fields.push(if personal {
                "personal fields"
            } else {
                "personal fields masked"
            });
            self.0.audit.read(&caller, "Profiles/Get", &key, &fields);
            Ok(pb::Profile {
                pin: Some(served.pin([])),
                key: if personal {
                    key
                } else {
                    mask::identifier(&key)
                },
                kind,
                records,
                relations,
                tables,
            })
        })
        .await
    }
}
