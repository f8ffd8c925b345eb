//! A/A simulation: with no true effect, O'Brien-Fleming boundaries keep the family-wise
//! false-positive rate of ten looks at 5% (for the pooled z-test and for the repeated
//! intervals of the absolute difference), while a naive z-test at every look does not; and a
//! guardrail watched by a confidence sequence after every batch of units, for as long as the
//! experiment runs, pauses fewer than 5% of experiments that harm nothing.
//!
//! Each simulated experiment has two arms converting at 10% and is analysed after every
//! 1,000 users per arm, ten times. Per-look conversion counts are drawn from the normal
//! approximation of Binomial(1000, 0.1) (rounded and clipped), which is cheap in a debug
//! build; the analysis itself runs through the real `compare_proportions`.

use cohort_stats::{
    ConfidenceSequence, ProportionSummary, SequentialPlan, compare_proportions, repeated_interval,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EXPERIMENTS: usize = 10_000;
const LOOKS: usize = 10;
const USERS_PER_LOOK: u64 = 1_000;
const RATE: f64 = 0.10;
const ALPHA: f64 = 0.05;

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Conversions among `USERS_PER_LOOK` new users.
fn conversions(rng: &mut ChaCha8Rng) -> u64 {
    let n = USERS_PER_LOOK as f64;
    let draw = n * RATE + (n * RATE * (1.0 - RATE)).sqrt() * standard_normal(rng);
    draw.round().clamp(0.0, n) as u64
}

#[test]
fn obrien_fleming_controls_the_false_positive_rate_over_ten_looks() {
    let fractions: Vec<f64> = (1..=LOOKS).map(|k| k as f64 / LOOKS as f64).collect();
    let plan = SequentialPlan::obrien_fleming(&fractions, ALPHA).expect("valid schedule");
    let naive_boundary = 1.959_963_984_540_054;
    let mut rng = ChaCha8Rng::seed_from_u64(0x00c0_4027);
    let (mut obf_rejections, mut naive_rejections, mut rci_rejections) = (0_usize, 0_usize, 0_usize);
    for _ in 0..EXPERIMENTS {
        let (mut control, mut treatment) = (0_u64, 0_u64);
        let (mut obf, mut naive, mut rci) = (false, false, false);
        for look in 0..LOOKS {
            control += conversions(&mut rng);
            treatment += conversions(&mut rng);
            let units = USERS_PER_LOOK * (look as u64 + 1);
            let c = compare_proportions(
                ProportionSummary::new(units, control).expect("valid summary"),
                ProportionSummary::new(units, treatment).expect("valid summary"),
                ALPHA,
            )
            .expect("valid alpha");
            let z = c.statistic.expect("conversions at 10% never leave the pooled SE at 0");
            obf |= plan.crossed(look, z).expect("look within the plan");
            naive |= z.abs() > naive_boundary;
            let boundary = plan.looks()[look].boundary;
            let interval = repeated_interval(c.abs_diff.unwrap(), c.abs_std_error().unwrap(), boundary);
            rci |= interval.is_some_and(|i| !i.contains(0.0));
        }
        obf_rejections += usize::from(obf);
        naive_rejections += usize::from(naive);
        rci_rejections += usize::from(rci);
    }
    let n = EXPERIMENTS as f64;
    let obf_rate = obf_rejections as f64 / n;
    let naive_rate = naive_rejections as f64 / n;
    let sd = (ALPHA * (1.0 - ALPHA) / n).sqrt();
    eprintln!(
        "A/A over {EXPERIMENTS} experiments × {LOOKS} looks: O'Brien-Fleming {obf_rate:.4}, naive {naive_rate:.4}"
    );
    assert!(obf_rate <= ALPHA + 3.0 * sd, "O'Brien-Fleming false-positive rate {obf_rate}");
    assert!(obf_rate >= ALPHA - 4.0 * sd, "O'Brien-Fleming suspiciously conservative: {obf_rate}");
    assert!(naive_rate > 0.10, "naive peeking rate {naive_rate}");
    let rci_rate = rci_rejections as f64 / n;
    eprintln!("repeated intervals excluding 0 at some look: {rci_rate:.4}");
    assert!(rci_rate <= ALPHA + 3.0 * sd, "repeated-interval false-positive rate {rci_rate}");
}

/// Experiments simulated for the guardrail; each is checked after every batch.
const GUARDRAIL_EXPERIMENTS: usize = 2_000;
/// Checks per experiment (one per analysis cycle), far past the planned sample.
const CHECKS: usize = 150;
const USERS_PER_CHECK: u64 = 200;
/// The sample the sequence is tuned for: a third of the run, both arms.
const PLANNED_UNITS: f64 = 2.0 * 10_000.0;

#[test]
fn a_guardrail_watched_every_cycle_rarely_pauses_an_experiment_that_harms_nothing() {
    let cs = ConfidenceSequence::tuned(ALPHA, PLANNED_UNITS).expect("valid tuning");
    let mut rng = ChaCha8Rng::seed_from_u64(0x6a7d_0001);
    let per_check = |rng: &mut ChaCha8Rng| {
        let n = USERS_PER_CHECK as f64;
        let draw = n * RATE + (n * RATE * (1.0 - RATE)).sqrt() * standard_normal(rng);
        draw.round().clamp(0.0, n) as u64
    };
    let (mut paused, mut paused_fixed) = (0_usize, 0_usize);
    for _ in 0..GUARDRAIL_EXPERIMENTS {
        let (mut control, mut treatment) = (0_u64, 0_u64);
        let (mut pause, mut pause_fixed) = (false, false);
        for check in 1..=CHECKS as u64 {
            control += per_check(&mut rng);
            treatment += per_check(&mut rng);
            let units = USERS_PER_CHECK * check;
            let c = compare_proportions(
                ProportionSummary::new(units, control).unwrap(),
                ProportionSummary::new(units, treatment).unwrap(),
                ALPHA,
            )
            .unwrap();
            let (Some(rel), Some(se)) = (c.rel_diff, c.rel_std_error) else { continue };
            // Harm: a conversion metric whose relative change is below 0 (threshold 0), for sure.
            pause |= cs.interval(rel, se, 2 * units).is_some_and(|i| i.upper < 0.0);
            pause_fixed |= c.rel_ci.is_some_and(|i| i.upper < 0.0);
        }
        paused += usize::from(pause);
        paused_fixed += usize::from(pause_fixed);
    }
    let n = GUARDRAIL_EXPERIMENTS as f64;
    let (rate, fixed_rate) = (paused as f64 / n, paused_fixed as f64 / n);
    eprintln!(
        "A/A guardrail over {CHECKS} checks: confidence sequence {rate:.4}, fixed-horizon interval {fixed_rate:.4}"
    );
    assert!(rate <= ALPHA, "confidence-sequence false-pause rate {rate}");
    assert!(
        fixed_rate > 2.0 * ALPHA,
        "checking a fixed-horizon interval every cycle should pause often: {fixed_rate}"
    );
}

/// Simulated experiments for CUPED-adjusted looks.
const CUPED_EXPERIMENTS: usize = 2_000;
/// Units per arm added before each of the ten looks.
const CUPED_UNITS_PER_LOOK: usize = 500;

#[test]
fn cuped_adjusted_sequential_looks_keep_the_false_positive_rate() {
    use cohort_stats::{CupedSummary, compare_cuped};
    let fractions: Vec<f64> = (1..=LOOKS).map(|k| k as f64 / LOOKS as f64).collect();
    let plan = SequentialPlan::obrien_fleming(&fractions, ALPHA).expect("valid schedule");
    let mut rng = ChaCha8Rng::seed_from_u64(0x00c0_ffee);
    let (mut rejections, mut reduction_sum) = (0_usize, 0.0);
    for _ in 0..CUPED_EXPERIMENTS {
        // Per arm: n, Σy, Σy², Σx, Σx², Σxy, with y = 0.8·x + noise and no effect.
        let mut arms = [[0.0_f64; 6]; 2];
        let mut rejected = false;
        for look in 0..LOOKS {
            for arm in &mut arms {
                for _ in 0..CUPED_UNITS_PER_LOOK {
                    let x = 10.0 + 3.0 * standard_normal(&mut rng);
                    let y = 0.8 * x + 2.0 * standard_normal(&mut rng);
                    for (s, v) in arm.iter_mut().zip([1.0, y, y * y, x, x * x, x * y]) {
                        *s += v;
                    }
                }
            }
            let summary =
                |a: &[f64; 6]| CupedSummary::new(a[0] as u64, a[1], a[2], a[3], a[4], a[5]).unwrap();
            let c = compare_cuped(summary(&arms[0]), summary(&arms[1]), ALPHA).unwrap();
            let z = c.adjusted.abs_diff.unwrap() / c.adjusted.std_error.unwrap();
            rejected |= plan.crossed(look, z).expect("look within the plan");
            if look == LOOKS - 1 {
                reduction_sum += c.variance_reduction.unwrap();
            }
        }
        rejections += usize::from(rejected);
    }
    let n = CUPED_EXPERIMENTS as f64;
    let rate = rejections as f64 / n;
    let sd = (ALPHA * (1.0 - ALPHA) / n).sqrt();
    let reduction = reduction_sum / n;
    eprintln!(
        "A/A with CUPED over {CUPED_EXPERIMENTS} experiments × {LOOKS} looks: {rate:.4}, variance reduction {reduction:.3}"
    );
    assert!(rate <= ALPHA + 3.0 * sd, "CUPED sequential false-positive rate {rate}");
    // Var(y) = 0.64·9 + 4 = 9.76, of which 5.76 is explained by x: about 59 %.
    assert!((reduction - 0.59).abs() < 0.02, "variance reduction {reduction}");
}
