//! `results`: an experiment's scorecard from the analysis service, its latest result or
//! (`--looks`) the result of every formal look, as a table, JSON, YAML or CSV.

use cohort_proto::analysis::v1 as apb;
use serde_json::Value;

use crate::client::AnalysisRpc;
use crate::console::{Console, Format, csv};
use crate::error::CtlError;
use crate::scorecard;
use crate::wire::result_value;

/// Results per ListResults page.
const PAGE: u32 = 100;

/// `results EXPERIMENT [--looks]`: prints and returns the results (one, or every look's,
/// newest first).
pub async fn results(
    rpc: &mut AnalysisRpc,
    env: &str,
    experiment: &str,
    looks: bool,
    con: &mut Console<'_>,
) -> Result<Vec<Value>, CtlError> {
    let results = if looks {
        look_history(rpc, env, experiment).await?
    } else {
        let request = apb::GetResultsRequest { environment: env.into(), experiment: experiment.into() };
        let r = rpc
            .get_results(request)
            .await
            .map_err(|s| CtlError::rpc(format!("get results of {experiment}"), s))?
            .into_inner();
        let r = r
            .result
            .ok_or_else(|| CtlError::Protocol(format!("results of {experiment} without a result")))?;
        vec![result_value(&r)?]
    };
    let unreadable = |e: String| CtlError::Protocol(e);
    match con.format {
        Format::Json | Format::Yaml if looks => con.data(&results)?,
        Format::Json | Format::Yaml => con.data(&results[0])?,
        Format::Csv => {
            let mut rows = Vec::new();
            for r in &results {
                rows.extend(scorecard::csv_rows(r).map_err(unreadable)?);
            }
            write!(con.out, "{}", csv(&scorecard::CSV_HEADERS, &rows))?;
        }
        _ if looks && results.is_empty() => {
            con.note(format!("{experiment}: no formal look yet"))?;
        }
        _ if looks => write!(con.out, "{}", scorecard::looks_table(&results).map_err(unreadable)?)?,
        _ => write!(con.out, "{}", scorecard::render(&results[0]).map_err(unreadable)?)?,
    }
    Ok(results)
}

/// Every look's result, through every page.
async fn look_history(rpc: &mut AnalysisRpc, env: &str, experiment: &str) -> Result<Vec<Value>, CtlError> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = apb::ListResultsRequest {
            environment: env.into(),
            experiment: experiment.into(),
            page_size: PAGE,
            page_token,
        };
        let page = rpc
            .list_results(request)
            .await
            .map_err(|s| CtlError::rpc(format!("list the looks of {experiment}"), s))?
            .into_inner();
        for r in &page.results {
            all.push(result_value(r)?);
        }
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}
