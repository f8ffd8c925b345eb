//! Runs every case of `tests/data/stats-vectors.json` (the reference values of `docs/spec/stats.md`).
//!
//! A number passes when |actual − value| ≤ abs_tol + rel_tol·|value| (element-wise for
//! intervals and lists); booleans and integers must match exactly; `value: null` means the
//! quantity is undefined and must come back as `None`, unless the actual value is listed in
//! `also_accept`. Fields ending in `_ALT` are other conventions and are skipped. All
//! mismatches are collected and reported together, and the number of cases checked must
//! equal the number in the file.

use cohort_stats::{
    Comparison, MeanSummary, ProportionSummary, SequentialPlan, compare_means, compare_proportions, srm_check,
};
use serde_json::Value;
use std::collections::BTreeMap;

const VECTORS: &str = include_str!("../data/stats-vectors.json");

/// What the engine produced for one expected field.
#[derive(Debug)]
enum Actual {
    Number(Option<f64>),
    Numbers(Option<Vec<f64>>),
    Bool(bool),
    Integer(i64),
}

type Fields = BTreeMap<String, Actual>;

fn num(value: Option<f64>) -> Actual {
    Actual::Number(value)
}

fn interval(value: Option<cohort_stats::Interval>) -> Actual {
    Actual::Numbers(value.map(|i| vec![i.lower, i.upper]))
}

fn input_f64(inputs: &Value, path: &[&str]) -> f64 {
    let mut v = inputs;
    for key in path {
        v = &v[*key];
    }
    v.as_f64().unwrap_or_else(|| panic!("input {path:?} is not a number"))
}

fn input_u64(inputs: &Value, path: &[&str]) -> u64 {
    let mut v = inputs;
    for key in path {
        v = &v[*key];
    }
    v.as_u64().unwrap_or_else(|| panic!("input {path:?} is not an unsigned integer"))
}

fn comparison_common(fields: &mut Fields, c: &Comparison) {
    fields.insert("abs_lift".into(), num(c.abs_diff));
    fields.insert("rel_lift".into(), num(c.rel_diff));
    fields.insert("abs_ci95".into(), interval(c.abs_ci));
    fields.insert("rel_se_delta".into(), num(c.rel_std_error));
    fields.insert("significant_at_0.05".into(), Actual::Bool(c.significant));
}

fn run_ztest(inputs: &Value) -> Fields {
    let arm = |name: &str| {
        ProportionSummary::new(input_u64(inputs, &[name, "users"]), input_u64(inputs, &[name, "conversions"]))
            .expect("valid proportion summary")
    };
    let alpha = input_f64(inputs, &["alpha"]);
    let c = compare_proportions(arm("control"), arm("treatment"), alpha).expect("valid alpha");
    let mut fields = Fields::new();
    comparison_common(&mut fields, &c);
    fields.insert("rate_control".into(), num(c.control));
    fields.insert("rate_treatment".into(), num(c.treatment));
    fields.insert("se_pooled".into(), num(c.std_error));
    fields.insert("z_pooled".into(), num(c.statistic));
    fields.insert("p_value_pooled".into(), num(c.p_value));
    fields.insert("se_unpooled".into(), num(c.wald.map(|w| w.std_error)));
    fields.insert("z_unpooled".into(), num(c.wald.and_then(|w| w.statistic)));
    fields.insert("p_value_unpooled".into(), num(c.wald.and_then(|w| w.p_value)));
    fields.insert("rel_ci95_delta".into(), interval(c.rel_ci));
    fields
}

fn run_welch(inputs: &Value) -> Fields {
    let arm = |name: &str| {
        MeanSummary::new(
            input_u64(inputs, &[name, "n"]),
            input_f64(inputs, &[name, "sum"]),
            input_f64(inputs, &[name, "sum_sq"]),
        )
        .expect("valid mean summary")
    };
    let (control, treatment) = (arm("control"), arm("treatment"));
    let alpha = input_f64(inputs, &["alpha"]);
    let c = compare_means(control, treatment, alpha).expect("valid alpha");
    let mut fields = Fields::new();
    comparison_common(&mut fields, &c);
    fields.insert("mean_control".into(), num(c.control));
    fields.insert("mean_treatment".into(), num(c.treatment));
    fields.insert("var_control".into(), num(control.variance()));
    fields.insert("var_treatment".into(), num(treatment.variance()));
    fields.insert("se".into(), num(c.std_error));
    fields.insert("t_stat".into(), num(c.statistic));
    fields.insert("df".into(), num(c.df));
    fields.insert("p_value".into(), num(c.p_value));
    fields.insert("rel_ci95_delta_t".into(), interval(c.rel_ci));
    fields
}

fn run_srm(inputs: &Value) -> Fields {
    let observed: Vec<u64> = inputs["observed"]
        .as_array()
        .expect("observed is a list")
        .iter()
        .map(|v| v.as_u64().expect("observed counts are unsigned integers"))
        .collect();
    let weights: Vec<f64> = inputs["weights"]
        .as_array()
        .expect("weights is a list")
        .iter()
        .map(|v| v.as_f64().expect("weights are numbers"))
        .collect();
    let r = srm_check(&observed, &weights).expect("valid srm input");
    let mut fields = Fields::new();
    fields.insert("df".into(), Actual::Integer(i64::from(r.df)));
    fields.insert("expected_counts".into(), Actual::Numbers(Some(r.expected)));
    fields.insert("chi2_stat".into(), num(r.chi_square));
    fields.insert("p_value".into(), num(r.p_value));
    fields.insert("srm_detected_at_0.001".into(), Actual::Bool(r.mismatch));
    fields
}

fn run_group_sequential(inputs: &Value) -> Fields {
    assert_eq!(inputs["sides"].as_u64(), Some(2), "only two-sided designs exist");
    assert_eq!(
        inputs["spending"].as_str(),
        Some("lan_demets_obrien_fleming"),
        "only O'Brien-Fleming spending exists"
    );
    let fractions: Vec<f64> = inputs["information_fractions"]
        .as_array()
        .expect("information_fractions is a list")
        .iter()
        .map(|v| v.as_f64().expect("fractions are numbers"))
        .collect();
    let plan =
        SequentialPlan::obrien_fleming(&fractions, input_f64(inputs, &["alpha"])).expect("valid schedule");
    let column =
        |f: fn(&cohort_stats::Look) -> f64| Actual::Numbers(Some(plan.looks().iter().map(f).collect()));
    let mut fields = Fields::new();
    fields.insert("boundaries_z".into(), column(|l| l.boundary));
    fields.insert("cumulative_alpha_spent".into(), column(|l| l.cumulative_alpha));
    fields.insert("nominal_two_sided_p".into(), column(|l| l.nominal_p));
    fields
}

fn within(actual: f64, expected: f64, abs_tol: f64, rel_tol: f64) -> bool {
    actual.is_finite() && (actual - expected).abs() <= abs_tol + rel_tol * expected.abs()
}

/// `None` when the field passes, otherwise why it failed.
fn check_field(spec: &Value, actual: &Actual) -> Option<String> {
    let value = &spec["value"];
    let abs_tol = spec["abs_tol"].as_f64().unwrap_or(0.0);
    let rel_tol = spec["rel_tol"].as_f64().unwrap_or(0.0);
    if value.is_null() {
        if spec.get("undefined").is_none() {
            return Some("expected value is null without an 'undefined' reason".into());
        }
        let accepted: Vec<f64> = spec["also_accept"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        return match actual {
            Actual::Number(None) | Actual::Numbers(None) => None,
            Actual::Number(Some(v)) if accepted.iter().any(|a| within(*v, *a, 1e-15, 0.0)) => None,
            other => Some(format!("expected undefined, got {other:?}")),
        };
    }
    match (value, actual) {
        (Value::Bool(want), Actual::Bool(got)) => (want != got).then(|| format!("got {got}, want {want}")),
        (Value::Number(want), Actual::Integer(got)) => {
            (want.as_i64() != Some(*got)).then(|| format!("got {got}, want {want}"))
        }
        (Value::Number(want), Actual::Number(got)) => {
            let want = want.as_f64().expect("finite expected number");
            match got {
                Some(v) if within(*v, want, abs_tol, rel_tol) => None,
                Some(v) => Some(format!(
                    "got {v:e}, want {want:e} (diff {:e} > {:e})",
                    (v - want).abs(),
                    abs_tol + rel_tol * want.abs()
                )),
                None => Some(format!("got undefined, want {want:e}")),
            }
        }
        (Value::Array(want), Actual::Numbers(got)) => {
            let want: Vec<f64> = want.iter().map(|v| v.as_f64().expect("numeric list")).collect();
            match got {
                None => Some(format!("got undefined, want {want:?}")),
                Some(got) if got.len() != want.len() => {
                    Some(format!("got {} elements, want {}", got.len(), want.len()))
                }
                Some(got) => {
                    let bad: Vec<String> = got
                        .iter()
                        .zip(&want)
                        .enumerate()
                        .filter(|(_, (g, w))| !within(**g, **w, abs_tol, rel_tol))
                        .map(|(i, (g, w))| format!("[{i}] got {g:e} want {w:e} (diff {:e})", (g - w).abs()))
                        .collect();
                    (!bad.is_empty()).then(|| bad.join("; "))
                }
            }
        }
        (want, got) => Some(format!("type mismatch: expected {want}, engine produced {got:?}")),
    }
}

/// The runner of a suite of `stats-vectors.json`.
fn runner(suite: &str) -> Option<fn(&Value) -> Fields> {
    Some(match suite {
        "ztest_proportions" => run_ztest,
        "welch_ttest" => run_welch,
        "srm_chisq" => run_srm,
        "group_sequential_obf" => run_group_sequential,
        _ => return None,
    })
}

#[test]
fn every_reference_case_passes() {
    check_file("stats-vectors.json", VECTORS, runner);
}

/// Runs every case of one vector file through the suites' runners.
fn check_file(name: &str, text: &str, runner: fn(&str) -> Option<fn(&Value) -> Fields>) {
    let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name} parses: {e}"));
    let suites = doc["suites"].as_object().expect("suites is an object");
    let mut failures = Vec::new();
    let (mut cases_in_file, mut cases_checked, mut fields_checked) = (0, 0, 0);
    for (suite, cases) in suites {
        let cases = cases.as_array().expect("a suite is a list of cases");
        cases_in_file += cases.len();
        let Some(run) = runner(suite) else {
            failures.push(format!("{suite}: unknown suite, {} cases not run", cases.len()));
            continue;
        };
        let mut passed_cases = 0;
        for case in cases {
            let id = case["id"].as_str().expect("case id");
            let convention = case.get("convention").and_then(Value::as_str);
            if let Some(convention) = convention.filter(|c| *c != "primary") {
                // Alternative conventions carry their values in _ALT fields, which are
                // skipped below; any primary-named field they carry is still checked.
                eprintln!("{id}: convention {convention}: checking non-_ALT fields only");
            }
            let actual = run(&case["inputs"]);
            let expected = case["expected"].as_object().expect("expected is an object");
            let before = failures.len();
            for (field, spec) in expected {
                if field.ends_with("_ALT") {
                    continue;
                }
                fields_checked += 1;
                let problem = match actual.get(field) {
                    None => Some("field not produced by the engine".to_string()),
                    Some(actual) => check_field(spec, actual),
                };
                if let Some(problem) = problem {
                    failures.push(format!("{suite}/{id}/{field}: {problem}"));
                }
            }
            cases_checked += 1;
            if failures.len() == before {
                passed_cases += 1;
            }
        }
        eprintln!("{suite}: {passed_cases}/{} cases passed", cases.len());
    }
    eprintln!("{cases_checked} cases, {fields_checked} fields checked");
    assert!(cases_in_file > 0, "no cases found in {name}");
    assert_eq!(cases_checked, cases_in_file, "not every case was checked");
    assert!(failures.is_empty(), "{} mismatching fields:\n{}", failures.len(), failures.join("\n"));
}
