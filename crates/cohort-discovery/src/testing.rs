//! An in-process fake of the Consul HTTP endpoints Cohort uses, for tests (no Consul agent can
//! run here). It follows Consul's documented behaviour: PascalCase JSON, `X-Consul-Index` on
//! the health endpoint, blocking queries that wait while `index` is current (up to `wait`,
//! default 5 minutes, at most 10), `passing` filtering by check status, 404 for an unknown
//! service ID on deregistration, an empty `Service.Address` meaning the node's address.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::consul::Registration;

#[derive(Debug, Default)]
struct Catalog {
    index: u64,
    services: BTreeMap<String, (Registration, bool)>,
}

#[derive(Debug, Clone)]
struct Shared {
    catalog: Arc<Mutex<Catalog>>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn bump(&self, catalog: &mut Catalog) {
        catalog.index += 1;
        self.changed.send_replace(catalog.index);
    }
}

/// A running fake agent.
#[derive(Debug, Clone)]
pub struct FakeConsul {
    pub addr: SocketAddr,
    shared: Shared,
}

impl FakeConsul {
    pub async fn start() -> FakeConsul {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake consul");
        let addr = listener.local_addr().expect("addr");
        let shared = Shared {
            catalog: Arc::new(Mutex::new(Catalog { index: 1, services: BTreeMap::new() })),
            changed: watch::Sender::new(1),
        };
        let app = Router::new()
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/health/service/{service}", get(health))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FakeConsul { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registered services, by ID.
    pub fn services(&self) -> Vec<Registration> {
        let catalog = self.shared.catalog.lock().unwrap_or_else(|p| p.into_inner());
        catalog.services.values().map(|(r, _)| r.clone()).collect()
    }

    /// Sets the status of a service's check, as the agent would after running it.
    pub fn set_passing(&self, id: &str, passing: bool) {
        let mut catalog = self.shared.catalog.lock().unwrap_or_else(|p| p.into_inner());
        let changed = match catalog.services.get_mut(id) {
            Some((_, p)) if *p != passing => {
                *p = passing;
                true
            }
            _ => false,
        };
        if changed {
            self.shared.bump(&mut catalog);
        }
    }
}

// Consul decodes the body whatever its Content-Type, so this does too.
async fn register(State(s): State<Shared>, body: axum::body::Bytes) -> Response {
    let mut r: Registration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("Request decode failed: {e}")).into_response(),
    };
    if r.name.is_empty() {
        return (StatusCode::BAD_REQUEST, "Missing service name").into_response();
    }
    if r.id.is_empty() {
        r.id = r.name.clone();
    }
    let mut catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner());
    // A new registration counts as passing until a check says otherwise (tests flip it).
    let passing = catalog.services.get(&r.id).is_none_or(|(_, p)| *p);
    let unchanged = catalog.services.get(&r.id).is_some_and(|(old, _)| *old == r);
    catalog.services.insert(r.id.clone(), (r, passing));
    if !unchanged {
        s.bump(&mut catalog);
    }
    StatusCode::OK.into_response()
}

async fn deregister(State(s): State<Shared>, Path(id): Path<String>) -> Response {
    let mut catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner());
    if catalog.services.remove(&id).is_none() {
        return (
            StatusCode::NOT_FOUND,
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."),
        )
            .into_response();
    }
    s.bump(&mut catalog);
    StatusCode::OK.into_response()
}

fn parse_wait(text: &str) -> Option<Duration> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return None,
    })
}

async fn health(
    State(s): State<Shared>,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let index: u64 = match q.get("index").map(|i| i.parse()) {
        None => 0,
        Some(Ok(i)) => i,
        Some(Err(_)) => return (StatusCode::BAD_REQUEST, "Invalid index").into_response(),
    };
    let wait = match q.get("wait") {
        None => Duration::from_secs(300),
        Some(w) => match parse_wait(w) {
            Some(d) => d.min(Duration::from_secs(600)),
            None => return (StatusCode::BAD_REQUEST, "Invalid wait time").into_response(),
        },
    };
    // `?passing` with no value counts as true, as in Consul.
    let passing_only = q.get("passing").is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    let mut changed = s.changed.subscribe();
    if index > 0 && *changed.borrow_and_update() <= index {
        let _ = tokio::time::timeout(wait, async {
            while *changed.borrow_and_update() <= index {
                if changed.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    let catalog = s.catalog.lock().unwrap_or_else(|p| p.into_inner());
    let entries: Vec<serde_json::Value> = catalog
        .services
        .values()
        .filter(|(r, passing)| r.name == service && (!passing_only || *passing))
        .map(|(r, passing)| {
            let status = if *passing { "passing" } else { "critical" };
            json!({
                "Node": {"ID": "00000000-0000-0000-0000-000000000001", "Node": "fake-node", "Address": "127.0.0.1",
                         "Datacenter": "dc1", "TaggedAddresses": {}, "Meta": {}},
                "Service": {"ID": r.id, "Service": r.name, "Tags": r.tags, "Address": r.address, "Port": r.port,
                            "Meta": r.meta, "EnableTagOverride": false},
                "Checks": [
                    {"Node": "fake-node", "CheckID": "serfHealth", "Name": "Serf Health Status", "Status": "passing",
                     "ServiceID": "", "ServiceName": ""},
                    {"Node": "fake-node", "CheckID": format!("service:{}", r.id), "Name": format!("Service '{}' check", r.name),
                     "Status": status, "ServiceID": r.id, "ServiceName": r.name},
                ],
            })
        })
        .collect();
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-Index", HeaderValue::from(catalog.index));
    headers.insert("X-Consul-Knownleader", HeaderValue::from_static("true"));
    (StatusCode::OK, headers, Json(entries)).into_response()
}
