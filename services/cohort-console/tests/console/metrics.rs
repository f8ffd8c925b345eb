//! What an operator sees of the console: its admin port's `/metrics` and, through reflection on
//! its gRPC port, exactly the services that port serves (`cohort_dev::testing::operator`).

use cohort_dev::stack::Service;
use cohort_dev::testing::TestCluster;
use cohort_dev::testing::operator::{Scrape, reflected};

#[tokio::test]
async fn metrics_show_the_build_and_the_process_and_reflection_only_this_port() {
    let page = tempfile::tempdir().unwrap();
    std::fs::write(page.path().join("index.html"), "<!doctype html><title>Cohort</title>").unwrap();
    std::fs::create_dir(page.path().join("assets")).unwrap();
    let mut cluster = TestCluster::with(&[Service::Config, Service::Analysis]).await;
    let assets = page.path().display().to_string();
    let addrs = cluster.add(Service::Console, &[("--assets-dir", &assets)]).await;
    assert_eq!(reflected(&addrs).await, ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]);
    Scrape::of(&addrs, "cohort-console").await;
    cluster.stop().await;
}
