//! Timing of exact top-K cosine retrieval at Beauty's size (22,363 users,
//! 384-dimensional MiniLM user embeddings, K = 10), the size the distiller
//! retrieves for. Ignored by default; run with
//! `cargo test -p hsuga-retrieval --release --test timing -- --ignored --nocapture`.

use std::time::Instant;

use hsuga_retrieval::{UserEmbeddings, top_k_cosine};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[test]
#[ignore = "timing only; a few seconds of both cores"]
fn top_k_cosine_at_beauty_size() {
    let (n, d, k) = (22_363, 384, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(12345);
    let data: Vec<f32> = (0..n * d).map(|_| rng.random::<f32>() - 0.5).collect();
    let emb = UserEmbeddings::new(d, data).unwrap();
    let ks = vec![k; n];
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let out = top_k_cosine(&emb, &ks).unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(out.len(), n);
    }
    println!(
        "top_k_cosine {n} x {d}, K = {k}: best of 3 {best:.3} s ({} threads)",
        rayon::current_num_threads()
    );
}
