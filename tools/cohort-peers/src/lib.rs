//! Cohort's evaluation engine beside Unleash's (`unleash-yggdrasil`): one set of 100 flags
//! written for both engines with the same meaning, and the users both evaluate them for.
//!
//! Each engine is held as its users hold it: Cohort's SDK client built offline from
//! definitions (`cohort_sdk::Client::from_definitions`), yggdrasil's `EngineState` loaded with
//! a client-features document (`take_state`). Both read their compiled state through an
//! `ArcSwap` on every call and record no metrics or exposures here.
//!
//! # Layout
//! - [`Peers`]: both engines over the same flags, with precomputed contexts for every user.
//! - [`User`]: the shared user data and its context in each engine's form.
//! - [`cohort_definitions`] / [`unleash_features`]: the flag set, in each engine's format.

use std::collections::HashMap;
use std::fmt;

use cohort_core::Definitions;
use cohort_sdk::Client;
use serde_json::{Value, json};
use unleash_yggdrasil::{ClientFeatures, EngineState, UpdateMessage};

/// The boolean flag rolled out to 50 % of users.
pub const ROLLOUT_50: &str = "rollout-50";
/// The flag splitting users 50/50 between the variants `a` and `b`.
pub const VARIANTS_2: &str = "variants-2";
/// The flag on only for users meeting all five constraints.
pub const CONSTRAINTS_5: &str = "constraints-5";
/// How many flags the set holds (the three above among them).
pub const FLAG_COUNT: usize = 100;
/// How many users the benchmarks rotate through.
pub const USER_COUNT: usize = 100_000;

/// The five constraints' accepted values, shared by both engines' definitions.
const COUNTRIES: [&str; 6] = ["NZ", "AU", "US", "GB", "DE", "FR"];
const PLANS: [&str; 2] = ["pro", "team"];
/// Older than this (strictly).
const MIN_AGE: u32 = 18;
/// Newer than this (strictly).
const MIN_APP_VERSION: &str = "2.4.0";
const EMAIL_DOMAIN: &str = "@example.com";

/// What one flag of the set does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// A boolean flag on for this percentage of users.
    Rollout(u32),
    /// Variants `a` and `b`, 50/50.
    Variants,
    /// On when all five constraints hold, off otherwise.
    Constraints,
}

/// The 100 flags as (key, kind): the three benchmarked flags, then a mix of the same shapes
/// under other keys, rollouts at percentages from 5 to 95.
pub fn flag_set() -> Vec<(String, FlagKind)> {
    let mut flags = vec![
        (ROLLOUT_50.to_owned(), FlagKind::Rollout(50)),
        (VARIANTS_2.to_owned(), FlagKind::Variants),
        (CONSTRAINTS_5.to_owned(), FlagKind::Constraints),
    ];
    for i in flags.len()..FLAG_COUNT {
        let (key, kind) = match i % 3 {
            0 => (format!("rollout-{i:03}"), FlagKind::Rollout(5 + (i as u32 * 37) % 91)),
            1 => (format!("variants-{i:03}"), FlagKind::Variants),
            _ => (format!("constraints-{i:03}"), FlagKind::Constraints),
        };
        flags.push((key, kind));
    }
    flags
}

/// The flag set as Cohort definitions.
pub fn cohort_definitions() -> Definitions {
    let flags: Vec<Value> = flag_set().iter().map(|(key, kind)| cohort_flag(key, *kind)).collect();
    serde_json::from_value(json!({ "flags": flags })).expect("the cohort fixture parses as definitions")
}

fn cohort_flag(key: &str, kind: FlagKind) -> Value {
    let boolean = json!([{"key": "on", "value": true}, {"key": "off", "value": false}]);
    match kind {
        FlagKind::Rollout(percent) => json!({
            "key": key, "type": "boolean", "salt": key, "variations": boolean, "off_variation": "off",
            "default": {"split": [
                {"variation": "on", "weight_bp": percent * 100},
                {"variation": "off", "weight_bp": (100 - percent) * 100},
            ]},
        }),
        FlagKind::Variants => json!({
            "key": key, "type": "string", "salt": key,
            "variations": [{"key": "a", "value": "a"}, {"key": "b", "value": "b"}],
            "default": {"split": [
                {"variation": "a", "weight_bp": 5000},
                {"variation": "b", "weight_bp": 5000},
            ]},
        }),
        FlagKind::Constraints => json!({
            "key": key, "type": "boolean", "variations": boolean, "off_variation": "off",
            "rules": [{
                "condition": {"op": "all", "conditions": [
                    {"op": "in", "attribute": "country", "values": COUNTRIES},
                    {"op": "in", "attribute": "plan", "values": PLANS},
                    {"op": "gt", "attribute": "age", "value": MIN_AGE},
                    {"op": "semver_gt", "attribute": "app_version", "value": MIN_APP_VERSION},
                    {"op": "ends_with", "attribute": "email", "value": EMAIL_DOMAIN},
                ]},
                "serve": {"variation": "on"},
            }],
            "default": {"variation": "off"},
        }),
    }
}

/// The flag set as the Unleash client features API serves it (`GET /api/client/features`).
pub fn unleash_features() -> Value {
    let features: Vec<Value> = flag_set().iter().map(|(key, kind)| unleash_feature(key, *kind)).collect();
    json!({ "version": 2, "features": features })
}

fn unleash_feature(key: &str, kind: FlagKind) -> Value {
    let (feature_type, strategy) = match kind {
        FlagKind::Rollout(percent) => (
            "release",
            json!({
                "name": "flexibleRollout", "constraints": [], "variants": [],
                "parameters": {"rollout": percent.to_string(), "stickiness": "userId", "groupId": key},
            }),
        ),
        // Strategy variants, as Unleash 5+ serves them: the rollout admits everyone and the
        // variants split them by userId.
        FlagKind::Variants => (
            "experiment",
            json!({
                "name": "flexibleRollout", "constraints": [],
                "parameters": {"rollout": "100", "stickiness": "userId", "groupId": key},
                "variants": [
                    {"name": "a", "weight": 500, "weightType": "variable", "stickiness": "userId"},
                    {"name": "b", "weight": 500, "weightType": "variable", "stickiness": "userId"},
                ],
            }),
        ),
        FlagKind::Constraints => (
            "release",
            json!({
                "name": "default", "parameters": {}, "variants": [],
                "constraints": [
                    {"contextName": "country", "operator": "IN", "values": COUNTRIES},
                    {"contextName": "plan", "operator": "IN", "values": PLANS},
                    {"contextName": "age", "operator": "NUM_GT", "value": MIN_AGE.to_string()},
                    {"contextName": "app_version", "operator": "SEMVER_GT", "value": MIN_APP_VERSION},
                    {"contextName": "email", "operator": "STR_ENDS_WITH", "values": [EMAIL_DOMAIN]},
                ],
            }),
        ),
    };
    json!({
        "name": key, "type": feature_type, "enabled": true, "project": "default",
        "impressionData": false, "strategies": [strategy], "variants": [],
    })
}

/// One user's data, from which each engine's context is built.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub id: String,
    pub country: String,
    pub plan: String,
    pub age: u32,
    pub app_version: String,
    pub email: String,
}

impl User {
    /// The `n`th user. Every user meets all five constraints (so the constraint flags run every
    /// check), with the values varying within what they accept.
    pub fn nth(n: usize) -> User {
        User {
            id: format!("user-{n:06}"),
            country: COUNTRIES[n % COUNTRIES.len()].to_owned(),
            plan: PLANS[n / 7 % PLANS.len()].to_owned(),
            age: MIN_AGE + 1 + (n % 60) as u32,
            app_version: format!("2.{}.{}", 5 + n % 4, n % 11),
            email: format!("u{n}{EMAIL_DOMAIN}"),
        }
    }

    pub fn cohort_context(&self) -> cohort_core::Context {
        cohort_core::Context::new(self.id.as_str())
            .with("country", self.country.as_str())
            .with("plan", self.plan.as_str())
            .with("age", f64::from(self.age))
            .with("app_version", self.app_version.as_str())
            .with("email", self.email.as_str())
    }

    /// Unleash's properties are strings; `NUM_GT` parses the age back to a number.
    pub fn unleash_context(&self) -> unleash_yggdrasil::Context {
        let properties = HashMap::from([
            ("country".to_owned(), self.country.clone()),
            ("plan".to_owned(), self.plan.clone()),
            ("age".to_owned(), self.age.to_string()),
            ("app_version".to_owned(), self.app_version.clone()),
            ("email".to_owned(), self.email.clone()),
        ]);
        unleash_yggdrasil::Context {
            user_id: Some(self.id.clone()),
            properties: Some(properties),
            ..unleash_yggdrasil::Context::default()
        }
    }
}

/// Both engines loaded with the flag set, and `users` users' contexts in each one's form
/// (index `i` of both lists is the same user).
pub struct Peers {
    pub cohort: Client,
    pub unleash: EngineState,
    pub cohort_contexts: Vec<cohort_core::Context>,
    pub unleash_contexts: Vec<unleash_yggdrasil::Context>,
}

impl Peers {
    /// Builds both engines and the first `users` users' contexts.
    ///
    /// # Panics
    /// When either engine rejects the fixtures (a bug in this crate).
    pub fn new(users: usize) -> Peers {
        let cohort = Client::from_definitions(&cohort_definitions()).expect("cohort compiles the flag set");

        let features: ClientFeatures = serde_json::from_value(unleash_features())
            .expect("the unleash fixture parses as client features");
        let unleash = EngineState::default();
        let warnings = unleash.take_state(UpdateMessage::FullResponse(features));
        assert!(
            warnings.as_ref().is_none_or(|w| w.is_empty()),
            "yggdrasil warned about the flag set: {warnings:?}"
        );

        let users: Vec<User> = (0..users).map(User::nth).collect();
        Peers {
            cohort,
            unleash,
            cohort_contexts: users.iter().map(User::cohort_context).collect(),
            unleash_contexts: users.iter().map(User::unleash_context).collect(),
        }
    }
}

// EngineState has no Debug.
impl fmt::Debug for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peers")
            .field("cohort", &self.cohort)
            .field("users", &self.cohort_contexts.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
