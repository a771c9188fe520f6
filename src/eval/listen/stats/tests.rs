//! Tests of the listening-test statistics against exact reference values
//! (computed independently with Python's integer arithmetic, quoted beside
//! each check) and of the cluster bootstrap.

use super::*;

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn ln_gamma_matches_factorials() {
    let mut f = 1.0_f64;
    for n in 1..=20_u32 {
        f *= n as f64;
        let rel = (ln_gamma(n as f64 + 1.0) - f.ln()).abs() / f.ln().max(1.0);
        assert!(rel < 1e-13, "n = {n}");
    }
    // Γ(½) = √π
    assert!(close(
        ln_gamma(0.5),
        std::f64::consts::PI.sqrt().ln(),
        1e-13
    ));
    // Stirling check at large x: ln Γ(10001) = ln(10000!) = 82108.927836814...
    assert!(close(ln_gamma(10_001.0), 82_108.927_836_814_1, 1e-7));
}

#[test]
fn two_sided_known_values() {
    // 15/20: exact 2·Σ_{x>=15} C(20,x)/2^20 = 0.04138946533203125
    assert!(close(
        binom_two_sided_p(15, 20),
        0.041_389_465_332_031_25,
        1e-12
    ));
    assert!(close(binom_two_sided_p(5, 20), 0.041_389_47, 1e-7));
    // 60/100 → 0.05688793364098079, 61/100 → 0.03520020021770481 (exact, Python)
    let p60 = binom_two_sided_p(60, 100);
    assert!(close(p60, 0.056_887_93, 1e-7) && p60 > 0.05);
    let p61 = binom_two_sided_p(61, 100);
    assert!(close(p61, 0.035_200_2, 1e-7) && p61 < 0.05);
    assert_eq!(binom_two_sided_p(10, 20), 1.0);
    assert_eq!(binom_two_sided_p(0, 0), 1.0);
    assert!(binom_two_sided_p(3, 2).is_nan());
}

#[test]
fn two_sided_large_n_is_accurate() {
    // symmetric sum of pmf must be 1
    let n = 10_000;
    let total = sum_exp((0..=n).map(|x| ln_choose(n, x) - n as f64 * std::f64::consts::LN_2));
    assert!(close(total, 1.0, 1e-9), "total = {total}");
    // 5100/10000: exact value from Python's integer arithmetic
    // (Fraction(2*sum(comb(10000, x) for x >= 5100), 2**10000)) = 0.04658552770494739
    let p = binom_two_sided_p(5100, 10_000);
    assert!((p / 0.046_585_527_704_947_39 - 1.0).abs() < 1e-9, "p = {p}");
    // continuity with the regularised incomplete beta
    let via_beta = 2.0 * betainc(5100.0, 4901.0, 0.5);
    assert!(close(p, via_beta, 1e-9), "{p} vs {via_beta}");
    assert!(binom_two_sided_p(5000, 10_000) == 1.0);
}

#[test]
fn one_sided_abx_known_values() {
    // 9/10 → 11/1024 = 0.010742; 12/16 → 2517/65536 = 0.038406
    assert!(close(binom_one_sided_p(9, 10), 11.0 / 1024.0, 1e-12));
    assert!(close(binom_one_sided_p(12, 16), 2517.0 / 65536.0, 1e-12));
    assert_eq!(binom_one_sided_p(0, 10), 1.0);
}

#[test]
fn betainc_known_values() {
    assert!(close(betainc(1.0, 1.0, 0.3), 0.3, 1e-14));
    assert!(close(betainc(2.0, 3.0, 0.4), 0.5248, 1e-12));
    // I_x(a,b) + I_{1-x}(b,a) = 1
    let s = betainc(7.5, 3.2, 0.61) + betainc(3.2, 7.5, 0.39);
    assert!(close(s, 1.0, 1e-13));
}

#[test]
fn clopper_pearson_known_values() {
    // Reference computed with Python's exact integers + 50-digit Decimal
    // bisection on the binomial tails (P(X>=7|p)=.025, P(X>=8|p)=.975):
    // lo = 0.347547149940002705, hi = 0.933260488822265533
    let (lo, hi) = clopper_pearson(7, 10, 0.95);
    assert!(
        close(lo, 0.3475, 1e-3) && close(hi, 0.9333, 1e-3),
        "{lo} {hi}"
    );
    assert!(close(lo, 0.347_547_149_940_002_7, 1e-10), "{lo}");
    assert!(close(hi, 0.933_260_488_822_265_5, 1e-10), "{hi}");
    let (lo, hi) = clopper_pearson(0, 10, 0.95);
    assert_eq!(lo, 0.0);
    // closed form: 1 − 0.025^(1/10)
    assert!(close(hi, 1.0 - 0.025_f64.powf(0.1), 1e-9) && close(hi, 0.3085, 1e-3));
    let (lo, hi) = clopper_pearson(10, 10, 0.95);
    assert!(close(lo, 0.025_f64.powf(0.1), 1e-9) && close(lo, 0.6915, 1e-3));
    assert_eq!(hi, 1.0);
    assert_eq!(clopper_pearson(0, 0, 0.95), (0.0, 1.0));
}

#[test]
fn wilson_known_value() {
    let (lo, hi) = wilson(7, 10, 1.96);
    assert!(
        close(lo, 0.3968, 1e-3) && close(hi, 0.8922, 1e-3),
        "{lo} {hi}"
    );
}

#[test]
fn min_wins_known_values() {
    let got: Vec<_> = [20, 30, 40, 50, 100]
        .iter()
        .map(|&n| min_wins_for_significance(n, 0.05))
        .collect();
    assert_eq!(got, vec![Some(15), Some(21), Some(27), Some(33), Some(61)]);
    assert_eq!(min_wins_for_significance(5, 0.05), None);
    assert_eq!(min_wins_for_significance(6, 0.05), Some(6));
}

#[test]
fn power_votes_known_values() {
    // The brief's references 194 / 85 / 47 / 29 (60/65/70/75 %, α = .05,
    // power .8) are normal-approximation values. This function searches
    // with the *exact* test, which is conservative, and returns
    // 199 / 90 / 49 / 30: +2.6 %, +5.9 %, +4.3 %, +3.4 %. The 65 % case is
    // just outside ±5 %; the exact numbers were checked independently
    // with Python integer arithmetic (math.comb), smallest n with exact
    // power >= 0.8. (Power stays >= 0.8 for *every* larger n only from
    // 210 / 97 / 54 / 35 on, because exact power is a saw-tooth in n.)
    let refs = [(0.60, 194.0), (0.65, 85.0), (0.70, 47.0), (0.75, 29.0)];
    let got: Vec<u64> = refs
        .iter()
        .map(|&(p, _)| power_votes(p, 0.05, 0.8).unwrap_or(0))
        .collect();
    assert_eq!(got, vec![199, 90, 49, 30]);
    for ((_, reference), n) in refs.iter().zip(&got) {
        let rel = (*n as f64 - reference) / reference;
        assert!((0.0..=0.06).contains(&rel), "got {got:?}");
    }
    // symmetric in the direction of the preference
    assert_eq!(power_votes(0.4, 0.05, 0.8), power_votes(0.6, 0.05, 0.8));
    assert_eq!(power_votes(0.5, 0.05, 0.8), None);
    assert_eq!(power_votes(0.6, 0.0, 0.8), None);
}

#[test]
fn exact_power_sanity() {
    let cap = 200;
    let ln_fact: Vec<f64> = (0..=cap).map(|i| ln_gamma(i as f64 + 1.0)).collect();
    // under H0 the power is the size, which is <= alpha for an exact test
    for n in 6..150 {
        let size = exact_power(n, 0.5, 0.05, &ln_fact);
        assert!(size <= 0.05 + 1e-12, "n = {n}, size = {size}");
    }
    // n = 20, k_crit = 15: size = 2·P(X ≥ 15) = 0.04139
    assert!(close(
        exact_power(20, 0.5, 0.05, &ln_fact),
        0.041_389_47,
        1e-7
    ));
}

fn votes(spec: &[(&str, &str, f64)]) -> Vec<(String, String, f64)> {
    spec.iter()
        .map(|(r, p, v)| (r.to_string(), p.to_string(), *v))
        .collect()
}

#[test]
fn bootstrap_is_deterministic_and_sensible() {
    let mut v = Vec::new();
    for r in 0..8 {
        for p in 0..5 {
            for rep in 0..2 {
                let pref = if (r * 7 + p * 3 + rep) % 10 < 7 {
                    1.0
                } else {
                    0.0
                };
                v.push((format!("r{r}"), format!("p{p}"), pref));
            }
        }
    }
    let a = bootstrap_preference(&v, 2000, 42);
    let b = bootstrap_preference(&v, 2000, 42);
    assert_eq!(a, b);
    let (mean, lo, hi) = a.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let observed = v.iter().map(|x| x.2).sum::<f64>() / v.len() as f64;
    assert!(close(mean, observed, 1e-12));
    assert!(
        lo < mean && mean < hi && lo > 0.3 && hi < 1.0,
        "{lo} {mean} {hi}"
    );
    // input order does not matter
    let mut rev = v.clone();
    rev.reverse();
    assert_eq!(bootstrap_preference(&rev, 2000, 42), a);
}

#[test]
fn bootstrap_cluster_is_wider_than_naive_for_correlated_raters() {
    // two raters who always vote the same way: between-rater variance dominates
    let v = votes(&[
        ("r1", "p1", 1.0),
        ("r1", "p2", 1.0),
        ("r1", "p3", 1.0),
        ("r2", "p1", 0.0),
        ("r2", "p2", 0.0),
        ("r2", "p3", 0.0),
    ]);
    let (_, lo, hi) = bootstrap_preference(&v, 4000, 1).unwrap_or_default();
    // resampling 2 raters: replicates are 0, 0.5 or 1
    assert_eq!((lo, hi), (0.0, 1.0));
    assert_eq!(bootstrap_preference(&[], 10, 1), None);
    assert_eq!(bootstrap_preference(&v, 0, 1), None);
}

#[test]
fn one_cluster_gives_a_zero_width_interval_and_is_counted_as_one() {
    // why the count matters: one rater on one prompt, votes split 13:7,
    // and the bootstrap still claims certainty
    let mut v = votes(&[("r1", "p1", 1.0); 13]);
    v.extend(votes(&[("r1", "p1", 0.0); 7]));
    let (mean, lo, hi) = bootstrap_preference(&v, 2000, 0).unwrap_or_default();
    assert_eq!((mean, lo, hi), (0.65, 0.65, 0.65));
    assert_eq!(bootstrap_clusters(&v), 1);
    assert!(bootstrap_clusters(&v) < MIN_BOOTSTRAP_CLUSTERS);
    // a second prompt or a second rater is a second cluster
    v.push(("r1".into(), "p2".into(), 1.0));
    assert_eq!(bootstrap_clusters(&v), 2);
    v.push(("r2".into(), "p1".into(), 0.0));
    v.push(("r2".into(), "p1".into(), 1.0));
    assert_eq!(bootstrap_clusters(&v), 3);
    assert_eq!(bootstrap_clusters(&[]), 0);
}

#[test]
fn summarise_tie_policies() {
    let mut answers = vec![Pref::B; 15];
    answers.extend(vec![Pref::A; 5]);
    answers.extend(vec![Pref::Tie; 3]);
    let ex = summarise(&answers, TiePolicy::Exclude);
    assert_eq!((ex.n, ex.ties, ex.tested_wins), (20, 3, 15));
    assert!(close(ex.p_two_sided, 0.041_389_47, 1e-7));
    assert_eq!(ex.share_b, Some(0.75));
    let sp = summarise(&answers, TiePolicy::Split);
    assert_eq!(sp.n, 23);
    assert!(close(sp.wins_b, 16.5, 1e-12));
    // 16.5 rounds toward n/2 = 11.5, i.e. to 16
    assert_eq!(sp.tested_wins, 16);
    assert!(close(sp.p_two_sided, binom_two_sided_p(16, 23), 1e-15));
    let empty = summarise(&[Pref::Tie], TiePolicy::Exclude);
    assert_eq!((empty.n, empty.share_b, empty.p_two_sided), (0, None, 1.0));
    assert_eq!(TiePolicy::default(), TiePolicy::Exclude);
}

#[test]
fn shuffle_and_below_are_uniformish() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut counts = [0_u32; 3];
    for _ in 0..30_000 {
        counts[below(&mut rng, 3) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (9_500..10_500).contains(&c)),
        "{counts:?}"
    );
    let mut v: Vec<u32> = (0..10).collect();
    shuffle(&mut rng, &mut v);
    let mut sorted = v.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
}
