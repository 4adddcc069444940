//! Helpers of the greedy-decoding checks shared by the in-process model
//! tests (`local_smollm2.rs`, `local_qwen.rs`), included with `#[path]`.
//!
//! Issue 15's rule for comparing two numerically different implementations
//! (our decoder against candle's or llama.cpp's, on CPUs that sum in other
//! orders): logits agree within a stated tolerance, and a greedy token is
//! compared only where the reference's top-2 margin exceeds twice that
//! tolerance (each logit may move by the tolerance, so a smaller gap can
//! flip).
#![allow(dead_code)]

use hsuga_llm::Message;
use hsuga_llm::local::LocalLlm;
use hsuga_llm::local::model::Scratch;

/// The prompts of both models' reference checks, (system, user); each test
/// adds the benchmark's long prompt after them.
pub const PROMPTS: [(&str, &str); 4] = [
    ("You are a helpful assistant.", "Name three fruits."),
    (
        "You summarise a user's movie interests.",
        "The user watched: Toy Story (1995), Heat (1995), GoldenEye (1995), Jumanji (1995), Casino (1995). Write their interests as a short list.",
    ),
    (
        "You are a concise assistant.",
        "Explain in two sentences why the sky is blue.",
    ),
    (
        "Answer with one instruction number.",
        "Interests: action movies, 90s comedies. New items: Fargo (1996), Scream (1996). Which operation applies? 1 delete, 2 modify, 3 add, 4 retain. Reply as `Instruction: N`.",
    ),
];

pub fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

/// The gap between the largest and the second-largest logit.
pub fn top2_margin(l: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &v in l {
        if v > a {
            (a, b) = (v, a);
        } else if v > b {
            b = v;
        }
    }
    a - b
}

/// `log softmax(l)[i]`, summed in f64.
pub fn log_prob(l: &[f32], i: u32) -> f64 {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = l.iter().map(|&v| (v as f64 - max).exp()).sum();
    l[i as usize] as f64 - max - sum.ln()
}

/// Our model's logits at the positions of `tokens`, fed those tokens
/// (teacher forcing): the prompt through `Llama::forward` (whole-chunk
/// prefill), each token after through the single-token decoder. With
/// `reuse_prefix` the prompt's last token runs alone on a copy of the cache
/// cut before it, as a prompt sharing a cached prefix does.
pub fn our_run(
    m: &LocalLlm,
    prompt: &[u32],
    tokens: &[u32],
    threads: usize,
    reuse_prefix: bool,
) -> Vec<Vec<f32>> {
    let model = m.model();
    let d = model.cfg.n_embd;
    let mut s = Scratch::default();
    let mut cache = model.new_cache();
    let hidden = model.forward(prompt, &mut cache, &mut s, threads).unwrap();
    let mut last = hidden[hidden.len() - d..].to_vec();
    if reuse_prefix {
        cache = cache.prefix(prompt.len() - 1);
        model
            .step(prompt[prompt.len() - 1], &mut cache, &mut s, threads)
            .unwrap();
        last.copy_from_slice(&s.hidden);
    }
    let mut out = Vec::new();
    for &t in tokens {
        model.logits(&last, &mut s, threads);
        out.push(s.logits.clone());
        if out.len() == tokens.len() {
            break;
        }
        model.step(t, &mut cache, &mut s, threads).unwrap();
        last.copy_from_slice(&s.hidden);
    }
    out
}

/// [`PROMPTS`] in the model's chat template, then the benchmark's long
/// prompt (past 256 cached keys attention sums in another order).
pub fn prompts(m: &LocalLlm) -> Vec<Vec<u32>> {
    let mut p: Vec<Vec<u32>> = PROMPTS
        .iter()
        .map(|(system, user)| {
            m.encode(&m.chat_prompt(&[Message::system(*system), Message::user(*user)]))
                .unwrap()
        })
        .collect();
    p.push(
        m.encode(include_str!("../../../../benches/reference/llm_prompt.txt"))
            .unwrap(),
    );
    p
}
