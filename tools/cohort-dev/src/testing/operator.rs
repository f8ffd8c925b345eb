//! What an operator sees of a service, checked the same way for every service: the services
//! reflection lists on its gRPC port, and what every service's admin `/metrics` exports
//! (build information, the process, request durations, and a pool where there is one).

use crate::stack::Addrs;

/// The services that reflection lists on the gRPC port.
pub async fn reflected(addrs: &Addrs) -> Vec<String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs.grpc))
        .expect("an endpoint")
        .connect()
        .await
        .expect("the gRPC port answers");
    cohort_runtime::reflected_services(channel).await.expect("reflection answers")
}

/// One scrape of the admin port's `/metrics`.
#[derive(Debug)]
pub struct Scrape {
    pub text: String,
}

impl Scrape {
    /// Scrapes `/metrics` and checks what every service exports: its build information as
    /// `service`, the process, and the one reflection call made before (by [`reflected`]),
    /// timed by the skeleton's stack.
    pub async fn of(addrs: &Addrs, service: &str) -> Scrape {
        let scrape = Scrape { text: super::http::get(addrs.admin, "/metrics", &[]).await.body };
        let text = &scrape.text;
        let build = format!(
            "cohort_build_info{{service=\"{service}\",version=\"{}\",commit=\"",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{build} in\n{text}");
        assert!(scrape.value("process_cpu_seconds_total") > 0.0);
        assert!(scrape.value("process_resident_memory_bytes") > 1e6);
        assert!(
            scrape.value("process_virtual_memory_bytes") >= scrape.value("process_resident_memory_bytes")
        );
        assert!(scrape.value("process_open_fds") < scrape.value("process_max_fds"));
        assert!(scrape.value("process_threads") >= 1.0);
        assert!(scrape.value("process_start_time_seconds") > 1.7e9);
        assert_eq!(scrape.value("cohort_grpc_request_duration_seconds_count{method=\"reflection\"}"), 1.0);
        scrape
    }

    /// The value of the first series named `name` (labels included).
    pub fn value(&self, name: &str) -> f64 {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.text))
            .parse()
            .expect("a number")
    }

    /// The PostgreSQL pool's gauges, for a service with a pool of 16.
    pub fn assert_pool(&self) {
        let max = self.value("cohort_db_pool_max_connections");
        let open = self.value("cohort_db_pool_connections");
        // The schema check at start opened one at least.
        assert!(max == 16.0 && open >= 1.0 && open <= max, "{}", self.text);
        assert!(self.value("cohort_db_pool_available_connections") <= open);
        // Callers in `get`, a connection being opened for them included: a few at most here.
        assert!(self.value("cohort_db_pool_waiting") <= max);
    }
}
