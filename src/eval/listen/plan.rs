//! The deterministic trial plan of a rater: which prompt, seed and side
//! mapping each trial has, and where the catch trials go.
//!
//! Why: a preference test is only credible if the number of trials and their
//! order are fixed before anyone listens, and if the side a model plays on
//! tells the rater nothing. The plan is a pure function of the spec and the
//! rater's name, so it is never stored: [`super::log::SessionLog`]
//! re-computes it on every `open` and checks each logged answer against it.
//! That is why changing anything here must bump [`super::log::LOG_FORMAT`].
//!
//! What: [`plan_trials`], with its own seeded RNG and balanced decks.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::error::Result;
use super::model::{SessionSpec, Side, Trial, Which};
use super::stats;

fn plan_rng(spec: &SessionSpec, rater: &str) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"tunelab-listen plan v1\0");
    h.update(spec.seed.to_le_bytes());
    h.update((spec.id.len() as u64).to_le_bytes());
    h.update(spec.id.as_bytes());
    h.update((rater.len() as u64).to_le_bytes());
    h.update(rater.as_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// `n` values, half `x` and half `y` (the odd one drawn at random), shuffled.
fn balanced<T: Copy>(rng: &mut ChaCha8Rng, n: usize, x: T, y: T) -> Vec<T> {
    let mut v = Vec::with_capacity(n);
    v.extend(std::iter::repeat_n(x, n / 2));
    v.extend(std::iter::repeat_n(y, n / 2));
    if n % 2 == 1 {
        v.push(if stats::below(rng, 2) == 0 { x } else { y });
    }
    stats::shuffle(rng, &mut v);
    v
}

/// Plan a rater's trials, deterministically from `(spec.seed, spec.id, rater)`.
///
/// - Scored trials: prompts in rounds, each round a fresh shuffle of all
///   prompts (so every prompt is used equally often, ±1); per prompt the
///   seeds are drawn from a shuffled deck (equal use, ±1).
/// - Side mapping: a balanced deck of `trials` A-first/B-first values,
///   shuffled, so the mapping is re-randomised every trial and A-first and
///   B-first differ by at most 1 among scored trials. ABX's X side is drawn
///   the same way.
/// - After every `catch_every` scored trials a catch trial is inserted: a
///   random prompt/seed, one model's clip on *both* sides (the model from its
///   own balanced deck).
///
/// Randomness comes from ChaCha8 seeded with SHA-256 of the inputs and this
/// module's own shuffle, so plans do not change with `rand` versions.
pub fn plan_trials(spec: &SessionSpec, rater: &str) -> Result<Vec<Trial>> {
    spec.validate()?;
    let mut rng = plan_rng(spec, rater);
    let n = spec.trials;
    let n_prompts = spec.prompts.len();
    let n_catch = n.checked_div(spec.catch_every).unwrap_or(0);

    let mut prompt_order = Vec::with_capacity(n + n_prompts);
    while prompt_order.len() < n {
        let mut round: Vec<usize> = (0..n_prompts).collect();
        stats::shuffle(&mut rng, &mut round);
        prompt_order.extend(round);
    }
    prompt_order.truncate(n);
    let sides = balanced(&mut rng, n, Which::A, Which::B);
    let xs = balanced(&mut rng, n, Side::A, Side::B);
    let catch_models = balanced(&mut rng, n_catch, Which::A, Which::B);
    let catch_xs = balanced(&mut rng, n_catch, Side::A, Side::B);
    let mut seed_decks: Vec<Vec<u64>> = vec![Vec::new(); n_prompts];

    let mut trials = Vec::with_capacity(n + n_catch);
    let mut catches_done = 0;
    for (i, &p) in prompt_order.iter().enumerate() {
        let deck = &mut seed_decks[p];
        if deck.is_empty() {
            *deck = spec.seeds.clone();
            stats::shuffle(&mut rng, deck);
        }
        let seed = deck.pop().unwrap_or(spec.seeds[0]);
        let first = sides[i];
        trials.push(Trial {
            index: trials.len(),
            prompt_idx: p,
            seed,
            first_is: first,
            catch: false,
            clip_a_sha: spec.clip(p, seed, first)?.sha256.clone(),
            clip_b_sha: spec.clip(p, seed, first.other())?.sha256.clone(),
            abx_x: spec.abx.then_some(xs[i]),
        });
        if spec.catch_every > 0 && (i + 1) % spec.catch_every == 0 && catches_done < n_catch {
            let cp = stats::below(&mut rng, n_prompts as u64) as usize;
            let cs = spec.seeds[stats::below(&mut rng, spec.seeds.len() as u64) as usize];
            let model = catch_models[catches_done];
            let sha = spec.clip(cp, cs, model)?.sha256.clone();
            trials.push(Trial {
                index: trials.len(),
                prompt_idx: cp,
                seed: cs,
                first_is: model,
                catch: true,
                clip_a_sha: sha.clone(),
                clip_b_sha: sha,
                abx_x: spec.abx.then_some(catch_xs[catches_done]),
            });
            catches_done += 1;
        }
    }
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::fixtures::{spec, PROMPTS};
    use super::*;

    fn count_a_first(trials: &[Trial]) -> (usize, usize) {
        let a = trials.iter().filter(|t| t.first_is == Which::A).count();
        (a, trials.len() - a)
    }

    #[test]
    fn plan_is_deterministic_per_rater() {
        let s = spec("s1", 40, 5, false, true);
        let p1 = plan_trials(&s, "alice").unwrap();
        assert_eq!(p1, plan_trials(&s, "alice").unwrap());
        assert_ne!(p1, plan_trials(&s, "bob").unwrap());
        let mut s2 = s.clone();
        s2.seed += 1;
        assert_ne!(p1, plan_trials(&s2, "alice").unwrap());
        assert_eq!(p1.len(), 40 + 8);
        for (i, t) in p1.iter().enumerate() {
            assert_eq!(t.index, i);
        }
    }

    #[test]
    fn plan_side_balance() {
        // 1000-trial plan with catch trials: A-first within 45–55 % overall,
        // and exactly balanced (±1) among the scored trials.
        let p = plan_trials(&spec("big", 1000, 10, false, true), "carol").unwrap();
        assert_eq!(p.len(), 1100);
        let (a, _) = count_a_first(&p);
        let frac = a as f64 / p.len() as f64;
        assert!((0.45..=0.55).contains(&frac), "{frac}");
        let scored: Vec<Trial> = p.iter().filter(|t| !t.catch).cloned().collect();
        let (a, b) = count_a_first(&scored);
        assert!(a.abs_diff(b) <= 1, "{a} vs {b}");
        // the mapping is re-randomised, not alternating or blocked
        let switches = scored
            .windows(2)
            .filter(|w| w[0].first_is != w[1].first_is)
            .count();
        assert!((400..=600).contains(&switches), "{switches} switches");
        // per session: every rater's (odd-length) plan is balanced within ±1
        for r in 0..50 {
            let p = plan_trials(&spec("s", 21, 4, false, true), &format!("r{r}")).unwrap();
            let scored: Vec<Trial> = p.into_iter().filter(|t| !t.catch).collect();
            let (a, b) = count_a_first(&scored);
            assert!(a.abs_diff(b) <= 1, "rater {r}: {a} vs {b}");
        }
    }

    #[test]
    fn plan_prompts_and_seeds_are_balanced_and_shuffled() {
        let s = spec("s", 16, 0, false, false);
        let p = plan_trials(&s, "dave").unwrap();
        for round in p.chunks(PROMPTS.len()) {
            let set: BTreeSet<usize> = round.iter().map(|t| t.prompt_idx).collect();
            assert_eq!(
                set.len(),
                PROMPTS.len(),
                "each round covers every prompt once"
            );
        }
        for prompt in 0..PROMPTS.len() {
            let seeds: Vec<u64> = p
                .iter()
                .filter(|t| t.prompt_idx == prompt)
                .map(|t| t.seed)
                .collect();
            assert_eq!(seeds.iter().filter(|&&x| x == 11).count(), 2, "{seeds:?}");
        }
        // different raters hear the prompts in different orders
        let orders: BTreeSet<Vec<usize>> = (0..20)
            .map(|r| {
                plan_trials(&s, &format!("r{r}"))
                    .unwrap()
                    .iter()
                    .map(|t| t.prompt_idx)
                    .collect()
            })
            .collect();
        assert!(orders.len() > 10);
        // clips on the two sides are the two models' clips for the same prompt+seed
        for t in &p {
            let a = s.clip_by_sha(&t.clip_a_sha).unwrap();
            let b = s.clip_by_sha(&t.clip_b_sha).unwrap();
            assert_eq!((a.model, b.model), (t.first_is, t.first_is.other()));
            assert_eq!((a.prompt_idx, a.seed), (t.prompt_idx, t.seed));
            assert_eq!((b.prompt_idx, b.seed), (t.prompt_idx, t.seed));
        }
    }

    #[test]
    fn catch_trials_are_identical_and_placed() {
        let p = plan_trials(&spec("s", 20, 5, true, true), "erin").unwrap();
        assert_eq!(p.len(), 24);
        let catch_positions: Vec<usize> = p.iter().filter(|t| t.catch).map(|t| t.index).collect();
        assert_eq!(catch_positions, vec![5, 11, 17, 23]);
        for t in p.iter().filter(|t| t.catch) {
            assert_eq!(t.clip_a_sha, t.clip_b_sha);
            assert!(
                t.abx_x.is_some(),
                "catch trials look like any other ABX trial"
            );
        }
        for t in p.iter().filter(|t| !t.catch) {
            assert_ne!(t.clip_a_sha, t.clip_b_sha);
        }
    }
}
