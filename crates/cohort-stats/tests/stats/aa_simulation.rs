//! A/A simulation: with no true effect, O'Brien-Fleming boundaries keep the family-wise
//! false-positive rate of ten looks at 5%, while a naive z-test at every look does not.
//!
//! Each simulated experiment has two arms converting at 10% and is analysed after every
//! 1,000 users per arm, ten times. Per-look conversion counts are drawn from the normal
//! approximation of Binomial(1000, 0.1) (rounded and clipped), which is cheap in a debug
//! build; the analysis itself runs through the real `compare_proportions`.

use cohort_stats::{ProportionSummary, SequentialPlan, compare_proportions};
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
    let (mut obf_rejections, mut naive_rejections) = (0_usize, 0_usize);
    for _ in 0..EXPERIMENTS {
        let (mut control, mut treatment) = (0_u64, 0_u64);
        let (mut obf, mut naive) = (false, false);
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
        }
        obf_rejections += usize::from(obf);
        naive_rejections += usize::from(naive);
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
}
