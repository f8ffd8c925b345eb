//! Unit tests for the group-sequential boundaries: references, convergence, validation, decisions.

use super::*;

/// (fractions, boundaries) from the reference vectors (50-digit, cross-checked with rpact).
fn references() -> Vec<(Vec<f64>, Vec<f64>)> {
    vec![
        (vec![0.5, 1.0], vec![2.9625880427275666, 1.9685956405936422]),
        (
            vec![0.25, 0.5, 0.75, 1.0],
            vec![4.332633646051611, 2.9631315976796833, 2.359044285301199, 2.014090143931253],
        ),
        (
            vec![0.1, 0.4, 0.7, 1.0],
            vec![6.991351707077417, 3.3568693564783247, 2.444542281178645, 2.0005390678996804],
        ),
        (
            vec![0.1, 0.15, 0.25, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
            vec![
                6.991351707077417,
                5.66968261672349,
                4.332716137212585,
                3.617207336591119,
                2.9730266273980965,
                2.7130751426228037,
                2.503571039258983,
                2.3356111365439136,
                2.197386901590199,
                2.081104436457384,
            ],
        ),
        (
            vec![0.2, 0.4, 0.6, 0.8, 0.9, 1.0],
            vec![
                4.876884948790762,
                3.357011921574486,
                2.68028006454515,
                2.2898167677124723,
                2.1881930534094027,
                2.077182684665385,
            ],
        ),
    ]
}

#[test]
fn boundaries_match_references_well_inside_the_1e5_tolerance() {
    let mut worst: f64 = 0.0;
    for (fractions, expected) in references() {
        let got = obf_boundaries(&fractions, 0.05).unwrap();
        for (g, e) in got.iter().zip(&expected) {
            worst = worst.max((g - e).abs());
        }
    }
    assert!(worst < 1e-7, "worst boundary error {worst:e}");
}

#[test]
fn grid_is_converged() {
    // Doubling the resolution moves no boundary by more than 1e-7.
    let schedules: Vec<Vec<f64>> = vec![
        (1..=10).map(|k| f64::from(k) / 10.0).collect(),
        vec![0.01, 0.02, 0.5, 0.98, 0.99, 1.0],
        vec![0.05, 0.3, 0.31, 0.7],
    ];
    for fractions in schedules {
        let base = SequentialPlan::compute(&fractions, 0.05, POINTS_PER_SCALE);
        let fine = SequentialPlan::compute(&fractions, 0.05, 2.0 * POINTS_PER_SCALE);
        for (b, f) in base.looks().iter().zip(fine.looks()) {
            assert!(
                (b.boundary - f.boundary).abs() < 1e-7,
                "{fractions:?}: {} vs {}",
                b.boundary,
                f.boundary
            );
        }
    }
}

#[test]
fn single_look_is_the_fixed_horizon_test() {
    let b = obf_boundaries(&[1.0], 0.05).unwrap();
    assert!((b[0] - 1.959_963_984_540_054).abs() < 1e-12);
    let b = obf_boundaries(&[1.0], 0.01).unwrap();
    assert!((b[0] - 2.575_829_303_548_901).abs() < 1e-12);
}

#[test]
fn boundaries_spend_exactly_the_planned_alpha() {
    let fractions: Vec<f64> = (1..=5).map(|k| f64::from(k) / 5.0).collect();
    let plan = SequentialPlan::obrien_fleming(&fractions, 0.05).unwrap();
    assert_eq!(plan.looks().last().unwrap().cumulative_alpha, 0.05);
    for look in plan.looks() {
        let spent = obf_alpha_spent(look.information_fraction, 0.05);
        assert!((look.cumulative_alpha - spent).abs() <= 1e-15);
        assert!(look.nominal_p <= look.cumulative_alpha + 1e-15);
    }
    // O'Brien-Fleming boundaries fall as information accrues.
    let b = plan.boundaries();
    assert!(b.windows(2).all(|w| w[0] > w[1]), "{b:?}");
}

#[test]
fn earlier_boundaries_do_not_depend_on_later_looks() {
    let full = obf_boundaries(&[0.2, 0.5, 0.8, 1.0], 0.05).unwrap();
    let prefix = obf_boundaries(&[0.2, 0.5], 0.05).unwrap();
    assert_eq!(&full[..2], &prefix[..]);
}

#[test]
fn schedules_may_end_before_full_information() {
    let b = obf_boundaries(&[0.3, 0.6], 0.05).unwrap();
    assert!(b[1] > 2.0 && b[1] < 3.0, "{b:?}");
}

#[test]
fn tiny_first_look_has_an_enormous_or_infinite_boundary() {
    let b = obf_boundaries(&[0.001, 0.5, 1.0], 0.05).unwrap();
    assert!(b[0].is_infinite() || b[0] > 30.0, "{b:?}");
    let reference = obf_boundaries(&[0.5, 1.0], 0.05).unwrap();
    // A look that can spend nothing barely changes the rest of the design.
    assert!((b[1] - reference[0]).abs() < 1e-6, "{b:?} vs {reference:?}");
    assert!((b[2] - reference[1]).abs() < 1e-6, "{b:?} vs {reference:?}");
}

#[test]
fn invalid_schedules_are_rejected_with_the_problem_named() {
    assert_eq!(obf_boundaries(&[], 0.05), Err(StatsError::EmptySchedule));
    assert_eq!(
        obf_boundaries(&[0.0, 1.0], 0.05),
        Err(StatsError::FractionOutOfRange { look: 0, value: 0.0 })
    );
    assert_eq!(
        obf_boundaries(&[0.5, 1.2], 0.05),
        Err(StatsError::FractionOutOfRange { look: 1, value: 1.2 })
    );
    assert!(matches!(
        obf_boundaries(&[0.5, f64::NAN], 0.05),
        Err(StatsError::FractionOutOfRange { look: 1, .. })
    ));
    assert_eq!(
        obf_boundaries(&[0.5, 0.5], 0.05),
        Err(StatsError::FractionsNotIncreasing { look: 1, previous: 0.5, value: 0.5 })
    );
    assert_eq!(
        obf_boundaries(&[0.6, 0.4, 1.0], 0.05),
        Err(StatsError::FractionsNotIncreasing { look: 1, previous: 0.6, value: 0.4 })
    );
    assert_eq!(obf_boundaries(&[1.0], 0.0), Err(StatsError::InvalidAlpha(0.0)));
    assert_eq!(obf_boundaries(&[1.0], 1.0), Err(StatsError::InvalidAlpha(1.0)));
    let message = obf_boundaries(&[0.6, 0.4], 0.05).unwrap_err().to_string();
    assert!(message.contains("look 1"), "{message}");
}

#[test]
fn plan_decisions() {
    let plan = SequentialPlan::obrien_fleming(&[0.5, 1.0], 0.05).unwrap();
    assert_eq!(plan.crossed(0, 2.5), Some(false));
    assert_eq!(plan.crossed(0, -3.0), Some(true));
    assert_eq!(plan.crossed(1, 1.97), Some(true));
    assert_eq!(plan.crossed(1, 1.96), Some(false));
    assert_eq!(plan.crossed(2, 10.0), None);
    assert_eq!(plan.crossed(0, f64::NAN), None);
    assert_eq!(plan.alpha(), 0.05);
}

#[test]
fn one_shot_crossing_check_agrees_with_the_plan() {
    assert_eq!(obf_boundary_crossed(2.0, 1.0, &[0.5], 0.05), Ok(true));
    assert_eq!(obf_boundary_crossed(2.9, 0.5, &[], 0.05), Ok(false));
    assert_eq!(obf_boundary_crossed(-3.0, 0.5, &[], 0.05), Ok(true));
    assert!(obf_boundary_crossed(f64::NAN, 0.5, &[], 0.05).is_err());
    assert!(obf_boundary_crossed(3.0, 0.4, &[0.5], 0.05).is_err());
}

#[test]
fn alpha_spent_limits() {
    assert_eq!(obf_alpha_spent(0.0, 0.05), 0.0);
    assert!((obf_alpha_spent(1.0, 0.05) - 0.05).abs() < 1e-16);
    assert!((obf_alpha_spent(0.5, 0.05) - 0.003_050_645_515_977_822_4).abs() < 1e-15);
}

#[test]
fn extending_a_plan_matches_planning_the_whole_schedule() {
    let fractions = [0.1, 0.15, 0.25, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0];
    let whole = SequentialPlan::obrien_fleming(&fractions, 0.05).unwrap();
    let mut grown = SequentialPlan::obrien_fleming(&fractions[..1], 0.05).unwrap();
    for &t in &fractions[1..] {
        let look = *grown.extend(t).unwrap();
        assert_eq!(look.information_fraction, t);
    }
    assert_eq!(grown, whole);
}

#[test]
fn extending_rejects_bad_fractions() {
    let mut plan = SequentialPlan::obrien_fleming(&[0.5], 0.05).unwrap();
    assert_eq!(
        plan.extend(0.5).unwrap_err(),
        StatsError::FractionsNotIncreasing { look: 1, previous: 0.5, value: 0.5 }
    );
    assert_eq!(plan.extend(1.5).unwrap_err(), StatsError::FractionOutOfRange { look: 1, value: 1.5 });
    assert_eq!(plan.looks().len(), 1);
}
