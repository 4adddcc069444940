"""llama.cpp (via llama-cpp-python) on the same GGUF and prompt as
benches/llm_local.rs: prefill and decode tokens/s, greedy, a fixed number of
generated tokens (end-of-turn ignored so both sides decode the same count).

usage: llm_llamacpp.py --model FILE --prompt FILE [--gen 128] [--threads 1 2] [--reps 3]
Prints one JSON object per measurement.
"""
import argparse
import json
import time

import llama_cpp
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--prompt", required=True)
ap.add_argument("--gen", type=int, default=128)
ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
text = open(a.prompt, encoding="utf-8").read()

for th in a.threads:
    llm = Llama(model_path=a.model, n_ctx=2048, n_batch=512, n_threads=th,
                n_threads_batch=th, verbose=False)
    toks = llm.tokenize(text.encode(), add_bos=False, special=True)
    best = None
    for _ in range(a.reps + 1):  # first run warms up
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(toks)
        t1 = time.perf_counter()
        out = []
        for _ in range(a.gen):
            tok = llm.sample(temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0)
            out.append(tok)
            llm.eval([tok])
        t2 = time.perf_counter()
        r = (t1 - t0, t2 - t1)
        if best is None or sum(r) < sum(best):
            best = r
    pre, dec = best
    print(json.dumps({
        "impl": "llama.cpp", "version": llama_cpp.__version__, "threads": th,
        "prompt_tokens": len(toks), "gen_tokens": a.gen,
        "prefill_tok_s": len(toks) / pre, "decode_tok_s": a.gen / dec,
        "total_s": pre + dec,
        "text": llm.detokenize(out).decode("utf-8", "replace")[:200],
    }), flush=True)
