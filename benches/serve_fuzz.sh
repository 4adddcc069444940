#!/usr/bin/env bash
# Fuzzes `hsuga serve` with schemathesis against its own /openapi.json
# (issue 17: "no 5xx and no schema violation").
#
#   benches/serve_fuzz.sh [binary]        # default: target/debug/hsuga
#
# 1. Trains (once; reused while its folder holds best.bpk) a tiny ML-100K
#    SASRec + HSU fusion (gate) run with the `rules` back-end, hidden 16,
#    max length 20, one epoch: every route then has something to answer,
#    the interests route and the HSU worker included. It trains in its own
#    cache (the MiniLM embedding caches of $HSUGA_CACHE_DIR or
#    ~/.cache/hsuga are copied in), so the fuzzed writes and their online
#    HSU stages never touch the user's HSU store.
# 2. Starts `hsuga serve` on 127.0.0.1 (a free port) with a fresh
#    interaction store and a bearer token taken from $HSUGA_FUZZ_TOKEN
#    (random when unset), so write and admin routes are fuzzed too.
# 3. Runs schemathesis on every operation with every check it has, the
#    bearer header on all requests (its `ignored_auth` check also sends
#    requests without it), and stops the server with SIGTERM.
#
# Environment: SCHEMATHESIS (default: target/schemathesis-venv/bin/schemathesis,
# which scripts/test.sh installs, when present, else `schemathesis` on PATH), HSUGA_FUZZ_DIR (work folder,
# default /tmp/hsuga-serve-fuzz), HSUGA_FUZZ_MAX_EXAMPLES (per operation and
# phase, default 100), HSUGA_FUZZ_SEED (default 42). Install schemathesis
# into a virtual environment: `python3 -m venv V && V/bin/pip install
# schemathesis`. The exit status is schemathesis's (0: nothing found).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

bin=${1:-target/debug/hsuga}
[[ -x $bin ]] || { echo "serve_fuzz: no binary at $bin (cargo build -p hsuga-cli)" >&2; exit 2; }
bin=$(realpath "$bin")
if [[ -n ${SCHEMATHESIS:-} ]]; then
    st=$SCHEMATHESIS
elif [[ -x target/schemathesis-venv/bin/schemathesis ]]; then
    st=target/schemathesis-venv/bin/schemathesis
else
    st=schemathesis
fi
command -v "$st" >/dev/null || {
    echo "serve_fuzz: schemathesis not found; python3 -m venv V && V/bin/pip install schemathesis, then SCHEMATHESIS=V/bin/schemathesis" >&2
    exit 2
}
# Absolute paths: schemathesis runs from the work folder (below), where a
# path relative to the repository (CI's default target/) would not resolve.
st=$(realpath "$(command -v "$st")")
work=${HSUGA_FUZZ_DIR:-/tmp/hsuga-serve-fuzz}
mkdir -p "$work"
work=$(realpath "$work")
max_examples=${HSUGA_FUZZ_MAX_EXAMPLES:-100}
seed=${HSUGA_FUZZ_SEED:-42}
token=${HSUGA_FUZZ_TOKEN:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export HSUGA_FUZZ_TOKEN=$token

cache=$work/cache
run=$work/runs/fuzz/seed-42
user_cache=${HSUGA_CACHE_DIR:-$HOME/.cache/hsuga}
if [[ ! -f $run/best.bpk ]]; then
    if [[ -d $user_cache/embeddings/ml-100k && ! -d $cache/embeddings/ml-100k ]]; then
        mkdir -p "$cache/embeddings"
        cp -r "$user_cache/embeddings/ml-100k" "$cache/embeddings/"
    fi
    cat > "$work/run.toml" <<EOF
name = "fuzz"
dataset = "ml-100k"
out_dir = "$work/runs"
seed = 42
[model]
hidden = 16
max_len = 20
[train]
epochs = 1
[method]
fusion = "gate"
[inputs]
item_text = "all-minilm-l6-v2"
user_semantic = { hsu = "rules" }
EOF
    echo "serve_fuzz: training the tiny run in $work" >&2
    "$bin" --cache-dir "$cache" train --config "$work/run.toml" --quiet
fi

state=$work/state
rm -rf "$state"
mkdir -p "$state"
log=$work/serve.log
"$bin" --cache-dir "$cache" serve --run "$run" --addr 127.0.0.1:0 \
    --token-env HSUGA_FUZZ_TOKEN --state "$state/interactions.sqlite" 2>"$log" &
server=$!
stop_server() {
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
addr=
for _ in $(seq 1 600); do
    addr=$(sed -n 's/.* on http:\/\/\([^;]*\);.*/\1/p' "$log" | head -n 1)
    [[ -n $addr ]] && break
    kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "serve_fuzz: the server ended" >&2; exit 1; }
    sleep 0.1
done
[[ -n $addr ]] || { cat "$log" >&2; echo "serve_fuzz: the server did not start" >&2; exit 1; }
if grep -qF "$token" "$log"; then
    echo "serve_fuzz: the token appears in the server's log" >&2
    exit 1
fi
echo "serve_fuzz: serving on http://$addr; $("$st" --version)" >&2

start=$(date +%s)
status=0
# From the work folder: schemathesis keeps a cache folder in its working
# directory (.schemathesis/), which belongs there, not in the repository.
(cd "$work" && "$st" --config-file "$repo/benches/serve_fuzz.toml" run "http://$addr/openapi.json" \
    --checks all \
    -H "Authorization: Bearer $token" \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --generation-database none \
    --workers 2 \
    --request-timeout 30 \
    --report junit --report-dir "$work/report") \
    || status=$?
echo "serve_fuzz: schemathesis exit status $status after $(( $(date +%s) - start )) s" >&2
exit "$status"
