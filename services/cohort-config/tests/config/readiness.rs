//! Readiness follows the database: `/readyz` and gRPC health say NOT_SERVING while PostgreSQL
//! does not answer (a database that does not exist, or no server at all) and SERVING once it
//! does, and go back when it disappears.

use std::time::Duration;

use cohort_db::testing::{TestDb, server_url, with_database};
use tokio_postgres::NoTls;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::{Server, http_get};

const SERVICE: &str = "cohort.config.v1.ConfigService";

/// `/readyz`: status and body.
async fn readyz(server: &Server) -> (u16, String) {
    let (status, _, body) = http_get(server.admin, "/readyz", &[]).await;
    (status, body)
}

async fn health(server: &Server, service: &str) -> i32 {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc)).unwrap();
    let mut client = HealthClient::new(channel.connect().await.expect("connect"));
    let request = HealthCheckRequest { service: service.into() };
    client.check(request).await.map(|r| r.into_inner().status).unwrap_or(-1)
}

/// Waits up to 10 s for `/readyz` and gRPC health to both say `ready`.
async fn until_ready_is(server: &Server, ready: bool) {
    let want = if ready { ServingStatus::Serving } else { ServingStatus::NotServing } as i32;
    for _ in 0..100 {
        if (readyz(server).await.0 == 200) == ready && health(server, SERVICE).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readiness did not turn {ready}: {:?}", readyz(server).await);
}

/// Not ready now, nor after more than one health check interval (2 s).
async fn stays_unready(server: &Server) {
    for _ in 0..2 {
        assert_eq!(readyz(server).await, (503, "not ready: database".to_owned()));
        assert_eq!(health(server, SERVICE).await, ServingStatus::NotServing as i32);
        assert_eq!(health(server, "").await, ServingStatus::Serving as i32, "alive all the same");
        tokio::time::sleep(Duration::from_millis(2500)).await;
    }
}

#[tokio::test]
async fn ready_only_while_the_database_answers() {
    let db = TestDb::new().await;
    let name = format!("{}_late", db.name);
    let server = Server::start(&with_database(&db.url, &name)).await;
    stays_unready(&server).await;

    let (admin, conn) = tokio_postgres::connect(&server_url(), NoTls).await.unwrap();
    tokio::spawn(conn);
    admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    let pool = cohort_db::connect(&with_database(&db.url, &name), &Default::default()).unwrap();
    cohort_db::migrate(&pool, &cohort_db::migrate::CONFIG).await.unwrap();
    pool.close();
    until_ready_is(&server, true).await;

    admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await.unwrap();
    until_ready_is(&server, false).await;
    server.stop().await;
}

#[tokio::test]
async fn not_ready_while_no_database_server_answers() {
    // Nothing listens on port 1.
    let server = Server::start("postgres://postgres@127.0.0.1:1/cohort").await;
    stays_unready(&server).await;
    server.stop().await;
}
