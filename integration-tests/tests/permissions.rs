//! The permission matrix: every kind of caller against every RPC of every service (read from
//! the services' own descriptors, so a new RPC without a row fails this test) and every HTTP
//! route, expecting the caller to pass authorization or the exact refusal: UNAUTHENTICATED
//! (401) for no key, an unknown key or a revoked one; PERMISSION_DENIED (403) for a key that
//! may not do this (a client-side key anywhere but evaluation and events); NOT_FOUND for an environment out of an admin key's reach (as for one that
//! does not exist). "Pass" means authorization let the call through: the (mostly empty)
//! request may still be refused for what it says, with any other code.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cohort_dev::stack::Service;
use cohort_dev::testing::{TestCluster, authed, http};
use cohort_proto::config::v1 as cpb;
use prost::Message;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Caller {
    NoKey,
    UnknownKey,
    RevokedKey,
    Sdk,
    /// A client-side key (browsers): evaluates and sends exposures, nothing else.
    Client,
    Admin,
    AdminReadOnly,
    /// An admin key limited to another environment (`staging`).
    AdminOtherEnvironment,
    /// The analysis service's key.
    Service,
}

use Caller::*;

const CALLERS: [Caller; 9] =
    [NoKey, UnknownKey, RevokedKey, Sdk, Client, Admin, AdminReadOnly, AdminOtherEnvironment, Service];

/// What a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Unauthenticated,
    Denied,
    /// NOT_FOUND naming the environment.
    Hidden,
}

use Outcome::*;

/// Expected outcomes for one call, in [`CALLERS`] order. Every call refuses callers without a
/// working key the same way, so rows start from the keyed callers.
fn row(
    sdk: Outcome,
    client: Outcome,
    admin: Outcome,
    read_only: Outcome,
    other_env: Outcome,
    service: Outcome,
) -> [Outcome; 9] {
    [Unauthenticated, Unauthenticated, Unauthenticated, sdk, client, admin, read_only, other_env, service]
}

const OPEN: [Outcome; 9] = [Pass; 9];

/// One row per gRPC method (`/package.Service/Method`), with the request sent (empty unless
/// the call's rights depend on what it asks).
fn grpc_matrix(production_id: &str) -> BTreeMap<&'static str, ([Outcome; 9], Vec<u8>)> {
    let empty = Vec::new;
    // A pause, naming production by id as services do: what a service key may do (the
    // experiment need not exist).
    let pause = cpb::TransitionExperimentRequest {
        environment: production_id.into(),
        key: "checkout".into(),
        action: cpb::ExperimentAction::Pause as i32,
        reason: "guardrail".into(),
        ..Default::default()
    }
    .encode_to_vec();
    // Naming production: an admin key limited to staging cannot tell it exists.
    let production = |m: &dyn Fn(String) -> Vec<u8>| m("production".into());
    let mut matrix = BTreeMap::from([
        // The bootstrap token, not a key, guards the first organization.
        ("/cohort.config.v1.ConfigService/Bootstrap", (OPEN, empty())),
        (
            "/cohort.config.v1.ConfigService/CreateEnvironment",
            (row(Denied, Denied, Pass, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/UpdateEnvironment",
            (
                row(Denied, Denied, Pass, Denied, Hidden, Denied),
                production(&|environment| {
                    cpb::UpdateEnvironmentRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/ListEnvironments",
            (row(Pass, Denied, Pass, Pass, Pass, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/CreateApiKey",
            (row(Denied, Denied, Pass, Denied, Pass, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/ListApiKeys",
            (row(Denied, Denied, Pass, Pass, Pass, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/RevokeApiKey",
            (row(Denied, Denied, Pass, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/RotateApiKey",
            (row(Denied, Denied, Pass, Denied, Pass, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/CreateEntity",
            (
                row(Denied, Denied, Pass, Denied, Hidden, Denied),
                production(&|environment| {
                    cpb::CreateEntityRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/GetEntity",
            (
                row(Pass, Denied, Pass, Pass, Hidden, Denied),
                production(&|environment| {
                    cpb::GetEntityRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/ListEntities",
            (
                row(Pass, Denied, Pass, Pass, Hidden, Denied),
                production(&|environment| {
                    cpb::ListEntitiesRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/UpdateEntity",
            (
                row(Denied, Denied, Pass, Denied, Hidden, Denied),
                production(&|environment| {
                    cpb::UpdateEntityRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/DeleteEntity",
            (
                row(Denied, Denied, Pass, Denied, Hidden, Denied),
                production(&|environment| {
                    cpb::DeleteEntityRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/TransitionExperiment",
            (row(Denied, Denied, Pass, Denied, Hidden, Pass), pause),
        ),
        (
            "/cohort.config.v1.ConfigService/ApplyBatch",
            (
                row(Denied, Denied, Pass, Denied, Hidden, Denied),
                production(&|environment| {
                    cpb::ApplyBatchRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/GetSnapshot",
            (
                row(Pass, Denied, Pass, Pass, Hidden, Denied),
                production(&|environment| cpb::GetSnapshotRequest { environment }.encode_to_vec()),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/ListAudit",
            (row(Denied, Denied, Pass, Pass, Denied, Denied), empty()),
        ),
        (
            "/cohort.config.v1.ConfigService/GetPropagation",
            (
                row(Denied, Denied, Pass, Pass, Hidden, Denied),
                production(&|environment| {
                    cpb::GetPropagationRequest { environment, ..Default::default() }.encode_to_vec()
                }),
            ),
        ),
        (
            "/cohort.config.v1.ConfigService/Sync",
            (row(Pass, Denied, Denied, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.config.v1.InternalService/VerifyKey",
            (row(Denied, Denied, Denied, Denied, Denied, Pass), empty()),
        ),
        (
            "/cohort.config.v1.InternalService/ListRunning",
            (row(Denied, Denied, Denied, Denied, Denied, Pass), empty()),
        ),
        (
            "/cohort.config.v1.InternalService/FindExperiments",
            (row(Denied, Denied, Denied, Denied, Denied, Pass), empty()),
        ),
        (
            "/cohort.evaluation.v1.EvaluationService/Evaluate",
            (row(Pass, Pass, Denied, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.evaluation.v1.EvaluationService/EvaluateBatch",
            (row(Pass, Pass, Denied, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.events.v1.EventService/SendBatch",
            (row(Pass, Pass, Denied, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.events.v1.EventService/StreamBatches",
            (row(Pass, Pass, Denied, Denied, Denied, Denied), empty()),
        ),
        (
            "/cohort.analysis.v1.AnalysisService/GetResults",
            (row(Denied, Denied, Pass, Pass, Pass, Denied), empty()),
        ),
        (
            "/cohort.analysis.v1.AnalysisService/ListResults",
            (row(Denied, Denied, Pass, Pass, Pass, Denied), empty()),
        ),
        // Probes and tooling: no key.
        ("/grpc.health.v1.Health/Check", (OPEN, empty())),
        ("/grpc.health.v1.Health/Watch", (OPEN, empty())),
        ("/grpc.health.v1.Health/List", (OPEN, empty())),
    ]);
    // flagd's evaluation service, both versions: what the evaluation service's own RPCs take
    // (an empty request names no flag: NOT_FOUND, past the key check).
    for version in ["v1", "v2"] {
        for rpc in [
            "ResolveBoolean",
            "ResolveString",
            "ResolveInt",
            "ResolveFloat",
            "ResolveObject",
            "ResolveAll",
            "EventStream",
        ] {
            let method: &'static str = format!("/flagd.evaluation.{version}.Service/{rpc}").leak();
            matrix.insert(method, (row(Pass, Pass, Denied, Denied, Denied, Denied), empty()));
        }
    }
    matrix
}

/// Which service serves a gRPC service.
fn server_of(method: &str) -> Service {
    match method.split('/').nth(1).unwrap_or_default() {
        "cohort.config.v1.ConfigService" | "cohort.config.v1.InternalService" => Service::Config,
        "cohort.evaluation.v1.EvaluationService"
        | "flagd.evaluation.v1.Service"
        | "flagd.evaluation.v2.Service" => Service::Evaluation,
        "cohort.events.v1.EventService" => Service::Events,
        "cohort.analysis.v1.AnalysisService" => Service::Analysis,
        _ => Service::Config,
    }
}

/// Every RPC the services define (their descriptors) and gRPC health's.
fn every_rpc() -> BTreeSet<String> {
    let mut methods = BTreeSet::new();
    for set in [cohort_proto::FILE_DESCRIPTOR_SET, tonic_health::pb::FILE_DESCRIPTOR_SET] {
        let set = prost_types::FileDescriptorSet::decode(set).expect("descriptors decode");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                }
            }
        }
    }
    methods
}

/// Sends `body` as the one request message (a unary call is a one-message stream on the wire)
/// and reads the answer's status.
async fn call(channel: Channel, method: &str, secret: Option<&str>, body: Vec<u8>) -> (Code, String) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("the channel is ready");
    let body = tokio_stream::once(body);
    let mut request = match secret {
        Some(secret) => authed(secret, body),
        None => tonic::Request::new(body),
    };
    request.set_timeout(Duration::from_secs(5));
    let path = method.parse().expect("a method path");
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = grpc.streaming(request, path, Raw).await?.into_inner();
        // Streams that stay open after a good start (Sync, health Watch) answered: passed.
        match tokio::time::timeout(Duration::from_secs(1), stream.message()).await {
            Ok(r) => r.map(drop),
            Err(_) => Ok(()),
        }
    })
    .await;
    match outcome {
        Ok(Ok(())) => (Code::Ok, String::new()),
        Ok(Err(status)) => (status.code(), status.message().to_owned()),
        Err(_) => (Code::DeadlineExceeded, String::new()),
    }
}

fn classify(code: Code, message: &str) -> Outcome {
    match code {
        Code::Unauthenticated => Unauthenticated,
        Code::PermissionDenied => Denied,
        Code::NotFound if message.starts_with("environment") => Hidden,
        _ => Pass,
    }
}

fn classify_http(status: u16) -> Outcome {
    match status {
        401 => Unauthenticated,
        403 => Denied,
        _ => Pass,
    }
}

/// Requests as bytes, answers read and dropped: the matrix is about who gets through.
#[derive(Debug, Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

/// The callers' secrets on one installation, and its production environment's id.
struct Keys(BTreeMap<Caller, Option<String>>, String);

async fn keys(cluster: &TestCluster) -> Keys {
    let tenant = cluster.seed_organization("acme").await;
    let mut config = cluster.config().await;
    let admin = tenant.admin_key.clone();
    config
        .create_environment(authed(
            &admin,
            cpb::CreateEnvironmentRequest {
                key: "staging".into(),
                name: String::new(),
                ..Default::default()
            },
        ))
        .await
        .expect("staging");
    let create = |request: cpb::CreateApiKeyRequest| {
        let mut config = config.clone();
        let admin = admin.clone();
        async move { config.create_api_key(authed(&admin, request)).await.expect("a key").into_inner() }
    };
    let admin_kind = |name: &str| cpb::CreateApiKeyRequest {
        kind: cpb::KeyKind::Admin as i32,
        name: name.into(),
        ..Default::default()
    };
    let read_only = create(cpb::CreateApiKeyRequest { read_only: true, ..admin_kind("reader") }).await;
    let other =
        create(cpb::CreateApiKeyRequest { environments: vec!["staging".into()], ..admin_kind("staging") })
            .await;
    let revoked = create(cpb::CreateApiKeyRequest {
        kind: cpb::KeyKind::Sdk as i32,
        name: "old".into(),
        environment: "production".into(),
        ..Default::default()
    })
    .await;
    let client = create(cpb::CreateApiKeyRequest {
        kind: cpb::KeyKind::Client as i32,
        name: "web".into(),
        environment: "production".into(),
        ..Default::default()
    })
    .await;
    let id = revoked.key.as_ref().unwrap().id.clone();
    config.revoke_api_key(authed(&admin, cpb::RevokeApiKeyRequest { id })).await.expect("revoked");
    Keys(
        BTreeMap::from([
            (NoKey, None),
            (UnknownKey, Some(format!("cohort_sdk_{}", "0".repeat(64)))),
            (RevokedKey, Some(revoked.secret)),
            (Sdk, Some(tenant.sdk_key)),
            (Client, Some(client.secret)),
            (Admin, Some(tenant.admin_key)),
            (AdminReadOnly, Some(read_only.secret)),
            (AdminOtherEnvironment, Some(other.secret)),
            (Service, Some(cluster.service_key(Service::Analysis))),
        ]),
        tenant.environment_id.to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_against_every_rpc_and_route() {
    let cluster = TestCluster::start().await;
    let keys = keys(&cluster).await;
    // Revocation reaches the other services' key caches within seconds.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let matrix = grpc_matrix(&keys.1);
    let missing: Vec<_> = every_rpc().into_iter().filter(|m| !matrix.contains_key(m.as_str())).collect();
    assert!(missing.is_empty(), "RPCs without a row in the permission matrix: {missing:?}");

    let mut channels = BTreeMap::new();
    for service in [Service::Config, Service::Events, Service::Analysis, Service::Evaluation] {
        channels.insert(service.as_str(), cluster.channel(service).await);
    }
    let mut wrong = Vec::new();
    for (method, (expected, body)) in &matrix {
        let service = server_of(method);
        for (caller, expect) in CALLERS.iter().zip(expected) {
            let channel = channels[service.as_str()].clone();
            let (code, message) = call(channel, method, keys.0[caller].as_deref(), body.clone()).await;
            if classify(code, &message) != *expect {
                wrong.push(format!("{method} as {caller:?}: expected {expect:?}, got {code:?} {message:?}"));
            }
        }
    }

    // HTTP: the routes that take keys, with the same callers.
    let routes: [(Service, &str, &str, [Outcome; 9]); 6] = [
        (Service::Config, "GET", "/api/v1/config", row(Pass, Denied, Denied, Denied, Denied, Denied)),
        (Service::Evaluation, "POST", "/api/v1/evaluate", row(Pass, Pass, Denied, Denied, Denied, Denied)),
        (
            Service::Evaluation,
            "POST",
            "/ofrep/v1/evaluate/flags",
            row(Pass, Pass, Denied, Denied, Denied, Denied),
        ),
        (
            Service::Evaluation,
            "POST",
            "/ofrep/v1/evaluate/flags/checkout",
            row(Pass, Pass, Denied, Denied, Denied, Denied),
        ),
        (Service::Events, "POST", "/api/v1/events/batch", row(Pass, Pass, Denied, Denied, Denied, Denied)),
        (
            Service::Analysis,
            "GET",
            "/api/v1/experiments/00000000-0000-0000-0000-000000000000/results",
            row(Denied, Denied, Pass, Pass, Pass, Denied),
        ),
    ];
    for (service, method, path, expected) in routes {
        let addr = cluster.addrs(service).http;
        for (caller, expect) in CALLERS.iter().zip(expected) {
            let auth = keys.0[caller].as_ref().map(|k| format!("Bearer {k}"));
            let mut headers = vec![("content-type", "application/json")];
            if let Some(auth) = &auth {
                headers.push(("authorization", auth.as_str()));
            }
            let body = if method == "POST" { "{}" } else { "" };
            let status = http::request(addr, method, path, &headers, body).await.status;
            if classify_http(status) != expect {
                wrong.push(format!("{method} {path} as {caller:?}: expected {expect:?}, got {status}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} cells differ:\n{}", wrong.len(), wrong.join("\n"));
    cluster.stop().await;
}
