//! Choosing the next token from logits, reproducibly: anyone holding the same logits, the same
//! parameters, the seed and the position picks the same token.
//!
//! - Greedy (`temperature == 0`): the largest logit, the lowest id among equals.
//! - Sampling: candidates in order of logit (descending, then id), cut to `top_k`; weights
//!   `exp((l - l_max) / temperature)` in float64 from `libm` (software, the same bits on every
//!   machine); cut to the shortest prefix whose weight reaches `top_p` of the total; then the
//!   first candidate whose running weight exceeds `u · total`, where `u ∈ [0, 1)` is the top 53
//!   bits of `SHA-256("verity/sample/v1" ‖ seed ‖ position)` (both u64 little-endian). Every
//!   step is IEEE-754 float64 arithmetic in a fixed order, so the choice is exact, not
//!   approximately reproducible.

use serde::{Deserialize, Serialize};

/// Domain tag of the sampling randomness.
const SAMPLE_DOMAIN: &[u8] = b"verity/sample/v1";

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SamplingParams {
    /// 0 is greedy.
    pub temperature: f64,
    /// Keep only the `top_k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Keep the most likely tokens until their probability reaches `top_p` (`None`: 1).
    pub top_p: Option<f64>,
    /// The randomness of sampling; ignored when greedy.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        }
    }
}

/// Why parameters or logits cannot give a token.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("temperature must be a finite number ≥ 0, got {0}")]
    Temperature(f64),
    #[error("top_k must be at least 1")]
    TopK,
    #[error("top_p must be in (0, 1], got {0}")]
    TopP(f64),
    #[error("the model produced no logits")]
    NoLogits,
    #[error("the model produced a NaN logit (token {0})")]
    NanLogit(usize),
    #[error("the model produced an infinite logit (token {0})")]
    InfiniteLogit(usize),
    #[error("every logit is -inf: no token is possible")]
    NoPossibleToken,
}

impl SamplingParams {
    pub fn check(&self) -> Result<(), SamplingError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if self.top_k == Some(0) {
            return Err(SamplingError::TopK);
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(SamplingError::TopP(p));
            }
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// A chosen token and its log-probability under the model (softmax of the raw logits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub token: u32,
    pub logprob: f64,
}

/// Chooses the token at sequence `position` from `logits`.
pub fn choose(
    logits: &[f32],
    params: &SamplingParams,
    position: u64,
) -> Result<Choice, SamplingError> {
    params.check()?;
    if logits.is_empty() {
        return Err(SamplingError::NoLogits);
    }
    if let Some(i) = logits.iter().position(|l| l.is_nan()) {
        return Err(SamplingError::NanLogit(i));
    }
    // -inf masks a token out; +inf has no probability to give it.
    if let Some(i) = logits.iter().position(|&l| l == f32::INFINITY) {
        return Err(SamplingError::InfiniteLogit(i));
    }
    if logits.iter().all(|&l| l == f32::NEG_INFINITY) {
        return Err(SamplingError::NoPossibleToken);
    }
    let token = if params.is_greedy() {
        greedy(logits)
    } else {
        sample(logits, params, uniform(params.seed, position))
    };
    Ok(Choice {
        token: token as u32,
        logprob: log_softmax_at(logits, token),
    })
}

fn greedy(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// `log(softmax(logits)[token])` in float64, sums in id order.
fn log_softmax_at(logits: &[f32], token: usize) -> f64 {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &l| m.max(l as f64));
    let sum: f64 = logits.iter().map(|&l| libm::exp(l as f64 - max)).sum();
    (logits[token] as f64 - max) - libm::log(sum)
}

/// `u ∈ [0, 1)` for `(seed, position)`.
pub fn uniform(seed: u64, position: u64) -> f64 {
    let mut bytes = Vec::with_capacity(SAMPLE_DOMAIN.len() + 16);
    bytes.extend_from_slice(SAMPLE_DOMAIN);
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes.extend_from_slice(&position.to_le_bytes());
    let digest = verity_types::sha256(&bytes);
    let word = u64::from_le_bytes(digest.0[..8].try_into().expect("8 bytes"));
    (word >> 11) as f64 / (1u64 << 53) as f64
}

fn sample(logits: &[f32], params: &SamplingParams, u: f64) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    // Descending logit, ascending id: a total order, so the cut is the same everywhere.
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if let Some(k) = params.top_k {
        order.truncate(k);
    }
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| libm::exp((logits[i] as f64 - top) / params.temperature))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut kept = weights.len();
    if let Some(p) = params.top_p {
        let mut running = 0.0;
        for (n, w) in weights.iter().enumerate() {
            running += w;
            if running >= p * total {
                kept = n + 1;
                break;
            }
        }
    }
    let kept_total: f64 = weights[..kept].iter().sum();
    let target = u * kept_total;
    let mut running = 0.0;
    for (n, w) in weights[..kept].iter().enumerate() {
        running += w;
        if running > target {
            return order[n];
        }
    }
    order[kept - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(
        temperature: f64,
        top_k: Option<usize>,
        top_p: Option<f64>,
        seed: u64,
    ) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }

    #[test]
    fn greedy_takes_the_largest_logit_and_the_lowest_id_among_equals() {
        let c = choose(&[1.0, 3.0, 3.0, -2.0], &SamplingParams::default(), 0).unwrap();
        assert_eq!(c.token, 1);
        let expected = -(libm::exp(-2.0) + 1.0 + 1.0 + libm::exp(-5.0)).ln();
        assert!((c.logprob - expected).abs() < 1e-12, "{c:?}");
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_seed() {
        let logits = [0.5, 2.0, 1.9, -1.0];
        for seed in 0..50 {
            let c = choose(&logits, &params(1.0, Some(1), None, seed), 7).unwrap();
            assert_eq!(c.token, 1);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_it() {
        // Probabilities about 0.67, 0.24, 0.09: top_p 0.5 keeps only the first.
        let logits = [2.0, 1.0, 0.0];
        for seed in 0..50 {
            let c = choose(&logits, &params(1.0, None, Some(0.5), seed), 3).unwrap();
            assert_eq!(c.token, 0);
        }
    }

    #[test]
    fn sampling_follows_the_distribution() {
        // Two tokens, probabilities 1/(1+e) and e/(1+e); 4,000 draws land near them.
        let logits = [0.0, 1.0];
        let ones = (0..4000u64)
            .filter(|&pos| {
                choose(&logits, &params(1.0, None, None, 42), pos)
                    .unwrap()
                    .token
                    == 1
            })
            .count();
        let expected = 4000.0 * std::f64::consts::E / (1.0 + std::f64::consts::E);
        assert!(
            (ones as f64 - expected).abs() < 100.0,
            "{ones} vs {expected}"
        );
    }

    #[test]
    fn bad_parameters_and_nan_logits_are_errors() {
        let l = [1.0, 2.0];
        assert_eq!(
            choose(&l, &params(-1.0, None, None, 0), 0),
            Err(SamplingError::Temperature(-1.0))
        );
        assert_eq!(
            choose(&l, &params(1.0, Some(0), None, 0), 0),
            Err(SamplingError::TopK)
        );
        assert_eq!(
            choose(&l, &params(1.0, None, Some(1.5), 0), 0),
            Err(SamplingError::TopP(1.5))
        );
        assert_eq!(
            choose(&[1.0, f32::NAN], &SamplingParams::default(), 0),
            Err(SamplingError::NanLogit(1))
        );
        assert_eq!(
            choose(&[], &SamplingParams::default(), 0),
            Err(SamplingError::NoLogits)
        );
        assert_eq!(
            choose(&[1.0, f32::INFINITY], &SamplingParams::default(), 0),
            Err(SamplingError::InfiniteLogit(1))
        );
        assert_eq!(
            choose(&[f32::NEG_INFINITY; 3], &params(1.0, None, None, 0), 0),
            Err(SamplingError::NoPossibleToken)
        );
        // A token masked out with -inf is never chosen while another is possible.
        for seed in 0..50 {
            let c = choose(
                &[f32::NEG_INFINITY, 0.5, f32::NEG_INFINITY],
                &params(2.0, None, None, seed),
                9,
            )
            .unwrap();
            assert_eq!(c.token, 1);
            assert_eq!(c.logprob, 0.0);
        }
    }

    #[test]
    fn the_uniform_draw_is_pinned() {
        // Changing the derivation changes every sampled answer: pin it.
        let u = uniform(1, 2);
        assert_eq!(u, uniform(1, 2));
        assert_ne!(u, uniform(2, 1));
        assert!((0.0..1.0).contains(&u));
    }

    proptest! {
        #[test]
        fn any_parameters_give_a_token_in_range_or_an_error(
            logits in proptest::collection::vec(-1e30f32..1e30, 1..64),
            temperature in prop_oneof![Just(0.0), 1e-6f64..10.0, Just(f64::INFINITY), Just(-0.5)],
            top_k in proptest::option::of(0usize..80),
            top_p in proptest::option::of(-0.5f64..1.5),
            seed: u64,
            position: u64,
        ) {
            let p = params(temperature, top_k, top_p, seed);
            match choose(&logits, &p, position) {
                Ok(c) => {
                    prop_assert!((c.token as usize) < logits.len());
                    prop_assert!(c.logprob <= 0.0 && !c.logprob.is_nan());
                    prop_assert_eq!(choose(&logits, &p, position).unwrap(), c);
                }
                Err(_) => prop_assert!(p.check().is_err()),
            }
        }
    }
}
