//! The live results table, read from the analysis service like any client would.

use cohort_analysis::analyze::{ExperimentResult, IntervalKind, Role};
use cohort_proto::analysis::v1 as pb;
use cohort_proto::analysis::v1::analysis_service_client::AnalysisServiceClient;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;

use crate::traffic::Traffic;
use cohort_dev::demo::{Demo, EXPERIMENT};
use cohort_dev::stack::{Service, Stack};

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{:+.1}%", v * 100.0))
}

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
        let r = c.get_results(request).await.ok()?.into_inner();
        let result =
            cohort_proto::convert::structured::to_json(r.result.and_then(|r| r.result).as_ref()).ok()?;
        serde_json::from_value::<ExperimentResult>(result).ok()
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
    let boundary = r.boundary.map_or("—".into(), |b| format!("±{b:.2}"));
    let srm = match r.srm.p_value {
        Some(p) if r.srm.detected => format!("MISMATCH (p={p:.2e})"),
        Some(p) => format!("ok (p={p:.2})"),
        None => "—".into(),
    };
    println!(
        "\n{EXPERIMENT}   look {}   information {:.0}%   boundary z {boundary}   SRM {srm}",
        r.look,
        r.information_fraction * 100.0
    );
    for m in &r.metrics {
        let label = match m.role {
            Role::Primary => "primary",
            Role::Guardrail => "guardrail",
        };
        let kind =
            m.comparisons.iter().find_map(|c| c.interval.as_ref()).map_or("interval", |i| match i.kind {
                IntervalKind::Repeated => "repeated CI",
                IntervalKind::FixedHorizon => "fixed CI",
                IntervalKind::AlwaysValid => "always-valid CI",
            });
        println!("\n  {} ({label}, {:?})", m.metric, m.aggregation);
        println!(
            "  {:<8} {:>8} {:>12} {:>9} {:>22} {:>9} {:>8}",
            "variant",
            "n",
            "mean",
            "lift",
            format!("{kind} (rel.)"),
            "p",
            if m.role == Role::Primary { "decided" } else { "harmful" }
        );
        for v in &m.variants {
            let cmp = m.comparisons.iter().find(|c| c.variant == v.variant);
            let mean = v.mean.map_or("—".into(), |x| {
                if x < 1.0 { format!("{:.2}%", x * 100.0) } else { format!("{x:.1}") }
            });
            let ci = cmp
                .and_then(|c| c.interval.as_ref()?.rel)
                .map_or(String::new(), |[lo, hi]| format!("[{}, {}]", pct(Some(lo)), pct(Some(hi))));
            let p = cmp.and_then(|c| c.p_value).map_or(String::new(), |p| format!("{p:.4}"));
            let crossed = cmp.map_or(String::new(), |c| match (m.role, c.crossed_at_look) {
                (Role::Primary, Some(k)) => format!("look {k}"),
                (Role::Guardrail, _) if c.harmful => "YES".into(),
                _ => "no".into(),
            });
            let lift = cmp.map_or(String::new(), |c| pct(c.rel_diff));
            println!(
                "  {:<8} {:>8} {:>12} {:>9} {:>22} {:>9} {:>8}",
                v.variant, v.n, mean, lift, ci, p, crossed
            );
        }
        if let Some(g) = &m.guardrail {
            println!(
                "  guardrail threshold {:.0}%, watched every cycle: {}",
                g.threshold * 100.0,
                if g.harm_detected { "HARM DETECTED" } else { "ok" }
            );
        }
    }
    if let Some(look) = r.decided_at_look {
        println!("\n  decided at look {look}: a primary metric's repeated interval excluded 0.");
    }
    if let Some(reason) = &r.paused_by_guardrail {
        println!("\n  paused: {reason}");
    }
    for w in &r.warnings {
        println!("  note: {w}");
    }
}
