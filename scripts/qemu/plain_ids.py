#!/usr/bin/env python3
"""Greedy plaintext token ids of a llama2.c checkpoint, for scripts/qemu-mesh-test.sh.

`sotto generate` prints text, not ids; this is an independent f32 re-implementation of
llama2.c run.c (BPE encode, forward pass, greedy argmax, decode) with numpy, used as the
plaintext reference. The test checks that its decoded text equals `sotto generate --engine f32`
output (so these ids are the host engine's ids) and that the private ids equal these.

  plain_ids.py --model-dir DIR --prompt TEXT --steps N
prints three lines:
  prompt_ids: 1 ...          the encoded prompt (BOS first)
  ids: ...                   N greedy ids after the prompt (not stopped at BOS, as the mesh)
  text_b64: ...              base64 of what `sotto generate` prints for prompt_len+N-1
                             positions: the decoded tokens after BOS up to the first BOS, + "\n"
"""
import argparse
import base64
import re
import struct
import sys

import numpy as np

BOS = 1


def load_checkpoint(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    w = np.frombuffer(data, dtype="<f4", offset=28)
    head_size = dim // n_heads
    kv_dim = dim * n_kv_heads // n_heads
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = w[off:off + n].reshape(shape)
        off += n
        return a

    m = {}
    m["emb"] = take(vocab, dim)
    m["rms_att"] = take(n_layers, dim)
    m["wq"] = take(n_layers, dim, dim)
    m["wk"] = take(n_layers, kv_dim, dim)
    m["wv"] = take(n_layers, kv_dim, dim)
    m["wo"] = take(n_layers, dim, dim)
    m["rms_ffn"] = take(n_layers, dim)
    m["w1"] = take(n_layers, hidden, dim)
    m["w2"] = take(n_layers, dim, hidden)
    m["w3"] = take(n_layers, hidden, dim)
    m["rms_final"] = take(dim)
    off += seq_len * head_size // 2 * 2  # freq_cis_real, freq_cis_imag (unused)
    m["wcls"] = m["emb"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads,
               n_kv_heads=n_kv_heads, vocab=vocab, seq_len=seq_len,
               head_size=head_size, kv_dim=kv_dim)
    return cfg, m


def load_tokenizer(path, vocab):
    with open(path, "rb") as f:
        data = f.read()
    pos = 4  # max_token_length
    pieces, scores = [], []
    for _ in range(vocab):
        score, n = struct.unpack_from("<fi", data, pos)
        pos += 8
        pieces.append(data[pos:pos + n])
        pos += n
        scores.append(score)
    return pieces, scores


def encode(text, pieces, scores):
    ids = {p: i for i, p in enumerate(pieces)}
    toks = [BOS]

    def push(s):
        b = s.encode("utf-8")
        if b in ids:
            toks.append(ids[b])
        else:
            toks.extend(3 + x for x in b)

    if text:
        push(" ")
    for c in text:
        push(c)
    while True:
        best = None
        for i in range(len(toks) - 1):
            j = ids.get(pieces[toks[i]] + pieces[toks[i + 1]])
            if j is not None and scores[j] > (best[0] if best else -1e10):
                best = (scores[j], j, i)
        if best is None:
            break
        _, j, i = best
        toks[i:i + 2] = [j]
    return toks


def decode_piece(pieces, prev, tok):
    p = pieces[tok]
    if prev == BOS and p.startswith(b" "):
        p = p[1:]
    m = re.fullmatch(rb"<0x([0-9A-Fa-f]{2})>", p)
    if m:
        p = bytes([int(m.group(1), 16)])
    if len(p) == 1 and p[0] < 0x80:
        b = p[0]
        if not (0x20 <= b < 0x7F or b in b" \t\n\x0b\x0c\r"):
            return b""
    return p


def rmsnorm(x, w):
    x = x.astype(np.float32)
    ss = np.float32(np.sum(x * x, dtype=np.float32) / np.float32(len(x)) + np.float32(1e-5))
    return (w * (x * np.float32(1.0 / np.sqrt(ss)))).astype(np.float32)


class Forward:
    def __init__(self, cfg, m):
        self.c, self.m = cfg, m
        L, S, kv = cfg["n_layers"], cfg["seq_len"], cfg["kv_dim"]
        self.kc = np.zeros((L, S, kv), np.float32)
        self.vc = np.zeros((L, S, kv), np.float32)

    def __call__(self, tok, pos):
        c, m = self.c, self.m
        hs, nh, nkv = c["head_size"], c["n_heads"], c["n_kv_heads"]
        mul = nh // nkv
        x = m["emb"][tok].astype(np.float32).copy()
        i = np.arange(0, c["dim"], 2)
        freq = (1.0 / np.power(np.float32(10000.0), (i % hs).astype(np.float32) / np.float32(hs))).astype(np.float32)
        ang = (np.float32(pos) * freq).astype(np.float32)
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        for l in range(c["n_layers"]):
            xb = rmsnorm(x, m["rms_att"][l])
            q = m["wq"][l] @ xb
            k = m["wk"][l] @ xb
            v = m["wv"][l] @ xb
            for vec, n in ((q, c["dim"]), (k, c["kv_dim"])):
                a, b = vec[0:n:2].copy(), vec[1:n:2].copy()
                cs, sn = cos[: n // 2], sin[: n // 2]
                vec[0:n:2] = a * cs - b * sn
                vec[1:n:2] = a * sn + b * cs
            self.kc[l, pos] = k
            self.vc[l, pos] = v
            out = np.zeros(c["dim"], np.float32)
            for h in range(nh):
                kh = h // mul
                qh = q[h * hs:(h + 1) * hs]
                ks = self.kc[l, :pos + 1, kh * hs:(kh + 1) * hs]
                att = (ks @ qh) / np.float32(np.sqrt(np.float32(hs)))
                att = np.exp(att - att.max())
                att = att / att.sum()
                out[h * hs:(h + 1) * hs] = att @ self.vc[l, :pos + 1, kh * hs:(kh + 1) * hs]
            x = x + m["wo"][l] @ out
            xb = rmsnorm(x, m["rms_ffn"][l])
            h1 = m["w1"][l] @ xb
            h3 = m["w3"][l] @ xb
            h1 = h1 * (np.float32(1.0) / (np.float32(1.0) + np.exp(-h1)))
            x = x + m["w2"][l] @ (h1 * h3)
        x = rmsnorm(x, m["rms_final"])
        return m["wcls"] @ x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--steps", type=int, required=True)
    a = ap.parse_args()
    cfg, m = load_checkpoint(f"{a.model_dir}/stories260K.bin")
    pieces, scores = load_tokenizer(f"{a.model_dir}/tok512.bin", cfg["vocab"])
    prompt = encode(a.prompt, pieces, scores)
    if len(prompt) + a.steps - 1 > cfg["seq_len"]:
        sys.exit(f"plain_ids: prompt + steps exceed the context length {cfg['seq_len']}")
    fwd = Forward(cfg, m)
    tok, out = prompt[0], []
    for pos in range(len(prompt) + a.steps - 1):
        logits = fwd(tok, pos)
        if pos + 1 < len(prompt):
            tok = prompt[pos + 1]
        else:
            tok = int(np.argmax(logits))  # first maximum, as the engines' argmax
            out.append(tok)
    text = b""
    prev = prompt[0]
    for t in prompt[1:] + out:
        if t == BOS:
            break
        text += decode_piece(pieces, prev, t)
        prev = t
    text = text.decode("utf-8", errors="replace").encode("utf-8") + b"\n"
    print("prompt_ids:", " ".join(map(str, prompt)))
    print("ids:", " ".join(map(str, out)))
    print("text_b64:", base64.b64encode(text).decode())


if __name__ == "__main__":
    main()
