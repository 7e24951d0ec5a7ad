"""An independent all-MiniLM-L6-v2 forward in numpy: the reference the local embedder is
checked against (origin/tests/embedders.rs, `local_*` tests).

    pip install numpy==2.4.6 safetensors==0.8.0 tokenizers==0.23.3   (deploy/setup.sh does)
    python3 origin/tests/peers/minilm_reference.py MODEL_DIR > origin/tests/data/minilm_reference.json

No torch and no candle: the BERT forward is written out below from config.json and the
safetensors weights, in float32, with exact (erf) GELU; then mean pooling over the attention
mask and L2 normalisation, as sentence-transformers' Transformer -> Pooling(mean) -> Normalize.
Inputs are truncated at 256 word pieces (sentence_bert_config.json's max_seq_length; the
shipped tokenizer.json says 128 and is overridden). This script was certified once, by hand,
against sentence-transformers 6.3.0 / torch 2.15.0 on the same model folder: cosine 1.0000000,
largest difference 1.6e-7 (torch is too heavy to install for every test run).

The `tokenizers` package is the same Rust library as the crate the origin uses, so the token
ids are checked separately: the JSON records them and the Rust test compares ids too.
"""
import json
import sys
from math import erf, sqrt

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_LEN = 256

SENTENCES = [
    "reset my password",
    "I forgot my login",
    "This is an example sentence",
    "Crème brûlée à la café, naïve façade: Zürich über Ångström",
    "東京の天気は晴れです。我喜欢学习机器学习。",
    "",
    "The deploy failed with error 502 after the billing webhook timed out; retry later.",
    # Longer than 256 word pieces: truncated.
    " ".join(f"token{i} alpha beta gamma" for i in range(120)),
]


def _erf(x):
    return np.frompyfunc(erf, 1, 1)(x.astype(np.float64)).astype(np.float32)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / np.float32(sqrt(2.0))))


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


class MiniLM:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            self.cfg = json.load(f)
        self.w = load_file(f"{model_dir}/model.safetensors")
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        self.tok.enable_truncation(MAX_LEN)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def encode(self, texts):
        c, w = self.cfg, self.w
        enc = self.tok.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        tt = np.array([e.type_ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        B, T = ids.shape
        H, nh = c["hidden_size"], c["num_attention_heads"]
        hd = H // nh
        eps = c["layer_norm_eps"]
        p = "embeddings."
        x = (w[p + "word_embeddings.weight"][ids]
             + w[p + "position_embeddings.weight"][np.arange(T)][None]
             + w[p + "token_type_embeddings.weight"][tt])
        x = layer_norm(x, w[p + "LayerNorm.weight"], w[p + "LayerNorm.bias"], eps)
        ext = (1.0 - mask)[:, None, None, :] * np.finfo(np.float32).min
        for i in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def lin(h, n):
                return h @ w[p + n + ".weight"].T + w[p + n + ".bias"]

            q = lin(x, "attention.self.query").reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
            k = lin(x, "attention.self.key").reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
            v = lin(x, "attention.self.value").reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
            s = q @ k.transpose(0, 1, 3, 2) / np.float32(sqrt(hd)) + ext
            s = np.exp(s - s.max(-1, keepdims=True))
            s = s / s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, H)
            x = layer_norm(lin(a, "attention.output.dense") + x,
                           w[p + "attention.output.LayerNorm.weight"],
                           w[p + "attention.output.LayerNorm.bias"], eps)
            h = gelu(lin(x, "intermediate.dense"))
            x = layer_norm(lin(h, "output.dense") + x,
                           w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        m = mask[:, :, None]
        pooled = (x * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        vecs = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        real_ids = [[i for i, a in zip(e.ids, e.attention_mask) if a] for e in enc]
        return real_ids, vecs


if __name__ == "__main__":
    model = MiniLM(sys.argv[1])
    out = []
    # One at a time: each vector is the sentence's own, with no padding in its batch.
    for s in SENTENCES:
        ids, vecs = model.encode([s])
        out.append({"text": s, "ids": ids[0], "embedding": [round(float(x), 7) for x in vecs[0]]})
    json.dump({"model": "all-MiniLM-L6-v2", "max_length": MAX_LEN, "sentences": out},
              sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
