//! Prometheus metrics, registered once per service (a registry of its own,
//! so several services in one process, as in tests, never collide) and
//! served as text at `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by route template, method and status.
    pub requests: IntCounterVec,
    /// Latency by route template.
    pub latency: HistogramVec,
    /// Requests waiting for the scoring thread.
    pub queue_depth: IntGauge,
    /// Histories per forward pass.
    pub batch_rows: Histogram,
    /// Interactions by outcome (`accepted`, `duplicate`).
    pub interactions: IntCounterVec,
    /// Reloads by outcome (`ok`, `refused`).
    pub reloads: IntCounterVec,
    /// HSU stages run online, by outcome (`ok`; `failed`: unusable answers,
    /// previous interests kept; `error`: a call failed outright, the stage
    /// is left for the next update).
    pub hsu_stages: IntCounterVec,
    /// Users waiting for the HSU worker.
    pub hsu_queue_depth: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("hsuga".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        // From 100 µs to 2.5 s: scoring one history is about a millisecond.
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ]),
            &["route"],
        )?;
        let queue_depth = IntGauge::new(
            "scoring_queue_depth",
            "Recommendation requests waiting for the scoring thread",
        )?;
        let batch_rows = Histogram::with_opts(
            HistogramOpts::new("scoring_batch_rows", "Histories scored per forward pass")
                .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
        )?;
        let interactions = IntCounterVec::new(
            Opts::new("interactions_total", "Interactions received, by outcome"),
            &["outcome"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("reloads_total", "Run reloads, by outcome"),
            &["outcome"],
        )?;
        let hsu_stages = IntCounterVec::new(
            Opts::new("hsu_stages_total", "HSU stages run online, by outcome"),
            &["outcome"],
        )?;
        let hsu_queue_depth = IntGauge::new(
            "hsu_queue_depth",
            "Users whose completed HSU stages wait for the worker",
        )?;
        // Present from the start, so a scrape sees 0 rather than nothing.
        for outcome in ["ok", "failed", "error"] {
            hsu_stages.with_label_values(&[outcome]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(hsu_stages.clone()))?;
        registry.register(Box::new(hsu_queue_depth.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(batch_rows.clone()))?;
        registry.register(Box::new(interactions.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            queue_depth,
            batch_rows,
            interactions,
            reloads,
            hsu_stages,
            hsu_queue_depth,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if let Err(e) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!("encoding metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
