//! Write planning, with no I/O: given an environment's current entities and a requested
//! change, decide the new definition (or refuse), validating by compiling the environment as
//! it would be after the change. The store executes the plan in one transaction.

use std::collections::{BTreeMap, HashMap};

use cohort_core::model::{
    Definitions, ExperimentDef, ExperimentStatus, FlagDef, HoldoutDef, LayerDef, MetricDef, SegmentDef,
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ServiceError, Violation};

/// The kinds of entity, and the lifecycle moves, live in cohort-core's model so cohortctl
/// plans with the same table this service enforces.
pub(crate) use cohort_core::model::{EntityKind as Kind, ExperimentAction as Action};

/// One stored definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entity {
    pub kind: Kind,
    pub key: String,
    pub definition: Value,
    pub revision: i64,
}

/// A requested change to one entity.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Create { kind: Kind, definition: Value },
    Update { kind: Kind, key: String, definition: Value, expected_revision: i64 },
    Delete { kind: Kind, key: String, expected_revision: i64 },
    Transition { key: String, action: Action, expected_revision: i64 },
}

/// What a write will do: the audit row and the new state of one entity.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub kind: Kind,
    pub key: String,
    /// "create", "update", "delete", or a lifecycle action.
    pub action: &'static str,
    pub before: Option<Value>,
    /// `None` deletes the entity.
    pub after: Option<Value>,
    pub revision: i64,
}

/// The most operations one batch may hold (every list of an environment at its limit).
pub(crate) const MAX_BATCH_OPERATIONS: usize = 50_000;

/// Plans `op` against `current` (every entity of the environment).
pub(crate) fn plan(op: Op, current: &[Entity]) -> Result<Plan, ServiceError> {
    let plan = step(op, &|kind, key| current.iter().find(|e| e.kind == kind && e.key == key))?;
    validate(&plan, current)?;
    Ok(plan)
}

/// Plans a batch: each operation against the entities as the earlier ones leave them, then
/// one validation of the environment as it is after all of them. Errors name the operation
/// (`operations[2].definition.variants[1].weight_bp`).
pub(crate) fn plan_batch(ops: Vec<Op>, current: &[Entity]) -> Result<Vec<Plan>, ServiceError> {
    if ops.len() > MAX_BATCH_OPERATIONS {
        return Err(ServiceError::invalid(
            "operations",
            format!("{} operations, at most {MAX_BATCH_OPERATIONS} allowed", ops.len()),
        ));
    }
    let mut state: HashMap<(Kind, String), Entity> =
        current.iter().map(|e| ((e.kind, e.key.clone()), e.clone())).collect();
    let mut plans = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let plan =
            step(op, &|kind, key| state.get(&(kind, key.to_owned()))).map_err(|e| at_operation(i, e))?;
        let id = (plan.kind, plan.key.clone());
        match &plan.after {
            Some(after) => {
                let entity = Entity {
                    kind: plan.kind,
                    key: plan.key.clone(),
                    definition: after.clone(),
                    revision: plan.revision,
                };
                state.insert(id, entity);
            }
            None => {
                state.remove(&id);
            }
        }
        plans.push(plan);
    }
    validate_batch(&plans, &state)?;
    Ok(plans)
}

/// Names operation `i` of a batch in an error about it.
pub(crate) fn at_operation(i: usize, e: ServiceError) -> ServiceError {
    let field = |(f, d): Violation| (format!("operations[{i}].{f}"), d);
    match e {
        ServiceError::InvalidArgument(v) => ServiceError::InvalidArgument(v.into_iter().map(field).collect()),
        ServiceError::FailedPrecondition { message, violations } => ServiceError::FailedPrecondition {
            message: format!("operations[{i}]: {message}"),
            violations: violations.into_iter().map(field).collect(),
        },
        ServiceError::NotFound(m) => ServiceError::NotFound(format!("operations[{i}]: {m}")),
        ServiceError::AlreadyExists(m) => ServiceError::AlreadyExists(format!("operations[{i}]: {m}")),
        other => other,
    }
}

type Find<'a> = dyn Fn(Kind, &str) -> Option<&'a Entity> + 'a;

/// Plans one operation without validating the environment.
fn step<'a>(op: Op, find: &Find<'a>) -> Result<Plan, ServiceError> {
    let missing =
        |kind: Kind, key: &str| ServiceError::NotFound(format!("{} {key:?} does not exist", kind.as_str()));
    let check_revision = |e: &Entity, expected: i64| {
        if e.revision == expected {
            Ok(())
        } else {
            Err(ServiceError::FailedPrecondition {
                message: format!(
                    "{} {:?} is at revision {}, not {expected}: it changed since it was read",
                    e.kind.as_str(),
                    e.key,
                    e.revision
                ),
                violations: vec![(
                    "expected_revision".into(),
                    format!("stale; current revision is {}", e.revision),
                )],
            })
        }
    };

    let plan = match op {
        Op::Create { kind, mut definition } => {
            match kind {
                Kind::Experiment => prepare_new_experiment(&mut definition)?,
                Kind::Holdout => prepare_new_holdout(&mut definition)?,
                Kind::Flag => flag_experiment_id(&mut definition, None),
                _ => {}
            }
            let (key, canonical) = canonical(kind, &definition)?;
            if find(kind, &key).is_some() {
                return Err(ServiceError::AlreadyExists(format!("{} {key:?} already exists", kind.as_str())));
            }
            Plan { kind, key, action: "create", before: None, after: Some(canonical), revision: 1 }
        }
        Op::Update { kind, key, mut definition, expected_revision } => {
            let existing = find(kind, &key).ok_or_else(|| missing(kind, &key))?;
            check_revision(existing, expected_revision)?;
            if matches!(kind, Kind::Experiment | Kind::Holdout)
                && let Some(obj) = definition.as_object_mut()
                && !obj.contains_key("id")
            {
                // Written without an id (as the README's example is): the stored one stays.
                obj.insert("id".into(), existing.definition["id"].clone());
            }
            if kind == Kind::Flag {
                flag_experiment_id(&mut definition, existing.definition["experiment"].get("id"));
            }
            let (new_key, canonical) = canonical(kind, &definition)?;
            if new_key != key {
                return Err(ServiceError::invalid(
                    "definition.key",
                    format!("cannot rename {key:?} to {new_key:?}; create a new {} instead", kind.as_str()),
                ));
            }
            match kind {
                Kind::Experiment => check_experiment_edit(&existing.definition, &canonical)?,
                Kind::Holdout => check_holdout_edit(&existing.definition, &canonical)?,
                Kind::Flag => check_flag_edit(&existing.definition, &canonical)?,
                _ => {}
            }
            Plan {
                kind,
                key,
                action: "update",
                before: Some(existing.definition.clone()),
                after: Some(canonical),
                revision: existing.revision + 1,
            }
        }
        Op::Delete { kind, key, expected_revision } => {
            let existing = find(kind, &key).ok_or_else(|| missing(kind, &key))?;
            check_revision(existing, expected_revision)?;
            if kind == Kind::Experiment {
                let status = experiment_status(&existing.definition)?;
                if status.is_live() {
                    return Err(ServiceError::precondition(format!(
                        "experiment {key:?} is {}; complete it before deleting it",
                        status.as_str()
                    )));
                }
            }
            // Its units' history is only comparable while it holds them out; ending that is
            // a write of its own (and an audit row) before the delete.
            if kind == Kind::Holdout && existing.definition["enabled"] != Value::Bool(false) {
                return Err(ServiceError::precondition(format!(
                    "holdout {key:?} is enabled; disable it before deleting it"
                )));
            }
            Plan {
                kind,
                key,
                action: "delete",
                before: Some(existing.definition.clone()),
                after: None,
                revision: existing.revision + 1,
            }
        }
        Op::Transition { key, action, expected_revision } => {
            let existing = find(Kind::Experiment, &key).ok_or_else(|| missing(Kind::Experiment, &key))?;
            check_revision(existing, expected_revision)?;
            let from = experiment_status(&existing.definition)?;
            let to = action.target(from).ok_or_else(|| {
                ServiceError::precondition(format!(
                    "cannot {} experiment {key:?}: it is {}",
                    action.as_str(),
                    from.as_str()
                ))
            })?;
            let mut after = existing.definition.clone();
            after["status"] = Value::String(to.as_str().into());
            Plan {
                kind: Kind::Experiment,
                key,
                action: action.as_str(),
                before: Some(existing.definition.clone()),
                after: Some(after),
                revision: existing.revision + 1,
            }
        }
    };
    Ok(plan)
}

/// Compiles the environment as it would be after `plan`. Problems in the written entity are
/// reported under `definition`; problems it causes elsewhere under that entity's key.
fn validate(plan: &Plan, current: &[Entity]) -> Result<(), ServiceError> {
    let mut entities: BTreeMap<(Kind, &str), &Value> =
        current.iter().map(|e| ((e.kind, e.key.as_str()), &e.definition)).collect();
    let key = (plan.kind, plan.key.as_str());
    entities.remove(&key);
    // The written entity goes first in its list, so its errors have a known index.
    let written = plan.after.as_ref().map(|after| (key, after));
    let ordered = written.into_iter().chain(entities);
    let (defs, names) = assemble(0, ordered).map_err(ServiceError::Internal)?;
    let Err(errors) = cohort_core::compile(&defs) else {
        return Ok(());
    };
    let owner =
        |kind: Kind, key: &str| (kind == plan.kind && key == plan.key).then(|| "definition".to_owned());
    let violations: Vec<Violation> =
        errors.iter().map(|e| (rewrite_path(&e.path, &names, &owner), e.message.clone())).collect();
    // A lifecycle move or delete that breaks the environment is refused by state, not input.
    if plan.action == "create" || plan.action == "update" {
        Err(ServiceError::InvalidArgument(violations))
    } else {
        Err(ServiceError::FailedPrecondition {
            message: format!("cannot {} {} {:?}", plan.action, plan.kind.as_str(), plan.key),
            violations,
        })
    }
}

/// Compiles the environment as a batch leaves it. Problems in an entity the batch wrote are
/// reported under the operation that last wrote its definition (`operations[i].definition`),
/// or else the last that moved it; problems elsewhere under the entity's key.
fn validate_batch(plans: &[Plan], after: &HashMap<(Kind, String), Entity>) -> Result<(), ServiceError> {
    let mut owners: HashMap<(Kind, &str), (usize, bool)> = HashMap::new();
    for (i, p) in plans.iter().enumerate() {
        let wrote = p.action == "create" || p.action == "update";
        let slot = owners.entry((p.kind, p.key.as_str())).or_insert((i, wrote));
        if wrote || !slot.1 {
            *slot = (i, wrote);
        }
    }
    let ordered: BTreeMap<(Kind, &str), &Value> =
        after.values().map(|e| ((e.kind, e.key.as_str()), &e.definition)).collect();
    let (defs, names) = assemble(0, ordered).map_err(ServiceError::Internal)?;
    let Err(errors) = cohort_core::compile(&defs) else {
        return Ok(());
    };
    let owner =
        |kind: Kind, key: &str| owners.get(&(kind, key)).map(|(i, _)| format!("operations[{i}].definition"));
    let violations: Vec<Violation> =
        errors.iter().map(|e| (rewrite_path(&e.path, &names, &owner), e.message.clone())).collect();
    if plans.iter().any(|p| p.action == "create" || p.action == "update") {
        Err(ServiceError::InvalidArgument(violations))
    } else {
        // Only moves and deletes: the state refuses them, as for single writes.
        Err(ServiceError::FailedPrecondition { message: "cannot apply the batch".into(), violations })
    }
}

/// `flags[3].rules[0]` → `<owner>.rules[0]` for an entity the request wrote (`definition`,
/// `operations[2].definition`), else `flags["key"].rules[0]`.
fn rewrite_path(
    path: &str,
    names: &BTreeMap<Kind, Vec<String>>,
    owner: &dyn Fn(Kind, &str) -> Option<String>,
) -> String {
    for kind in Kind::ALL {
        let Some(rest) = path.strip_prefix(kind.plural()).and_then(|r| r.strip_prefix('[')) else {
            continue;
        };
        let Some((index, tail)) = rest.split_once(']') else { continue };
        let Ok(index) = index.parse::<usize>() else { continue };
        let Some(key) = names.get(&kind).and_then(|n| n.get(index)) else { continue };
        if let Some(prefix) = owner(kind, key) {
            return format!("{prefix}{tail}");
        }
        return format!("{}[{key:?}]{tail}", kind.plural());
    }
    path.to_owned()
}

/// Builds `Definitions` from stored JSON, in the given order, with each list's keys.
pub(crate) fn assemble<'a>(
    version: u64,
    entities: impl IntoIterator<Item = ((Kind, &'a str), &'a Value)>,
) -> Result<(Definitions, BTreeMap<Kind, Vec<String>>), String> {
    fn parse<T: DeserializeOwned>(kind: Kind, key: &str, v: &Value) -> Result<T, String> {
        T::deserialize(v).map_err(|e| format!("stored {} {key:?} does not parse: {e}", kind.as_str()))
    }
    let mut defs = Definitions { version, ..Definitions::default() };
    let mut names: BTreeMap<Kind, Vec<String>> = BTreeMap::new();
    for ((kind, key), value) in entities {
        names.entry(kind).or_default().push(key.to_owned());
        match kind {
            Kind::Flag => defs.flags.push(parse::<FlagDef>(kind, key, value)?),
            Kind::Experiment => defs.experiments.push(parse::<ExperimentDef>(kind, key, value)?),
            Kind::Layer => defs.layers.push(parse::<LayerDef>(kind, key, value)?),
            Kind::Segment => defs.segments.push(parse::<SegmentDef>(kind, key, value)?),
            Kind::Metric => defs.metrics.push(parse::<MetricDef>(kind, key, value)?),
            Kind::Holdout => defs.holdouts.push(parse::<HoldoutDef>(kind, key, value)?),
        }
    }
    Ok((defs, names))
}

/// Parses a definition of `kind` strictly, naming the bad field, and returns its key and
/// canonical JSON (the typed model serialized back).
pub(crate) fn canonical(kind: Kind, definition: &Value) -> Result<(String, Value), ServiceError> {
    fn typed<T: DeserializeOwned + serde::Serialize>(
        definition: &Value,
        key: impl Fn(&T) -> &str,
    ) -> Result<(String, Value), ServiceError> {
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(field_path(&path.to_string()));
        let tracked = serde_ignored::Deserializer::new(definition, &mut record);
        let parsed: T = serde_path_to_error::deserialize(tracked).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "definition".to_owned() } else { format!("definition.{path}") };
            ServiceError::invalid(field, e.into_inner().to_string())
        })?;
        // Readers ignore unknown fields for compatibility; a writer's unknown field is a mistake.
        if !unknown.is_empty() {
            return Err(ServiceError::InvalidArgument(
                unknown.into_iter().map(|f| (f, "unknown field".to_owned())).collect(),
            ));
        }
        let value = serde_json::to_value(&parsed).map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok((key(&parsed).to_owned(), value))
    }
    match kind {
        Kind::Flag => typed::<FlagDef>(definition, |d| &d.key),
        Kind::Experiment => typed::<ExperimentDef>(definition, |d| &d.key),
        Kind::Layer => typed::<LayerDef>(definition, |d| &d.key),
        Kind::Segment => typed::<SegmentDef>(definition, |d| &d.key),
        Kind::Metric => typed::<MetricDef>(definition, |d| &d.key),
        Kind::Holdout => typed::<HoldoutDef>(definition, |d| &d.key),
    }
}

/// `variants.1.foo` (serde_ignored's form) → `definition.variants[1].foo`.
fn field_path(dotted: &str) -> String {
    let mut out = String::from("definition");
    for part in dotted.split('.').filter(|p| !p.is_empty() && *p != "?") {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push('.');
            out.push_str(part);
        }
    }
    out
}

/// New experiments get an id when they have none, and start as drafts.
fn prepare_new_experiment(definition: &mut Value) -> Result<(), ServiceError> {
    let Some(obj) = definition.as_object_mut() else {
        return Err(ServiceError::invalid("definition", "must be a JSON object"));
    };
    // Time-ordered, and never one a user copied from an example.
    obj.entry("id").or_insert_with(|| Value::String(Uuid::now_v7().to_string()));
    let status = obj.entry("status").or_insert_with(|| Value::String("draft".into()));
    if status != "draft" {
        return Err(ServiceError::invalid(
            "definition.status",
            "new experiments start as draft; start them with TransitionExperiment",
        ));
    }
    Ok(())
}

/// New holdouts get an id when they have none: the experiment id their exposures carry.
fn prepare_new_holdout(definition: &mut Value) -> Result<(), ServiceError> {
    let Some(obj) = definition.as_object_mut() else {
        return Err(ServiceError::invalid("definition", "must be a JSON object"));
    };
    obj.entry("id").or_insert_with(|| Value::String(Uuid::now_v7().to_string()));
    Ok(())
}

/// A flag analysed as an experiment gets an id for its exposures when it is written without
/// one: the one it had, else a new one.
fn flag_experiment_id(definition: &mut Value, stored: Option<&Value>) {
    if let Some(x) = definition.get_mut("experiment").and_then(Value::as_object_mut) {
        x.entry("id").or_insert_with(|| match stored {
            Some(id) => id.clone(),
            None => Value::String(Uuid::now_v7().to_string()),
        });
    }
}

/// A flag experiment's id names its exposures, so it never changes while the flag has one.
fn check_flag_edit(before: &Value, after: &Value) -> Result<(), ServiceError> {
    match (before["experiment"].get("id"), after["experiment"].get("id")) {
        (Some(a), Some(b)) if a != b => {
            let why = "a flag experiment's id never changes; remove the experiment first".to_owned();
            Err(ServiceError::FailedPrecondition {
                message: why.clone(),
                violations: vec![("definition.experiment.id".into(), why)],
            })
        }
        _ => Ok(()),
    }
}

/// A holdout's id names its exposures, so it never changes.
fn check_holdout_edit(before: &Value, after: &Value) -> Result<(), ServiceError> {
    let refuse = |field: &str, why: String| {
        Err(ServiceError::FailedPrecondition { message: why.clone(), violations: vec![(field.into(), why)] })
    };
    if before["id"] != after["id"] {
        return refuse("definition.id", "a holdout's id never changes".into());
    }
    let enabled = |d: &Value| d["enabled"] != Value::Bool(false);
    if enabled(before) && enabled(after) {
        // Who is held out would change mid-measurement, mixing the two groups' histories.
        for field in ["salt", "share_bp"] {
            if before[field] != after[field] {
                return refuse(
                    &format!("definition.{field}"),
                    format!(
                        "cannot change {field} of an enabled holdout; disable it first, or create a new one"
                    ),
                );
            }
        }
    }
    Ok(())
}

fn experiment_status(definition: &Value) -> Result<ExperimentStatus, ServiceError> {
    serde_json::from_value(definition["status"].clone())
        .map_err(|e| ServiceError::Internal(format!("stored experiment has no valid status: {e}")))
}

/// What may change in an experiment outside lifecycle transitions.
fn check_experiment_edit(before: &Value, after: &Value) -> Result<(), ServiceError> {
    let status = experiment_status(before)?;
    let refuse = |field: &str, why: String| {
        Err(ServiceError::FailedPrecondition { message: why.clone(), violations: vec![(field.into(), why)] })
    };
    if before["status"] != after["status"] {
        return refuse(
            "definition.status",
            "status changes only through TransitionExperiment (start, pause, resume, complete)".into(),
        );
    }
    if before["id"] != after["id"] {
        return refuse("definition.id", "an experiment's id never changes".into());
    }
    match status {
        ExperimentStatus::Draft => Ok(()),
        ExperimentStatus::Running | ExperimentStatus::Paused => {
            // Changing who is assigned what would mix populations mid-experiment.
            for field in ["variants", "salt"] {
                if before[field] != after[field] {
                    return refuse(
                        &format!("definition.{field}"),
                        format!(
                            "cannot change {field} of a {} experiment; complete it and start a new one",
                            status.as_str()
                        ),
                    );
                }
            }
            Ok(())
        }
        ExperimentStatus::Completed => {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("description");
                }
                v
            };
            if strip(before) != strip(after) {
                return refuse(
                    "definition",
                    "a completed experiment can only have its description edited".into(),
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
