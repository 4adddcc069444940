#!/usr/bin/env python3
"""Trains the reference PyTorch SASRec (benches/reference/sasrec_torch.py)
the SASRec.pytorch way on a `user item` file and evaluates it under two
protocols, to separate model from protocol when comparing with hsuga:

  * pmixer: negatives exclude only the training items and are redrawn at
    each evaluation; ties resolved by argsort (in the target's favour);
  * strict (hsuga): negatives exclude every interacted item, ties count
    against the target.
"""
import argparse
import json

import numpy as np
import torch

from sasrec_torch import SASRec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fashion/inter.txt")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--maxlen", type=int, default=50)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    seqs = {}
    for line in open(a.data):
        p = line.split()
        if len(p) >= 2:
            seqs.setdefault(p[0], []).append(int(p[1]))
    users = [s for s in seqs.values() if len(s) >= 3]
    n = max(max(s) for s in seqs.values())
    train = [s[:-2] for s in users]
    L = a.maxlen
    m = SASRec(n, max_len=L, dropout=0.5)
    for p in m.parameters():
        if p.dim() > 1:
            torch.nn.init.xavier_normal_(p)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3, betas=(0.9, 0.98))
    trainable = [i for i, s in enumerate(train) if len(s) >= 2]
    for ep in range(a.epochs):
        m.train()
        order = rng.permutation(trainable)
        tot = 0.0
        for b in range(0, len(order), 128):
            idx = order[b:b + 128]
            seq = np.zeros((len(idx), L), dtype=np.int64)
            pos = np.zeros_like(seq)
            neg = np.zeros_like(seq)
            for r, u in enumerate(idx):
                s = train[u][-(L + 1):]
                k = len(s) - 1
                seq[r, L - k:] = s[:-1]
                pos[r, L - k:] = s[1:]
                seen = set(train[u])
                for j in range(L - k, L):
                    x = rng.integers(1, n + 1)
                    while x in seen:
                        x = rng.integers(1, n + 1)
                    neg[r, j] = x
            opt.zero_grad()
            loss = m.loss(torch.from_numpy(seq), torch.from_numpy(pos), torch.from_numpy(neg))
            loss.backward()
            opt.step()
            tot += loss.item()
    m.eval()
    res = {}
    with torch.no_grad():
        for proto in ["pmixer", "strict"]:
            hr = nd = 0.0
            for u, s in enumerate(users):
                hist = s[:-1][-L:]
                seq = np.zeros((1, L), dtype=np.int64)
                seq[0, L - len(hist):] = hist
                excl = set(s[:-2]) if proto == "pmixer" else set(s)
                cands = [s[-1]]
                while len(cands) < 101:
                    x = int(rng.integers(1, n + 1))
                    if x not in excl and (proto == "pmixer" or x not in cands):
                        cands.append(x)
                h = m(torch.from_numpy(seq))[0, -1]
                sc = (m.item(torch.tensor(cands)) * h).sum(-1).numpy()
                if proto == "pmixer":
                    rank = int((-sc).argsort().argsort()[0])
                else:
                    rank = int((sc[1:] >= sc[0]).sum())
                if rank < 10:
                    hr += 1
                    nd += 1 / np.log2(rank + 2)
            res[proto] = {"hr10": hr / len(users), "ndcg10": nd / len(users)}
    print(json.dumps({"epochs": a.epochs, "maxlen": L, "loss": tot, **res}))


if __name__ == "__main__":
    main()
