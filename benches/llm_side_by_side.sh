#!/usr/bin/env bash
# Local SmolLM2 (candle + our Q8_0 decoding kernels, this repo) vs llama.cpp
# (llama-cpp-python) on the same CPU, GGUF file and prompt, in one run,
# interleaved: for each round and thread count, ours then llama.cpp, so that
# both see the same load on a shared machine. Prints the load average before
# and after, every measurement, and a table of medians over the rounds.
# Usage:
#   benches/llm_side_by_side.sh [--rounds 3] [--gen 128] [--reps 3]
# BASELINE_BIN=path/to/an/older/llm_local adds that build as a third column
# (before/after comparisons in the same run).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
rounds=3
if [ "${1:-}" = "--rounds" ]; then rounds=$2; shift 2; fi
bash benches/reference/llm_setup.sh >&2
out="$(mktemp -d)"
cargo build -q --release -p hsuga-llm --bench llm_local >&2
bin="$(cargo bench -q --no-run -p hsuga-llm --bench llm_local --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("executable") and m.get("target", {}).get("name") == "llm_local":
        print(m["executable"])')"
model="${HSUGA_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hsuga/models}/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$out/load"
for round in $(seq "$rounds"); do
    for th in 1 2; do
        # The bench runs from the crate folder (as `cargo bench` does).
        (cd crates/llm && "$bin" --threads "$th" "$@") | sed "s/^{/{\"round\":$round,/" | tee -a "$out/rust.jsonl"
        if [ -n "${BASELINE_BIN:-}" ]; then
            (cd crates/llm && "$BASELINE_BIN" --threads "$th" "$@") |
                sed "s/^{/{\"round\":$round,\"baseline\":true,/" | tee -a "$out/base.jsonl"
        fi
        benches/reference/llm-venv/bin/python benches/reference/llm_llamacpp.py \
            --model "$model" --prompt benches/reference/llm_prompt.txt --threads "$th" "$@" |
            tee -a "$out/cpp.jsonl"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/load"
python3 - "$out" <<'PY'
import json, os, statistics, sys
d = sys.argv[1]
def load(name):
    p = os.path.join(d, name)
    return [json.loads(l) for l in open(p) if l.startswith("{")] if os.path.exists(p) else []
rust, cpp, base = load("rust.jsonl"), load("cpp.jsonl"), load("base.jsonl")
def med(rows, th, k):
    v = [r[k] for r in rows if r.get("threads") == th and k in r]
    return statistics.median(v) if v else float("nan")
cols = ["hsuga (Q8_0)"] + (["hsuga baseline"] if base else []) + ["llama.cpp (Q4_1)", "hsuga / llama.cpp"]
print(f"\nmedians over {max(r['round'] for r in rust)} rounds\n")
print("| threads | measurement | " + " | ".join(cols) + " |")
print("|---" * (len(cols) + 2) + "|")
for th in (1, 2):
    for k, name in [("prefill_tok_s", "prefill tok/s"), ("decode_tok_s", "decode tok/s")]:
        r, c = med(rust, th, k), med(cpp, th, k)
        b = [f"{med(base, th, k):.1f}"] if base else []
        print(f"| {th} | {name} | {r:.1f} | " + " | ".join(b + [f"{c:.1f}", f"{r / c:.2f}x"]) + " |")
same = {th: len({r["text"] for r in rust + base if r.get("threads") == th and "text" in r}) == 1 for th in (1, 2)}
print(f"\nsame greedy text (first 200 chars) across our runs: {same}")
print(open(os.path.join(d, "load")).read())
PY
