#!/usr/bin/env bash
# Runs the Rust (burn) and PyTorch SASRec benchmarks on the same shapes and
# data in one go and prints the ratio. Usage:
#   [TORCH_PYTHON=python-with-torch] benches/side_by_side.sh [--epoch-data ../shared/data/steam/inter.txt] [--lens 50 200]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
args=("$@")
# An absolute path: cargo runs the Rust bench from its crate folder.
[ ${#args[@]} -eq 0 ] && args=(--lens 50 200 --epoch-data "$root/../shared/data/steam/inter.txt")
# TORCH_PYTHON=/path/to/python with torch skips the venv setup.
py="${TORCH_PYTHON:-}"
if [ -z "$py" ]; then
    bash benches/reference/setup.sh >&2
    py=benches/reference/.venv/bin/python
fi
out="$(mktemp -d)"
# Release, as `cargo run --release` builds the hsuga binary (the dev profile
# compiles our own code, the dropout masks among it, at opt-level 1).
echo "== burn" >&2
cargo bench -q --profile "${BENCH_PROFILE:-release}" -p hsuga-train --bench throughput -- --backbones sasrec "${args[@]}" | tee "$out/rust.jsonl"
echo "== pytorch" >&2
"$py" benches/reference/sasrec_torch.py "${args[@]}" | tee "$out/torch.jsonl"
python3 - "$out/rust.jsonl" "$out/torch.jsonl" <<'PY'
import json, sys
rust = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
torch = [json.loads(l) for l in open(sys.argv[2]) if l.startswith("{")]
print("\n| measurement | burn | PyTorch | PyTorch / burn |")
print("|---|---|---|---|")
for r in rust:
    if r.get("backbone") != "sasrec":
        continue
    if "len" in r:
        t = next((t for t in torch if t.get("len") == r["len"]), None)
        if t:
            print(f"| train step ms, len {r['len']} | {r['step_ms']:.1f} | {t['step_ms']:.1f} | {t['step_ms']/r['step_ms']:.2f}x |")
            print(f"| eval users/s, len {r['len']} | {r['eval_users_per_s']:.0f} | {t['eval_users_per_s']:.0f} | {r['eval_users_per_s']/t['eval_users_per_s']:.2f}x |")
    if "peak_rss_mib" in r:
        t = next((t for t in torch if "peak_rss_mib" in t), None)
        if t:
            print(f"| peak RSS MiB (whole run) | {r['peak_rss_mib']:.0f} | {t['peak_rss_mib']:.0f} | {t['peak_rss_mib']/r['peak_rss_mib']:.2f}x |")
    if "epoch_s" in r:
        t = next((t for t in torch if "epoch_s" in t), None)
        if t:
            print(f"| epoch s, {r['epoch_data']} | {r['epoch_s']:.1f} | {t['epoch_s']:.1f} (padded to 200) | {t['epoch_s']/r['epoch_s']:.2f}x |")
PY
