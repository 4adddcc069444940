#!/usr/bin/env python3
"""PyTorch reference for the hsuga throughput benchmark.

The same SASRec as crates/model (SASRec.pytorch / LLM-ESR layout: item +
learned position embeddings, blocks of LN -> self-attention -> residual ->
LN -> point-wise FFN -> residual, final LN; BCE with one sampled negative per
position), timed on the same shapes as `cargo bench --bench throughput`:

  * one training step at batch 128, hidden 64, `--items` items, length 50 and
    200 (every sequence full length, so both sides do identical work);
  * optionally a whole training epoch on a `user item` file (Steam) with every
    batch padded to 200, as the PyTorch ports do.

Prints one JSON object per measurement. Written for this repository; it is
only a yardstick, never used by the tests.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, h, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(h, eps=1e-8)
        self.attn = nn.MultiheadAttention(h, 1, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(h, eps=1e-8)
        self.ff1 = nn.Linear(h, h)
        self.ff2 = nn.Linear(h, h)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask, keep):
        q = self.ln1(x)
        a, _ = self.attn(q, x, x, attn_mask=mask, need_weights=False)
        x = self.ln2(q + a)
        x = x + self.drop(self.ff2(self.drop(torch.relu(self.ff1(x)))))
        return x * keep


class SASRec(nn.Module):
    def __init__(self, n_items, h=64, layers=2, max_len=200, dropout=0.5):
        super().__init__()
        self.item = nn.Embedding(n_items + 1, h, padding_idx=0)
        self.pos = nn.Embedding(max_len + 1, h)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(h, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(h, eps=1e-8)
        self.scale = h ** 0.5

    def forward(self, seq):
        b, t = seq.shape
        keep = (seq != 0).unsqueeze(-1).float()
        pos = torch.arange(1, t + 1, device=seq.device).unsqueeze(0).expand(b, t) * (seq != 0)
        x = self.drop(self.item(seq) * self.scale + self.pos(pos)) * keep
        mask = torch.triu(torch.ones(t, t, dtype=torch.bool, device=seq.device), 1)
        for blk in self.blocks:
            x = blk(x, mask, keep)
        return self.ln(x)

    def loss(self, seq, pos, neg):
        h = self.forward(seq)
        valid = pos != 0
        ps = (h * self.item(pos)).sum(-1)[valid]
        ns = (h * self.item(neg)).sum(-1)[valid]
        bce = nn.functional.binary_cross_entropy_with_logits
        return bce(ps, torch.ones_like(ps)) + bce(ns, torch.zeros_like(ns))


def step_bench(args, length):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    m = SASRec(args.items, max_len=max(length, 200))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    b = args.batch
    seq = torch.from_numpy(rng.integers(1, args.items + 1, (b, length)))
    pos = torch.from_numpy(rng.integers(1, args.items + 1, (b, length)))
    neg = torch.from_numpy(rng.integers(1, args.items + 1, (b, length)))
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = m.loss(seq, pos, neg)
        loss.backward()
        opt.step()
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    ms = 1000 * float(np.median(times))
    m.eval()
    with torch.no_grad():
        cand = torch.from_numpy(rng.integers(1, args.items + 1, (b, 101)))
        t0 = time.perf_counter()
        for _ in range(args.steps):
            h = m(seq)[:, -1, :]
            (m.item(cand) * h.unsqueeze(1)).sum(-1)
        eval_s = (time.perf_counter() - t0) / args.steps
    print(json.dumps({"impl": "pytorch", "backbone": "sasrec", "len": length, "batch": b,
                      "items": args.items, "step_ms": ms, "train_seqs_per_s": b / ms * 1000,
                      "eval_users_per_s": b / eval_s, "threads": torch.get_num_threads()}), flush=True)


def epoch_bench(args):
    seqs = {}
    with open(args.epoch_data) as f:
        for line in f:
            p = line.split()
            if len(p) >= 2:
                seqs.setdefault(int(p[0]), []).append(int(p[1]))
    train = [s[:-2] for s in seqs.values() if len(s) >= 3]
    n_items = max(max(s) for s in seqs.values())
    L = 200
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    m = SASRec(n_items, max_len=L)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    users = [s for s in train if len(s) >= 2]
    order = rng.permutation(len(users))
    t0 = time.perf_counter()
    for i in range(0, len(order), args.batch):
        idx = order[i:i + args.batch]
        seq = np.zeros((len(idx), L), dtype=np.int64)
        pos = np.zeros_like(seq)
        neg = np.zeros_like(seq)
        for r, u in enumerate(idx):
            s = users[u][-(L + 1):]
            k = len(s) - 1
            seq[r, L - k:] = s[:-1]
            pos[r, L - k:] = s[1:]
            seen = set(s)
            for j in range(L - k, L):
                x = rng.integers(1, n_items + 1)
                while x in seen:
                    x = rng.integers(1, n_items + 1)
                neg[r, j] = x
        opt.zero_grad()
        loss = m.loss(torch.from_numpy(seq), torch.from_numpy(pos), torch.from_numpy(neg))
        loss.backward()
        opt.step()
    secs = time.perf_counter() - t0
    print(json.dumps({"impl": "pytorch", "backbone": "sasrec", "epoch_data": os.path.basename(os.path.dirname(args.epoch_data)),
                      "epoch_s": secs, "users": len(users), "padded_to": L,
                      "threads": torch.get_num_threads()}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=12101)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lens", type=int, nargs="*", default=[50, 200])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--epoch-data", default=None)
    args = ap.parse_args()
    for length in args.lens:
        step_bench(args, length)
    if args.epoch_data:
        epoch_bench(args)
    import resource
    print(json.dumps({"impl": "pytorch",
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
