//! What an operator sees of the events service: its admin port's `/metrics` (build
//! information, the process, its database pool, request durations) and, through reflection on its gRPC
//! port, exactly the services that port serves.

use cohort_dev::stack::Service;
use cohort_dev::testing::TestCluster;

/// The value of the first series named `name` (labels included) in a scrape.
fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_show_the_build_and_the_process_and_the_pool_and_reflection_only_this_port() {
    let cluster = TestCluster::with(&[Service::Config, Service::Events]).await;
    let addrs = cluster.addrs(Service::Events);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let services = cohort_runtime::reflected_services(channel).await.unwrap();
    assert_eq!(
        services,
        ["cohort.events.v1.EventService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]
    );

    let text = cohort_dev::testing::http::get(addrs.admin, "/metrics", &[]).await.body;
    let build = format!(
        "cohort_build_info{{service=\"cohort-events\",version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{build} in\n{text}");
    assert!(value(&text, "process_cpu_seconds_total") > 0.0);
    assert!(value(&text, "process_resident_memory_bytes") > 1e6);
    assert!(value(&text, "process_virtual_memory_bytes") >= value(&text, "process_resident_memory_bytes"));
    assert!(value(&text, "process_open_fds") < value(&text, "process_max_fds"));
    assert!(value(&text, "process_threads") >= 1.0);
    assert!(value(&text, "process_start_time_seconds") > 1.7e9);
    // The reflection call above, timed by the skeleton's stack.
    assert_eq!(value(&text, "cohort_grpc_request_duration_seconds_count{method=\"reflection\"}"), 1.0);
    let max = value(&text, "cohort_db_pool_max_connections");
    let open = value(&text, "cohort_db_pool_connections");
    // The schema check at start opened one at least.
    assert!(max == 16.0 && open >= 1.0 && open <= max, "{text}");
    assert!(value(&text, "cohort_db_pool_available_connections") <= open);
    // Callers in `get`, a connection being opened for them included: a few at most here.
    assert!(value(&text, "cohort_db_pool_waiting") <= max);
    cluster.stop().await;
}
