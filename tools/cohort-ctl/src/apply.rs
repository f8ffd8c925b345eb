//! `apply`: make an environment hold what the files say, declaratively and idempotently.
//!
//! Read every file (all parse or nothing is written) → read the environment → plan each
//! entity (create, update at the read revision, or leave alone; experiments' lifecycle moves)
//! → compile the environment as it would be after the plan, locally, so a bad file is caught
//! before anything is sent → send every write as ONE `ApplyBatch`, in dependency order
//! (metrics, segments, flags, experiments, then completions that free layer ranges, layers,
//! holdouts, and the remaining lifecycle moves). The server validates the batch as a whole and commits
//! it as one version, or nothing.
//!
//! `--dry-run` shows each update's changed values (`rules[0].serve.variation: "off" → "on"`).
//! `--prune` also deletes what the environment holds of the kinds the files define and the
//! files do not: those deletes end the same batch, after a confirmation, and a live
//! experiment among them stops the run before anything is written.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use cohort_core::model::{Condition, Definitions, ExperimentStatus};
use cohort_proto::config::v1 as pb;
use serde::Serialize;
use serde_json::Value;
use tonic::Status;

use crate::client::Client;
use crate::console::Console;
use crate::definition::{Def, Kind, changed_fields};
use crate::diagnostic::{Diagnostic, violations};
use crate::diff::{Change, diff};
use crate::document::{self, Origin, Spec};
use crate::error::CtlError;
use crate::lifecycle::{self, Action};
use crate::source::{Segment, format_path, parse_path};

#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Files and directories; `-` is stdin.
    pub paths: Vec<PathBuf>,
    /// Cohort's documents, flagd's flag-definition files, or either by shape.
    pub format: document::FileFormat,
    /// Plan and validate, write nothing.
    pub dry_run: bool,
    /// Skip compiling the planned environment locally and leave validation to the server
    /// (for a cohortctl older than the server). The batch is still all or nothing.
    pub server_validation_only: bool,
    /// Also delete stored definitions of the kinds the files define that the files do not.
    pub prune: bool,
    /// Prune without asking.
    pub yes: bool,
}

/// What happened to one entity (or one lifecycle move of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub kind: Kind,
    pub key: String,
    /// created, updated, unchanged, started, paused, resumed, completed, deleted or failed.
    pub result: &'static str,
    /// For updates: the top-level fields that changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// For updates in a dry run: every changed value, by field path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// The environment version the write created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub dry_run: bool,
    pub results: Vec<Outcome>,
    pub errors: Vec<Diagnostic>,
    /// How many of `errors` are on stderr already.
    #[serde(skip)]
    shown: usize,
}

impl ApplyReport {
    fn show_errors(&mut self, con: &mut Console<'_>) -> Result<(), CtlError> {
        for d in &self.errors[self.shown..] {
            con.note(d.to_string())?;
        }
        self.shown = self.errors.len();
        Ok(())
    }

    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn count(&self, result: &str) -> usize {
        self.results.iter().filter(|o| o.result == result).count()
    }

    /// `2 created, 1 updated, 5 unchanged, 1 started`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for result in [
            "created",
            "updated",
            "unchanged",
            "started",
            "paused",
            "resumed",
            "completed",
            "deleted",
            "failed",
        ] {
            let n = self.count(result);
            if n > 0 {
                parts.push(format!("{n} {result}"));
            }
        }
        if parts.is_empty() {
            parts.push("nothing to apply".into());
        }
        let text = parts.join(", ");
        if self.dry_run { format!("{text} (dry run: nothing was written)") } else { text }
    }
}

/// A stored entity as read before planning.
#[derive(Debug, Clone)]
struct Current {
    def: Def,
    canonical: Value,
    revision: i64,
}

#[derive(Debug, Clone)]
enum Write {
    None,
    Create(Value),
    Update { definition: Value, fields: Vec<String>, changes: Vec<Change> },
}

/// A stored definition `--prune` deletes.
#[derive(Debug, Clone)]
struct Prune {
    kind: Kind,
    key: String,
    revision: i64,
}

/// The plan for one spec.
#[derive(Debug)]
struct Item {
    spec: Spec,
    write: Write,
    moves: Vec<Action>,
    /// The definition as it will be once everything is done (status and id settled).
    end: Def,
    /// The revision the next operation on this entity expects (the stored one, then as the
    /// batch's earlier operations leave it).
    revision: i64,
}

/// Applies the files at `opts.paths` to `env`. Every problem is in the report (and on
/// stderr as it happens); `Err` is for what stops the whole run (connection, permissions).
pub async fn apply(
    client: &mut Client,
    env: &str,
    opts: &ApplyOptions,
    con: &mut Console<'_>,
) -> Result<ApplyReport, CtlError> {
    let mut report = ApplyReport { dry_run: opts.dry_run, ..ApplyReport::default() };
    let (specs, problems) = document::load(&opts.paths, opts.format, con.input);
    report.errors.extend(problems);
    report.errors.extend(duplicates(&specs));
    if report.failed() {
        return finish(report, con);
    }
    if specs.is_empty() {
        return finish(report, con);
    }

    client.require_key()?;
    let mut current = HashMap::new();
    for e in client.list_entities(env, None).await? {
        // Kinds newer than this cohortctl are left alone.
        if cohort_proto::convert::entity_kind(e.kind).is_none() {
            continue;
        }
        let def = crate::commands::stored(&e)?;
        current
            .insert((def.kind(), e.key), Current { canonical: def.canonical(), def, revision: e.revision });
    }

    let mut items = Vec::with_capacity(specs.len());
    for spec in specs {
        match plan(spec, &current) {
            Ok(item) => items.push(item),
            Err(d) => report.errors.push(d),
        }
    }
    if report.failed() {
        return finish(report, con);
    }
    let pruned = if opts.prune { prunable(&items, &current) } else { Vec::new() };
    report.errors.extend(live_experiments(&pruned, &current));
    if report.failed() {
        return finish(report, con);
    }
    if !opts.server_validation_only {
        let kept: HashMap<(Kind, String), Current> = current
            .iter()
            .filter(|(id, _)| !pruned.iter().any(|p| (p.kind, p.key.as_str()) == (id.0, id.1.as_str())))
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        report.errors.extend(preflight(&items, &kept));
        if report.failed() {
            return finish(report, con);
        }
    }
    order(&mut items);

    if opts.dry_run {
        for item in &items {
            for outcome in planned(item) {
                show(con, &outcome)?;
                report.results.push(outcome);
            }
        }
        for p in &pruned {
            let outcome = deleted(p, None);
            show(con, &outcome)?;
            report.results.push(outcome);
        }
        return finish(report, con);
    }
    if !pruned.is_empty() {
        confirm_prune(&pruned, opts.yes, con)?;
    }

    let reason = format!(
        "cohortctl apply {}",
        opts.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
    );
    let (mut operations, steps) = batch(&mut items, &reason);
    // Deletes last: the server validates the batch as a whole, and nothing written above
    // may still name what goes.
    operations.extend(pruned.iter().map(|p| pb::BatchOperation {
        operation: Some(pb::batch_operation::Operation::Delete(pb::DeleteOperation {
            kind: pb::EntityKind::from(p.kind) as i32,
            key: p.key.clone(),
            expected_revision: p.revision,
            reason: reason.clone(),
        })),
    }));
    if operations.is_empty() {
        for item in &items {
            let outcome = outcome(&item.spec, "unchanged", Vec::new(), None);
            show(con, &outcome)?;
            report.results.push(outcome);
        }
        return finish(report, con);
    }
    let request = pb::ApplyBatchRequest { environment: env.into(), operations };
    match client.rpc.apply_batch(request).await {
        Ok(r) => {
            let version = r.into_inner().version;
            for (i, step) in steps {
                let spec = &items[i].spec;
                let o = match step {
                    Step::Write(what, fields) => outcome(spec, what, fields, Some(version)),
                    Step::Move(action) => outcome(spec, lifecycle::past(action), Vec::new(), Some(version)),
                };
                show(con, &o)?;
                report.results.push(o);
            }
            for item in &items {
                if matches!(item.write, Write::None) && item.moves.is_empty() {
                    let outcome = outcome(&item.spec, "unchanged", Vec::new(), None);
                    show(con, &outcome)?;
                    report.results.push(outcome);
                }
            }
            for p in &pruned {
                let outcome = deleted(p, Some(version));
                show(con, &outcome)?;
                report.results.push(outcome);
            }
        }
        Err(status) => {
            use tonic::Code::{
                DeadlineExceeded, PermissionDenied, Unauthenticated, Unavailable, Unimplemented,
            };
            // Every write would fail the same way: stop the run.
            if matches!(
                status.code(),
                Unauthenticated | PermissionDenied | Unavailable | DeadlineExceeded | Unimplemented
            ) {
                return Err(CtlError::rpc("apply the batch", status));
            }
            let subject = |op: usize| {
                steps.get(op).map(|(i, step)| {
                    let action = match step {
                        Step::Move(a) => Some(*a),
                        Step::Write(..) => None,
                    };
                    (&items[*i], action)
                })
            };
            let others = |k: Kind, name: &str| {
                items
                    .iter()
                    .find(|it| it.spec.kind() == k && it.spec.key() == name)
                    .map(|it| it.spec.origin.clone())
            };
            let (found, named) = batch_diagnostics(&status, &subject, &others);
            let mut failed: Vec<usize> =
                named.iter().filter_map(|op| steps.get(*op).map(|(i, _)| *i)).collect();
            failed.sort_unstable();
            failed.dedup();
            for i in failed {
                let o = outcome(&items[i].spec, "failed", Vec::new(), None);
                show(con, &o)?;
                report.results.push(o);
            }
            report.errors.extend(found);
        }
    }
    finish(report, con)
}

/// One operation of the batch, for the report: which item, and what it does.
#[derive(Debug, Clone)]
enum Step {
    /// "created" or "updated", with the changed fields.
    Write(&'static str, Vec<String>),
    Move(Action),
}

/// The batch, in dependency order, with the step each operation is. Revisions are tracked
/// through the batch: each operation expects what the earlier ones leave.
fn batch(items: &mut [Item], reason: &str) -> (Vec<pb::BatchOperation>, Vec<(usize, Step)>) {
    use pb::batch_operation::Operation;
    let mut operations = Vec::new();
    let mut steps = Vec::new();
    let write = |items: &mut [Item], i: usize, ops: &mut Vec<pb::BatchOperation>, steps: &mut Vec<_>| {
        let item = &mut items[i];
        let kind = pb::EntityKind::from(item.spec.kind()) as i32;
        let (operation, step) = match &item.write {
            Write::None => return,
            Write::Create(body) => (
                Operation::Create(pb::CreateOperation {
                    kind,
                    definition: cohort_proto::convert::structured::json_struct(body),
                    reason: reason.to_owned(),
                }),
                Step::Write("created", Vec::new()),
            ),
            Write::Update { definition, fields, .. } => (
                Operation::Update(pb::UpdateOperation {
                    kind,
                    key: item.spec.key().into(),
                    definition: cohort_proto::convert::structured::json_struct(definition),
                    expected_revision: item.revision,
                    reason: reason.to_owned(),
                }),
                Step::Write("updated", fields.clone()),
            ),
        };
        item.revision += 1;
        ops.push(pb::BatchOperation { operation: Some(operation) });
        steps.push((i, step));
    };
    let moves = |items: &mut [Item], i: usize, ops: &mut Vec<pb::BatchOperation>, steps: &mut Vec<_>| {
        let item = &mut items[i];
        for action in item.moves.clone() {
            ops.push(pb::BatchOperation {
                operation: Some(Operation::Transition(pb::TransitionOperation {
                    key: item.spec.key().into(),
                    action: pb::ExperimentAction::from(action) as i32,
                    expected_revision: item.revision,
                    reason: reason.to_owned(),
                })),
            });
            item.revision += 1;
            steps.push((i, Step::Move(action)));
        }
    };
    // Definitions, in dependency order (layers wait for their experiments, holdouts for
    // their layers).
    let late = |kind: Kind| matches!(kind, Kind::Layer | Kind::Holdout);
    for i in 0..items.len() {
        if !late(items[i].spec.kind()) {
            write(items, i, &mut operations, &mut steps);
        }
    }
    // Completions free layer ranges that a layer below may hand to another experiment.
    for i in 0..items.len() {
        if items[i].moves == [Action::Complete] {
            moves(items, i, &mut operations, &mut steps);
        }
    }
    for i in 0..items.len() {
        if late(items[i].spec.kind()) {
            write(items, i, &mut operations, &mut steps);
        }
    }
    // Starts and resumes come once the experiment's layer holds its range.
    for i in 0..items.len() {
        if !items[i].moves.is_empty() && items[i].moves != [Action::Complete] {
            moves(items, i, &mut operations, &mut steps);
        }
    }
    (operations, steps)
}

fn finish(mut report: ApplyReport, con: &mut Console<'_>) -> Result<ApplyReport, CtlError> {
    report.show_errors(con)?;
    if con.is_json() {
        con.json(&report)?;
    } else {
        if report.failed() && report.results.iter().all(|o| o.result == "failed") {
            con.note("nothing was written")?;
        }
        if !report.results.is_empty() || !report.failed() {
            con.line(report.summary())?;
        }
    }
    Ok(report)
}

fn show(con: &mut Console<'_>, o: &Outcome) -> Result<(), CtlError> {
    if con.is_json() {
        return Ok(());
    }
    let mut line = format!("{}/{} {}", o.kind, o.key, o.result);
    if !o.fields.is_empty() {
        line.push_str(&format!(" ({})", o.fields.join(", ")));
    }
    if let Some(v) = o.version {
        line.push_str(&format!(" [version {v}]"));
    }
    con.line(line)?;
    for change in &o.changes {
        con.line(format!("  {} {}: {change}", o.kind, o.key))?;
    }
    Ok(())
}

fn outcome(spec: &Spec, result: &'static str, fields: Vec<String>, version: Option<u64>) -> Outcome {
    Outcome { kind: spec.kind(), key: spec.key().to_owned(), result, fields, changes: Vec::new(), version }
}

fn deleted(p: &Prune, version: Option<u64>) -> Outcome {
    Outcome {
        kind: p.kind,
        key: p.key.clone(),
        result: "deleted",
        fields: Vec::new(),
        changes: Vec::new(),
        version,
    }
}

/// What `--prune` deletes: stored definitions of the kinds the files define that the files
/// do not define. Kinds the files leave out are not touched, so a file of flags never
/// deletes experiments. Ordered for the batch and the listing: dependents first (holdouts,
/// layers, experiments, flags, segments, metrics), then by key.
fn prunable(items: &[Item], current: &HashMap<(Kind, String), Current>) -> Vec<Prune> {
    let kinds: BTreeSet<Kind> = items.iter().map(|i| i.spec.kind()).collect();
    let in_files: BTreeSet<(Kind, &str)> = items.iter().map(|i| (i.spec.kind(), i.spec.key())).collect();
    let mut out: Vec<Prune> = current
        .iter()
        .filter(|((kind, key), _)| kinds.contains(kind) && !in_files.contains(&(*kind, key.as_str())))
        .map(|((kind, key), c)| Prune { kind: *kind, key: key.clone(), revision: c.revision })
        .collect();
    out.sort_by(|a, b| (5 - rank(a.kind), &a.key).cmp(&(5 - rank(b.kind), &b.key)));
    out
}

/// Running and paused experiments cannot be deleted (complete them first): one diagnostic
/// each, so the run stops before anything is written.
fn live_experiments(pruned: &[Prune], current: &HashMap<(Kind, String), Current>) -> Vec<Diagnostic> {
    pruned
        .iter()
        .filter_map(|p| match current.get(&(p.kind, p.key.clone())).map(|c| &c.def) {
            Some(Def::Experiment(e)) if e.status.is_live() => Some(
                Diagnostic::new(format!(
                    "is {} and no file defines it: --prune cannot delete it; complete it first \
                     (`cohortctl complete {}`) or keep it in the files",
                    e.status.as_str(),
                    p.key
                ))
                .about(Kind::Experiment, p.key.clone()),
            ),
            _ => None,
        })
        .collect()
}

/// Lists what `--prune` deletes on stderr, then asks on a terminal; without `yes` and with no
/// terminal to ask on, refuses.
fn confirm_prune(pruned: &[Prune], yes: bool, con: &mut Console<'_>) -> Result<(), CtlError> {
    let n = pruned.len();
    let s = if n == 1 { "" } else { "s" };
    con.note(format!("--prune deletes {n} definition{s} that no file defines:"))?;
    for p in pruned {
        con.note(format!("  {}/{}", p.kind, p.key))?;
    }
    if yes {
        return Ok(());
    }
    if !con.terminal {
        return Err(CtlError::Refused(format!(
            "apply --prune would delete {n} definition{s} and stdin is not a terminal to confirm on: \
             pass --yes to delete them; nothing was written"
        )));
    }
    if con.confirm(&format!("Delete {}?", if n == 1 { "it" } else { "them" }))? {
        Ok(())
    } else {
        Err(CtlError::Refused("not confirmed: nothing was written".into()))
    }
}

/// What the dry run reports for an item.
fn planned(item: &Item) -> Vec<Outcome> {
    let mut out = Vec::new();
    match &item.write {
        Write::Create(_) => out.push(outcome(&item.spec, "created", Vec::new(), None)),
        Write::Update { fields, changes, .. } => out.push(Outcome {
            changes: changes.clone(),
            ..outcome(&item.spec, "updated", fields.clone(), None)
        }),
        Write::None if item.moves.is_empty() => out.push(outcome(&item.spec, "unchanged", Vec::new(), None)),
        Write::None => {}
    }
    out.extend(item.moves.iter().map(|a| outcome(&item.spec, crate::lifecycle::past(*a), Vec::new(), None)));
    out
}

/// The same entity twice in the files is ambiguous: refuse.
pub(crate) fn duplicates(specs: &[Spec]) -> Vec<Diagnostic> {
    let mut seen: HashMap<(Kind, &str), &Origin> = HashMap::new();
    let mut out = Vec::new();
    for spec in specs {
        if let Some(first) = seen.get(&(spec.kind(), spec.key())) {
            out.push(spec.origin.diagnostic(
                spec.kind(),
                spec.key(),
                ".",
                format!("defined twice; first at {}:{}", first.file, first.line()),
            ));
        } else {
            seen.insert((spec.kind(), spec.key()), &spec.origin);
        }
    }
    out
}

/// Decides what to write for one spec against what is stored.
fn plan(spec: Spec, current: &HashMap<(Kind, String), Current>) -> Result<Item, Diagnostic> {
    let stored = current.get(&(spec.kind(), spec.key().to_owned())).cloned();
    let mut desired = spec.def.clone();
    let mut moves = Vec::new();
    let mut end = spec.def.clone();
    if let Def::Experiment(want) = &mut desired {
        // The definition write keeps the stored status (statuses move only by transitions)
        // and the stored id when the file has none.
        let (from, id) = match &stored {
            Some(Current { def: Def::Experiment(have), .. }) => (have.status, Some(have.id)),
            _ => (ExperimentStatus::Draft, None),
        };
        let to = spec.status.unwrap_or(from);
        moves = lifecycle::path(from, to).map_err(|why| {
            spec.origin.diagnostic(
                Kind::Experiment,
                &want.key,
                "status",
                format!("{why} (it is {})", from.as_str()),
            )
        })?;
        want.status = from;
        if !spec.id_given {
            want.id = id.unwrap_or_else(uuid::Uuid::new_v4);
        }
        if let Def::Experiment(e) = &mut end {
            e.status = to;
            e.id = want.id;
        }
    }
    if let Def::Holdout(want) = &mut desired
        && !spec.id_given
    {
        // As for experiments: the stored id, or a stand-in the server replaces on create.
        want.id = match &stored {
            Some(Current { def: Def::Holdout(have), .. }) => have.id,
            _ => uuid::Uuid::new_v4(),
        };
        if let Def::Holdout(h) = &mut end {
            h.id = want.id;
        }
    }
    let canonical = desired.canonical();
    let (write, revision) = match &stored {
        None => {
            let mut body = canonical;
            if let (Def::Experiment(_) | Def::Holdout(_), Some(obj)) = (&desired, body.as_object_mut()) {
                if !spec.id_given {
                    obj.remove("id");
                }
                obj.remove("status");
            }
            (Write::Create(body), 0)
        }
        Some(have) if have.canonical == canonical => (Write::None, have.revision),
        Some(have) => {
            let fields = changed_fields(&have.canonical, &canonical);
            let changes = diff(&have.canonical, &canonical);
            (Write::Update { definition: canonical, fields, changes }, have.revision)
        }
    };
    Ok(Item { spec, write, moves, end, revision })
}

/// An entry of a `Definitions` list: its kind, key, and file position when it is from a file.
type Subject<'a> = (Kind, &'a str, Option<&'a Origin>);

/// Compiles the environment as the plan leaves it; problems point into the files.
fn preflight(items: &[Item], current: &HashMap<(Kind, String), Current>) -> Vec<Diagnostic> {
    let mut from_files: HashMap<(Kind, &str), &Item> = HashMap::new();
    for item in items {
        from_files.insert((item.spec.kind(), item.spec.key()), item);
    }
    let mut entries: Vec<(&Def, Option<&Origin>)> = Vec::new();
    let mut stored: Vec<(&(Kind, String), &Current)> = current.iter().collect();
    stored.sort_by(|a, b| a.0.cmp(b.0));
    for (id, c) in stored {
        if !from_files.contains_key(&(id.0, id.1.as_str())) {
            entries.push((&c.def, None));
        }
    }
    entries.extend(items.iter().map(|i| (&i.end, Some(&i.spec.origin))));
    compile_entries(entries).err().unwrap_or_default()
}

/// Compiles definitions (each from a file, or stored when its origin is `None`) as one
/// environment, with cohort-core as the server does. Problems point into the files.
pub(crate) fn compile_entries(
    entries: Vec<(&Def, Option<&Origin>)>,
) -> Result<(Definitions, cohort_core::CompiledConfig), Vec<Diagnostic>> {
    let mut defs = Definitions::default();
    let mut index: HashMap<Kind, Vec<Subject<'_>>> = HashMap::new();
    for (def, origin) in entries {
        index.entry(def.kind()).or_default().push((def.kind(), def.key(), origin));
        match def.clone() {
            Def::Flag(d) => defs.flags.push(d),
            Def::Experiment(d) => defs.experiments.push(d),
            Def::Layer(d) => defs.layers.push(d),
            Def::Segment(d) => defs.segments.push(d),
            Def::Metric(d) => defs.metrics.push(d),
            Def::Holdout(d) => defs.holdouts.push(d),
        }
    }
    let errors = match cohort_core::compile(&defs) {
        Ok(config) => return Ok((defs, config)),
        Err(errors) => errors,
    };
    let mut shown = BTreeSet::new();
    Err(errors
        .iter()
        .map(|e| {
            let path = parse_path(&e.path);
            let subject = match path.as_slice() {
                [Segment::Field(list), Segment::Index(i), ..] => Kind::ALL
                    .into_iter()
                    .find(|k| k.plural() == list)
                    .and_then(|k| index.get(&k))
                    .and_then(|entries| entries.get(*i)),
                _ => None,
            };
            match subject {
                Some((kind, key, Some(origin))) => {
                    origin.diagnostic(*kind, key, &format_path(&path[2..]), e.message.clone())
                }
                Some((kind, key, None)) => {
                    Diagnostic::new(format!("{} (stored, not in these files)", e.message))
                        .about(*kind, *key)
                        .field(format_path(&path[2..]))
                }
                None => Diagnostic::new(e.message.clone()).field(e.path.clone()),
            }
        })
        // A flagd file's flags share its `$evaluators`: a bad one is reported once, not per flag.
        .filter(|d| shown.insert(d.to_string()))
        .collect())
}

/// Dependency order: metrics, segments (a segment after those it names), flags, experiments,
/// layers, holdouts (which name layers and metrics). Within a kind, files order.
fn order(items: &mut [Item]) {
    let depth = segment_depths(items);
    items.sort_by_key(|i| (rank(i.spec.kind()), depth.get(i.spec.key()).copied().unwrap_or(0)));
}

/// A kind's place in dependency order: what names others comes later.
fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::Metric => 0,
        Kind::Segment => 1,
        Kind::Flag => 2,
        Kind::Experiment => 3,
        Kind::Layer => 4,
        Kind::Holdout => 5,
    }
}

/// For segments in the files: how many file segments deep their `in_segment` references go.
fn segment_depths(items: &[Item]) -> HashMap<String, usize> {
    let refs: HashMap<&str, Vec<String>> = items
        .iter()
        .filter_map(|i| match &i.spec.def {
            Def::Segment(s) => {
                let mut names = Vec::new();
                if let Some(c) = &s.condition {
                    segment_refs(c, &mut names);
                }
                Some((s.key.as_str(), names))
            }
            _ => None,
        })
        .collect();
    fn depth(key: &str, refs: &HashMap<&str, Vec<String>>, seen: &mut BTreeSet<String>) -> usize {
        if !seen.insert(key.to_owned()) {
            return 0; // A cycle: the server will say so.
        }
        let d = refs.get(key).map_or(0, |names| {
            names
                .iter()
                .filter(|n| refs.contains_key(n.as_str()))
                .map(|n| 1 + depth(n, refs, seen))
                .max()
                .unwrap_or(0)
        });
        seen.remove(key);
        d
    }
    refs.keys().map(|k| (k.to_string(), depth(k, &refs, &mut BTreeSet::new()))).collect()
}

fn segment_refs(c: &Condition, out: &mut Vec<String>) {
    match c {
        Condition::All { conditions } | Condition::Any { conditions } => {
            conditions.iter().for_each(|c| segment_refs(c, out))
        }
        Condition::Not { condition } => segment_refs(condition, out),
        Condition::InSegment { segment } => out.push(segment.clone()),
        _ => {}
    }
}

/// Reads a refused write into diagnostics that point into the files: the written entity's
/// fields (`definition.x`) at its lines, other entities' (`layers["main"].experiments[0]`)
/// at theirs when they are in the files too.
pub fn status_diagnostics(
    status: &Status,
    kind: Kind,
    key: &str,
    origin: &Origin,
    others: &dyn Fn(Kind, &str) -> Option<Origin>,
) -> Vec<Diagnostic> {
    let cause = format!("after the write of {kind} {key}");
    violations(status)
        .into_iter()
        .map(|(field, description)| {
            other_entity(&field, &description, &cause, Some(origin), others).unwrap_or_else(|| {
                origin.diagnostic(kind, key, if field.is_empty() { "." } else { &field }, description)
            })
        })
        .collect()
}

/// A violation of another entity (`layers["main"].experiments[0]`), at its line when it is
/// in the files, else at `fallback`'s file and line.
fn other_entity(
    field: &str,
    description: &str,
    cause: &str,
    fallback: Option<&Origin>,
    others: &dyn Fn(Kind, &str) -> Option<Origin>,
) -> Option<Diagnostic> {
    let path = parse_path(field);
    let [Segment::Field(list), Segment::Key(other), rest @ ..] = path.as_slice() else { return None };
    let other_kind = Kind::ALL.into_iter().find(|k| k.plural() == list)?;
    let message = format!("{description} ({cause})");
    Some(match others(other_kind, other) {
        Some(o) => o.diagnostic(other_kind, other, &format_path(rest), message),
        None => {
            let d = Diagnostic::new(message).about(other_kind, other.clone()).field(format_path(rest));
            match fallback {
                Some(origin) => d.at(origin.file.as_ref(), Some(origin.line())),
                None => d,
            }
        }
    })
}

/// The operation a batch error names, `operations[3]`, and the rest of the text after it.
fn operation_of(text: &str) -> Option<(usize, &str)> {
    let at = text.find("operations[")?;
    let rest = &text[at + "operations[".len()..];
    let (index, rest) = rest.split_once(']')?;
    let index = index.parse().ok()?;
    let rest = rest.strip_prefix('.').or_else(|| rest.strip_prefix(": ")).unwrap_or(rest);
    Some((index, rest))
}

/// Reads a refused batch into diagnostics that point into the files, each at the item whose
/// operation it names (`operations[2].definition.variants[1]` → that item's line), and which
/// operations were named. `subject` gives an operation's item, and its lifecycle move if it
/// is one.
fn batch_diagnostics<'a>(
    status: &Status,
    subject: &dyn Fn(usize) -> Option<(&'a Item, Option<Action>)>,
    others: &dyn Fn(Kind, &str) -> Option<Origin>,
) -> (Vec<Diagnostic>, Vec<usize>) {
    let mut named = Vec::new();
    let mut found = Vec::new();
    for (field, description) in violations(status) {
        let op = if field.is_empty() {
            operation_of(&description).map(|(i, rest)| (i, String::new(), rest.to_owned()))
        } else {
            operation_of(&field).map(|(i, rest)| (i, rest.to_owned(), description.clone()))
        };
        let Some((i, field, description)) = op else {
            let d = other_entity(&field, &description, "after this apply", None, others)
                .unwrap_or_else(|| Diagnostic::new(description).field(field));
            found.push(d);
            continue;
        };
        named.push(i);
        let Some((item, action)) = subject(i) else {
            found.push(Diagnostic::new(description).field(field));
            continue;
        };
        let (kind, key, origin) = (item.spec.kind(), item.spec.key(), &item.spec.origin);
        let mut d = origin.diagnostic(kind, key, if field.is_empty() { "." } else { &field }, description);
        if let Some(action) = action
            && !field.starts_with("definition")
        {
            // A refused move points at the status the file asks for.
            d.line = Some(origin.line_of(&[Segment::Field("status".into())]));
            if d.field.is_none() {
                d.message = format!("cannot {}: {}", action.as_str(), d.message);
            }
        }
        found.push(d);
    }
    // As in `preflight`: an evaluator shared by a flagd file's flags, reported once.
    let mut shown = BTreeSet::new();
    found.retain(|d| shown.insert(d.to_string()));
    (found, named)
}

#[cfg(test)]
mod tests;
