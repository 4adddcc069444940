//! A back-end that answers from a closure and counts its calls — for tests
//! (call budgets of incremental updates, fault injection, interrupted runs).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{
    BackendId, ChatBackend, ChatRequest, ChatResponse, Finish, LlmError, Usage, estimate_tokens,
};

type Responder = dyn Fn(&ChatRequest, usize) -> Result<String, LlmError> + Send + Sync;

/// Answers with `respond(request, call_index)`; records every request.
pub struct Scripted {
    respond: Box<Responder>,
    calls: AtomicUsize,
    log: Mutex<Vec<ChatRequest>>,
    delay: Duration,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scripted")
            .field("calls", &self.calls())
            .finish()
    }
}

impl Scripted {
    pub fn new(
        respond: impl Fn(&ChatRequest, usize) -> Result<String, LlmError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            respond: Box::new(respond),
            calls: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            delay: Duration::ZERO,
        }
    }

    /// Sleeps this long in every call (to make runs slow enough to kill).
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        self.calls.store(0, Ordering::SeqCst);
        if let Ok(mut l) = self.log.lock() {
            l.clear();
        }
    }
}

impl ChatBackend for Scripted {
    fn id(&self) -> BackendId {
        BackendId {
            backend: "scripted".into(),
            model: "test".into(),
        }
    }

    fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut l) = self.log.lock() {
            l.push(req.clone());
        }
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        let text = (self.respond)(req, n)?;
        Ok(ChatResponse {
            usage: Usage {
                prompt_tokens: req
                    .messages
                    .iter()
                    .map(|m| estimate_tokens(&m.content))
                    .sum(),
                completion_tokens: estimate_tokens(&text),
                estimated: true,
            },
            text,
            finish: Finish::Stop,
            latency: self.delay,
            hidden_mean: None,
        })
    }
}
