//! What an operator sees of the config service: its admin port's `/metrics` and, through reflection on
//! its gRPC port, exactly the services that port serves (`cohort_dev::testing::operator`).

use cohort_dev::stack::Service;
use cohort_dev::testing::TestCluster;
use cohort_dev::testing::operator::{Scrape, reflected};

#[tokio::test]
async fn metrics_show_the_build_and_the_process_and_the_pool_and_reflection_only_this_port() {
    let cluster = TestCluster::with(&[Service::Config]).await;
    let addrs = cluster.addrs(Service::Config);
    assert_eq!(
        reflected(&addrs).await,
        [
            "cohort.config.v1.ConfigService",
            "cohort.config.v1.InternalService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection"
        ]
    );
    Scrape::of(&addrs, "cohort-config").await.assert_pool();
    cluster.stop().await;
}
