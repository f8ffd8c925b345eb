//! The live results view, read from the analysis service like any client would and drawn by
//! cohortctl's scorecard (what `cohortctl results` prints).

use cohort_proto::analysis::v1 as pb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;

use crate::traffic::Traffic;
use cohort_dev::demo::{Demo, EXPERIMENT};
use cohort_dev::stack::{Service, Stack};

pub(crate) async fn print(stack: &Stack, demo: &Demo, traffic: &Traffic) {
    let users = traffic.users.load(Ordering::Relaxed);
    let stats = traffic.client.stats();
    let header = format!(
        "simulated users {users}   sdk: config v{} {:?}   events queued {} dropped {}",
        traffic.client.version(),
        traffic.client.state(),
        stats.events_queued,
        traffic.client.dropped_events()
    );
    let result = async {
        let mut c = AnalysisServiceClient::connect(stack.addrs(Service::Analysis)?.grpc_url()).await.ok()?;
        let mut request = tonic::Request::new(pb::GetResultsRequest {
            environment: "production".into(),
            experiment: EXPERIMENT.into(),
        });
        request.metadata_mut().insert("authorization", format!("Bearer {}", demo.admin_key).parse().ok()?);
        let r = c.get_results(request).await.ok()?.into_inner().result?;
        cohort_ctl::wire::result_value(&r).ok()
    }
    .await;
    if std::io::stdout().is_terminal() {
        print!("\x1b[2J\x1b[H");
    }
    println!("{header}");
    let Some(r) = result else {
        println!(
            "\n{EXPERIMENT}: waiting for the first analysis (exposures reach PostgreSQL, then a cycle runs every 2 s)…"
        );
        return;
    };
    match cohort_ctl::scorecard::render(&r) {
        Ok(text) => print!("\n{text}"),
        Err(e) => println!("\n{EXPERIMENT}: {e}"),
    }
}
