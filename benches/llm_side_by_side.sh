#!/usr/bin/env bash
# Local SmolLM2 (candle, this repo) vs llama.cpp (llama-cpp-python) on the same
# CPU, GGUF file and prompt, in one run. Usage:
#   benches/llm_side_by_side.sh [--gen 128] [--reps 3]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash benches/reference/llm_setup.sh >&2
out="$(mktemp -d)"
cargo build -q --release -p hsuga-llm --bench llm_local >&2
for th in 1 2; do
    par=0; [ "$th" = 1 ] && par=2
    cargo bench -q -p hsuga-llm --bench llm_local -- --threads "$th" --parallel "$par" "$@" | tee -a "$out/rust.jsonl"
done
model="${HSUGA_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hsuga/models}/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
benches/reference/llm-venv/bin/python benches/reference/llm_llamacpp.py \
    --model "$model" --prompt benches/reference/llm_prompt.txt --threads 1 2 "$@" | tee "$out/cpp.jsonl"
python3 - "$out/rust.jsonl" "$out/cpp.jsonl" <<'PY'
import json, sys
rust = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cpp = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
print("\n| threads | measurement | hsuga (candle, Q8_0) | llama.cpp (Q4_1) | hsuga / llama.cpp |")
print("|---|---|---|---|---|")
for r in rust:
    if "decode_tok_s" not in r:
        continue
    c = next((c for c in cpp if c["threads"] == r["threads"]), None)
    if not c:
        continue
    for k, name in [("prefill_tok_s", "prefill tok/s"), ("decode_tok_s", "decode tok/s")]:
        print(f"| {r['threads']} | {name} | {r[k]:.1f} | {c[k]:.1f} | {r[k]/c[k]:.2f}x |")
    print(f"| {r['threads']} | {r['prompt_tokens']}-token prompt + {r['gen_tokens']} tokens, s | {r['total_s']:.2f} | {c['total_s']:.2f} ({c['prompt_tokens']}-token prompt) | {c['total_s']/r['total_s']:.2f}x faster |")
for r in rust:
    if "parallel_generations" in r:
        print(f"\n{r['parallel_generations']} generations side by side, 1 thread each: "
              f"{r['aggregate_decode_equiv_tok_s']:.1f} generated tok/s in total ({r['wall_s']:.2f} s wall)")
PY
