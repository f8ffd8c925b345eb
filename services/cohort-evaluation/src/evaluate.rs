//! Evaluation without tonic or axum: request checks (limits, contexts naming the bad field),
//! the environment's client, and decisions through the SDK's zero-copy guard, which records
//! an exposure for every enrolled experiment decision exactly as an embedded SDK does.

use cohort_core::Context;
use cohort_proto::ProtoError;
use cohort_proto::common::v1 as common;
use cohort_proto::convert::{
    MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTE_VALUE_BYTES, MAX_ATTRIBUTES, MAX_LIST_ELEMENTS,
};
use cohort_proto::evaluation::v1 as pb;
use cohort_sdk::{AttrValue, Client, ConfigGuard, Decision};

use crate::environments::{Environments, is_client_key};
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::origins::Origins;

/// Longest key a request may name, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// Request size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_keys: usize,
    pub max_batch_contexts: usize,
}

/// What the gRPC and HTTP front ends share.
#[derive(Debug, Clone)]
pub struct Evaluator {
    pub environments: Environments,
    /// Environments' allowed browser origins, for requests from browsers.
    pub origins: Origins,
    pub limits: Limits,
    pub metrics: Metrics,
}

impl Evaluator {
    /// `Evaluate`: decisions for one context.
    pub async fn evaluate(
        &self,
        authorization: Option<&str>,
        request: pb::EvaluateRequest,
    ) -> Result<pb::EvaluateResponse, ServiceError> {
        let public = is_client_key(crate::environments::bearer(authorization)?);
        self.check_keys(&request.keys)?;
        let ctx = wire_context(request.context).map_err(|e| e.at("context"))?;
        let client = self.environments.client(authorization).await?;
        let cfg = client.config();
        let decisions = decisions(&cfg, &ctx, &request.keys, public);
        self.metrics.decisions.inc_by(decisions.count() as u64);
        Ok(pb::EvaluateResponse::encoded(decisions, cfg.version()))
    }

    /// `EvaluateBatch`: decisions for several contexts over one config version.
    pub async fn evaluate_batch(
        &self,
        authorization: Option<&str>,
        request: pb::EvaluateBatchRequest,
    ) -> Result<pb::EvaluateBatchResponse, ServiceError> {
        let public = is_client_key(crate::environments::bearer(authorization)?);
        self.check_keys(&request.keys)?;
        let n = request.contexts.len();
        if n > self.limits.max_batch_contexts {
            return Err(ServiceError::invalid(
                "contexts",
                format!("{n} contexts, at most {} allowed", self.limits.max_batch_contexts),
            ));
        }
        let contexts = request
            .contexts
            .into_iter()
            .enumerate()
            .map(|(i, c)| Context::try_from(c).map_err(|e| e.at(&format!("contexts[{i}]"))))
            .collect::<Result<Vec<_>, _>>()?;
        let client = self.environments.client(authorization).await?;
        let cfg = client.config();
        let version = cfg.version();
        let results: Vec<pb::EvaluateResponse> = contexts
            .iter()
            .map(|ctx| pb::EvaluateResponse::encoded(decisions(&cfg, ctx, &request.keys, public), version))
            .collect();
        self.metrics.decisions.inc_by(results.iter().map(|r| r.len() as u64).sum());
        Ok(pb::EvaluateBatchResponse { results })
    }

    /// The environment's client with a config loaded (for the HTTP front end).
    pub async fn client(&self, authorization: Option<&str>) -> Result<Client, ServiceError> {
        self.environments.client(authorization).await
    }

    /// At most `max_keys` keys, each 1 to [`MAX_KEY_BYTES`] bytes.
    pub fn check_keys(&self, keys: &[String]) -> Result<(), ServiceError> {
        if keys.len() > self.limits.max_keys {
            return Err(ServiceError::invalid(
                "keys",
                format!("{} keys, at most {} allowed", keys.len(), self.limits.max_keys),
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            if k.is_empty() || k.len() > MAX_KEY_BYTES {
                return Err(ServiceError::invalid(
                    format!("keys[{i}]"),
                    format!("must be 1 to {MAX_KEY_BYTES} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// An unset context is the anonymous one.
fn wire_context(ctx: Option<common::EvaluationContext>) -> Result<Context, ProtoError> {
    match ctx {
        Some(c) => Context::try_from(c),
        None => Ok(Context::anonymous()),
    }
}

/// The decisions for `keys` (every flag then every experiment when empty), encoded for the
/// wire straight from the borrowed decisions; `public` (a client-side key) leaves out rule and
/// experiment ids. Evaluating through the guard records exposures.
pub fn decisions(
    cfg: &ConfigGuard<'_>,
    ctx: &Context,
    keys: &[String],
    public: bool,
) -> pb::EncodedDecisions {
    let capacity = keys.len().max(1);
    let mut encoder = if public {
        pb::DecisionEncoder::public_with_capacity(capacity)
    } else {
        pb::DecisionEncoder::with_capacity(capacity)
    };
    for_each_decision(cfg, ctx, keys, |d| encoder.push(d));
    encoder.finish()
}

/// Each decision for `keys` (every flag then every experiment when empty), handed to `each`.
pub fn for_each_decision<K: AsRef<str>>(
    cfg: &ConfigGuard<'_>,
    ctx: &Context,
    keys: &[K],
    mut each: impl FnMut(&Decision<'_>),
) {
    if keys.is_empty() {
        cfg.evaluate_all(ctx).iter().for_each(each);
    } else {
        for k in keys {
            each(&cfg.evaluate(k.as_ref(), ctx));
        }
    }
}

/// Checks a context that arrived as JSON against the limits the wire conversion applies to
/// protobuf contexts, naming the field like it does.
pub fn check_context(ctx: &Context) -> Result<(), ProtoError> {
    let key_len = ctx.targeting_key.as_deref().map_or(0, str::len);
    if key_len > cohort_core::hash::MAX_UNIT_BYTES {
        return Err(ProtoError::new(
            "targeting_key",
            format!("is {key_len} bytes, at most {} allowed", cohort_core::hash::MAX_UNIT_BYTES),
        ));
    }
    if ctx.attributes.len() > MAX_ATTRIBUTES {
        return Err(ProtoError::new(
            "attributes",
            format!("{} attributes, at most {MAX_ATTRIBUTES} allowed", ctx.attributes.len()),
        ));
    }
    let long = |s: &str| s.len() > MAX_ATTRIBUTE_VALUE_BYTES;
    for (name, value) in &ctx.attributes {
        let field = || format!("attributes[{name:?}]");
        if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME_BYTES {
            return Err(ProtoError::new(
                field(),
                format!("a name must be 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes"),
            ));
        }
        let problem = match value {
            AttrValue::String(s) if long(s) => {
                Some(format!("a string of {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed", s.len()))
            }
            AttrValue::Number(n) if !n.is_finite() => Some(format!("{n} is not a finite number")),
            AttrValue::StringList(l) if l.len() > MAX_LIST_ELEMENTS => {
                Some(format!("{} elements, at most {MAX_LIST_ELEMENTS} allowed", l.len()))
            }
            AttrValue::StringList(l) => l.iter().find(|s| long(s)).map(|s| {
                format!("a string of {} bytes, at most {MAX_ATTRIBUTE_VALUE_BYTES} allowed", s.len())
            }),
            _ => None,
        };
        if let Some(message) = problem {
            return Err(ProtoError::new(field(), message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
