#!/usr/bin/python3
"""Makes tideserve's BERT test fixtures and its bundled default model, with golden outputs.

Run with Debian's interpreter, which sees python3-torch and numpy:

    /usr/bin/python3 tools/make_fixture_model.py --all     # regenerate everything in place
    /usr/bin/python3 tools/make_fixture_model.py --check   # regenerate into a temp dir, compare

What it writes
--------------
For every fixture in FIXTURES a Hugging Face model directory under tests/fixtures/models/<name>/:

* ``config.json``: a BertModel config (model_type "bert", absolute positions, dropout fields as HF
  writes them; dropout plays no part at inference).
* ``model.safetensors``: random weights named as transformers' BertModel names them
  (``embeddings.word_embeddings.weight``, ``encoder.layer.N.attention.self.query.weight``, ...,
  optionally ``pooler.dense.*``), all optionally prefixed with ``bert.`` as in checkpoints saved from
  BertFor* heads. Stored as F32, F16 or BF16.
* ``vocab.txt``: exactly vocab_size lines ([PAD] [UNK] [CLS] [SEP] [MASK], then ``tokN``). The
  golden inputs are ids, so the vocabulary only has to have the right length.
* ``golden.safetensors``: a batch of ~8 sequences and the encoder's outputs for it (see below).

And the bundled default model models/tideserve-tiny-zh/ (config.json, model.safetensors in F16,
tokenizer_config.json). Its vocab.txt is made by tools/make_vocab.py and only read here, to size the
word embeddings. Its weights are random: it demonstrates the server, its embeddings mean nothing.

Weights
-------
Every tensor is drawn from its own ``torch.Generator`` seeded with crc32("<model>/<tensor name
without prefix>"), so a tensor does not change when another is added, and the files are
byte-identical from run to run. Scales are chosen so the numerics are not trivial: embeddings
N(0, 0.5^2) so the embedding LayerNorm sees varied rows, linear weights N(0, 0.08^2), except query
and key N(0, 0.12^2) so the softmax is not flat, and intermediate.dense N(0, 0.15^2) so the GELU
inputs reach |x| ~ 1-3, where erf GELU and its tanh approximation differ (using the wrong one moves
the goldens by ~4e-4 to 9e-4), biases N(0, 0.02^2), LayerNorm gammas 1 + 0.1 N(0,1) and betas
0.05 N(0,1). Weights are rounded to the file's dtype (round-to-nearest-even, by torch) BEFORE
anything is computed from them: the reference uses exactly the values in the file, widened to
float64.

Golden outputs and the reference
--------------------------------
The reference does not re-implement BERT; it is PyTorch's own ``nn.TransformerEncoderLayer``
(post-norm, batch_first, dropout 0, ``gelu`` = exact erf GELU, ``gelu_new`` / ``gelu_pytorch_tanh``
= the tanh approximation) with the HF weights copied in: in_proj = cat(query, key, value), out_proj =
attention.output.dense, norm1 = attention.output.LayerNorm, linear1 = intermediate.dense, linear2 =
output.dense, norm2 = output.LayerNorm. Everything runs in float64 in eval mode under no_grad. The
embeddings are LayerNorm(word[ids] + position[0..L) + token_type[type_ids]). The sequences, of
different lengths, run as one padded batch with ``src_key_padding_mask``; only real positions are
read back. Before anything is written, the reference is compared with a hand-written BERT forward
(explicit per-sequence softmax(QK^T / sqrt(d)) V, explicit GELU and LayerNorm formulas); the script
aborts if they differ by more than 1e-9.

golden.safetensors holds (T = total tokens, B = sequences, no padding anywhere):

  input_ids        I64 [T]     all sequences concatenated; each starts with the CLS id (2)
  token_type_ids   I64 [T]     0 for the first half of a sequence, 1 for the rest (all 0 if
                               type_vocab_size == 1)
  cu_seqlens       I64 [B+1]   0, len0, len0+len1, ...
  hidden_states.0  F32 [T, H]  embeddings after their LayerNorm
  hidden_states.k  F32 [T, H]  output of encoder layer k, k = 1..num_hidden_layers
  pooled_cls       F32 [B, H]  last hidden state of each sequence's first token
  pooled_mean      F32 [B, H]  mean of the last hidden states over each sequence's tokens
  pooler_output    F32 [B, H]  tanh(pooler.dense(CLS state)), only when the model has a pooler

Lengths include 1, 2, a few middling ones and max_position_embeddings exactly.

safetensors, written by hand
----------------------------
8-byte little-endian u64 N, then N bytes of JSON header
``{"<name>": {"dtype": "F32"|"F16"|"BF16"|"I64", "shape": [...], "data_offsets": [begin, end]},
..., "__metadata__": {"format": "pt"}}`` padded with spaces so 8 + N is a multiple of 8, then the
raw little-endian tensor data, packed in header order (offsets relative to the data start). Within
a file the tensors are ordered so every tensor starts at a multiple of its element size.

--check regenerates into a temporary directory and compares with the committed files: config.json,
model.safetensors, vocab.txt and tokenizer_config.json byte for byte; golden tensors by name, dtype
and shape, integers exactly, floats to 1e-6 max abs. It exits 1 on any drift or missing file.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_ROOT = os.path.join("tests", "fixtures", "models")
DEFAULT_MODEL_DIR = os.path.join("models", "tideserve-tiny-zh")

GOLDEN_TOLERANCE = 1e-6
REFERENCE_AGREEMENT = 1e-9
CLS_ID = 2  # position of [CLS] in the fixture vocab.txt

FIXTURES = [
    dict(name="bert_tiny_f32", hidden=32, heads=4, layers=2, intermediate=64, act="gelu",
         eps=1e-12, type_vocab=2, max_pos=64, vocab=128, dtype="F32", prefix="", pooler=True),
    dict(name="bert_gelu_new_f16", hidden=48, heads=3, layers=3, intermediate=80, act="gelu_new",
         eps=1e-5, type_vocab=1, max_pos=40, vocab=100, dtype="F16", prefix="bert.", pooler=True),
    dict(name="bert_tanh_bf16", hidden=64, heads=8, layers=1, intermediate=256,
         act="gelu_pytorch_tanh", eps=1e-6, type_vocab=2, max_pos=32, vocab=90, dtype="BF16",
         prefix="", pooler=False),
    dict(name="bert_wide_heads_f32", hidden=96, heads=2, layers=2, intermediate=384, act="gelu",
         eps=1e-12, type_vocab=2, max_pos=48, vocab=64, dtype="F32", prefix="", pooler=False),
]

DEFAULT_MODEL = dict(name="tideserve-tiny-zh", hidden=64, heads=4, layers=2, intermediate=256,
                     act="gelu", eps=1e-12, type_vocab=2, max_pos=512, vocab=None, dtype="F16",
                     prefix="", pooler=True)

TOKENIZER_CONFIG = {
    "do_lower_case": True,
    "tokenize_chinese_chars": True,
    "strip_accents": None,
    "model_max_length": 512,
    "tokenizer_class": "BertTokenizer",
}

TORCH_DTYPE_NAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh")


# ---------------------------------------------------------------------------------------------
# safetensors


def tensor_bytes(t, dtype):
    """Little-endian raw bytes of tensor `t` stored as safetensors `dtype`."""
    t = t.contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "I64":
        return t.to(torch.int64).numpy().astype("<i8").tobytes()
    raise ValueError(f"unsupported dtype {dtype}")


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, torch tensor); data packed in list order."""
    header = {}
    chunks = []
    offset = 0
    for name, dtype, t in tensors:
        data = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in chunks:
            f.write(data)


NUMPY_DTYPE = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8"}


def read_safetensors(path):
    """name -> (dtype, shape, numpy array); BF16 comes back widened to float32."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        arr = np.frombuffer(blob[base + begin:base + end], dtype=NUMPY_DTYPE[info["dtype"]])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = (info["dtype"], list(info["shape"]), arr.reshape(info["shape"]))
    return out


# ---------------------------------------------------------------------------------------------
# weights


def draw(model_name, tensor_name, shape, std, mean=0.0):
    g = torch.Generator()
    g.manual_seed(zlib.crc32(f"{model_name}/{tensor_name}".encode("utf-8")))
    return mean + std * torch.randn(*shape, generator=g, dtype=torch.float32)


def make_weights(spec):
    """Ordered list of (unprefixed name, float32 tensor) in HF BertModel naming."""
    m, h, i = spec["name"], spec["hidden"], spec["intermediate"]
    w = []

    linear_std = spec.get("linear_std")

    def add(name, shape, std, mean=0.0):
        if linear_std is not None and name.endswith(".weight") and len(shape) == 2 \
                and "embeddings" not in name:
            std = linear_std
        w.append((name, draw(m, name, shape, std, mean)))

    add("embeddings.word_embeddings.weight", (spec["vocab"], h), 0.5)
    add("embeddings.position_embeddings.weight", (spec["max_pos"], h), 0.5)
    add("embeddings.token_type_embeddings.weight", (spec["type_vocab"], h), 0.5)
    add("embeddings.LayerNorm.weight", (h,), 0.1, 1.0)
    add("embeddings.LayerNorm.bias", (h,), 0.05)
    for n in range(spec["layers"]):
        p = f"encoder.layer.{n}."
        for proj, std in (("query", 0.12), ("key", 0.12), ("value", 0.08)):
            add(p + f"attention.self.{proj}.weight", (h, h), std)
            add(p + f"attention.self.{proj}.bias", (h,), 0.02)
        add(p + "attention.output.dense.weight", (h, h), 0.08)
        add(p + "attention.output.dense.bias", (h,), 0.02)
        add(p + "attention.output.LayerNorm.weight", (h,), 0.1, 1.0)
        add(p + "attention.output.LayerNorm.bias", (h,), 0.05)
        add(p + "intermediate.dense.weight", (i, h), 0.15)
        add(p + "intermediate.dense.bias", (i,), 0.02)
        add(p + "output.dense.weight", (h, i), 0.08)
        add(p + "output.dense.bias", (h,), 0.02)
        add(p + "output.LayerNorm.weight", (h,), 0.1, 1.0)
        add(p + "output.LayerNorm.bias", (h,), 0.05)
    if spec["pooler"]:
        add("pooler.dense.weight", (h, h), 0.08)
        add("pooler.dense.bias", (h,), 0.02)
    return w


def round_to(t, dtype):
    """The float64 values a reader of the file sees after widening."""
    torch_dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    return t.to(torch_dtype).to(torch.float64)


def config_json(spec):
    cfg = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": spec["hidden"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "intermediate_size": spec["intermediate"],
        "hidden_act": spec["act"],
        "layer_norm_eps": spec["eps"],
        "max_position_embeddings": spec["max_pos"],
        "type_vocab_size": spec["type_vocab"],
        "vocab_size": spec["vocab"],
        "position_embedding_type": "absolute",
        "pad_token_id": 0,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "torch_dtype": TORCH_DTYPE_NAME[spec["dtype"]],
    }
    return json.dumps(cfg, indent=2) + "\n"


# ---------------------------------------------------------------------------------------------
# golden batch


def make_batch(spec):
    """Sequences (ids, type ids): lengths 1, 2, middling, and max_position_embeddings."""
    lengths = [5, 1, 13, spec["max_pos"], 2, 31, 8, 20]
    assert max(lengths) <= spec["max_pos"]
    g = torch.Generator()
    g.manual_seed(zlib.crc32(f"{spec['name']}/golden_batch".encode("utf-8")))
    seqs = []
    for length in lengths:
        ids = torch.randint(0, spec["vocab"], (length,), generator=g, dtype=torch.int64)
        ids[0] = CLS_ID
        types = torch.zeros(length, dtype=torch.int64)
        if spec["type_vocab"] == 2:
            types[(length + 1) // 2:] = 1
        seqs.append((ids, types))
    # make sure the last row of the word embeddings is read at least once
    seqs[3][0][-1] = spec["vocab"] - 1
    return seqs


# ---------------------------------------------------------------------------------------------
# reference: torch.nn.TransformerEncoderLayer


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def torch_reference(spec, w, seqs):
    """Per-layer hidden states [T, H] (list, index 0 = embeddings) and the pooler output."""
    h, eps = spec["hidden"], spec["eps"]
    lens = [len(ids) for ids, _ in seqs]
    b, lmax = len(seqs), max(lens)
    ids = torch.zeros(b, lmax, dtype=torch.int64)
    types = torch.zeros(b, lmax, dtype=torch.int64)
    pad = torch.ones(b, lmax, dtype=torch.bool)
    for s, (sid, stype) in enumerate(seqs):
        ids[s, :lens[s]] = sid
        types[s, :lens[s]] = stype
        pad[s, :lens[s]] = False

    x = (w["embeddings.word_embeddings.weight"][ids]
         + w["embeddings.position_embeddings.weight"][torch.arange(lmax)].unsqueeze(0)
         + w["embeddings.token_type_embeddings.weight"][types])
    x = F.layer_norm(x, (h,), w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"],
                     eps)

    activation = "gelu" if spec["act"] == "gelu" else gelu_tanh
    states = [x]
    for n in range(spec["layers"]):
        p = f"encoder.layer.{n}."
        layer = torch.nn.TransformerEncoderLayer(
            d_model=h, nhead=spec["heads"], dim_feedforward=spec["intermediate"], dropout=0.0,
            activation=activation, layer_norm_eps=eps, batch_first=True, norm_first=False)
        layer = layer.double().eval()
        sd = {
            "self_attn.in_proj_weight": torch.cat([w[p + f"attention.self.{k}.weight"]
                                                   for k in ("query", "key", "value")]),
            "self_attn.in_proj_bias": torch.cat([w[p + f"attention.self.{k}.bias"]
                                                 for k in ("query", "key", "value")]),
            "self_attn.out_proj.weight": w[p + "attention.output.dense.weight"],
            "self_attn.out_proj.bias": w[p + "attention.output.dense.bias"],
            "norm1.weight": w[p + "attention.output.LayerNorm.weight"],
            "norm1.bias": w[p + "attention.output.LayerNorm.bias"],
            "linear1.weight": w[p + "intermediate.dense.weight"],
            "linear1.bias": w[p + "intermediate.dense.bias"],
            "linear2.weight": w[p + "output.dense.weight"],
            "linear2.bias": w[p + "output.dense.bias"],
            "norm2.weight": w[p + "output.LayerNorm.weight"],
            "norm2.bias": w[p + "output.LayerNorm.bias"],
        }
        layer.load_state_dict(sd, strict=True)
        x = layer(x, src_key_padding_mask=pad)
        states.append(x)

    flat = [torch.cat([st[s, :lens[s]] for s in range(b)]) for st in states]
    pooler = None
    if spec["pooler"]:
        cls = states[-1][:, 0]
        pooler = torch.tanh(F.linear(cls, w["pooler.dense.weight"], w["pooler.dense.bias"]))
    return flat, pooler


# ---------------------------------------------------------------------------------------------
# independent check: BERT written out by hand, one sequence at a time, no padding


def hand_layer_norm(x, gamma, beta, eps):
    mean = x.sum(-1, keepdim=True) / x.shape[-1]
    centered = x - mean
    var = (centered * centered).sum(-1, keepdim=True) / x.shape[-1]
    return centered / torch.sqrt(var + eps) * gamma + beta


def hand_gelu(x, act):
    if act == "gelu":
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def hand_bert(spec, w, ids, types):
    h, heads, eps = spec["hidden"], spec["heads"], spec["eps"]
    d = h // heads
    length = len(ids)
    x = torch.stack([w["embeddings.word_embeddings.weight"][ids[t]]
                     + w["embeddings.position_embeddings.weight"][t]
                     + w["embeddings.token_type_embeddings.weight"][types[t]]
                     for t in range(length)])
    x = hand_layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    states = [x]
    for n in range(spec["layers"]):
        p = f"encoder.layer.{n}."

        def dense(v, name):
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q = dense(x, "attention.self.query")
        k = dense(x, "attention.self.key")
        v = dense(x, "attention.self.value")
        context = torch.empty(length, h, dtype=torch.float64)
        for a in range(heads):
            cols = slice(a * d, (a + 1) * d)
            scores = q[:, cols] @ k[:, cols].T / math.sqrt(d)
            e = torch.exp(scores - scores.max(dim=1, keepdim=True).values)
            probs = e / e.sum(dim=1, keepdim=True)
            context[:, cols] = probs @ v[:, cols]
        x = hand_layer_norm(dense(context, "attention.output.dense") + x,
                            w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
        inner = hand_gelu(dense(x, "intermediate.dense"), spec["act"])
        x = hand_layer_norm(dense(inner, "output.dense") + x, w[p + "output.LayerNorm.weight"],
                            w[p + "output.LayerNorm.bias"], eps)
        states.append(x)
    return states


def check_against_hand_written(spec, w, seqs, flat, pooler):
    """Max abs difference between the torch reference and the hand-written forward."""
    worst = 0.0
    start = 0
    for s, (ids, types) in enumerate(seqs):
        length = len(ids)
        hand = hand_bert(spec, w, ids.tolist(), types.tolist())
        for k, st in enumerate(hand):
            worst = max(worst, (flat[k][start:start + length] - st).abs().max().item())
        if pooler is not None:
            hp = torch.tanh(w["pooler.dense.weight"] @ hand[-1][0] + w["pooler.dense.bias"])
            worst = max(worst, (pooler[s] - hp).abs().max().item())
        start += length
    return worst


# ---------------------------------------------------------------------------------------------
# writers


def write_model(spec, out_dir):
    """Writes config.json and model.safetensors; returns the float64 weights as stored."""
    assert spec["act"] in ACTIVATIONS and spec["hidden"] % spec["heads"] == 0
    os.makedirs(out_dir, exist_ok=True)
    raw = make_weights(spec)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(config_json(spec))
    write_safetensors(os.path.join(out_dir, "model.safetensors"),
                      [(spec["prefix"] + name, spec["dtype"], t) for name, t in raw])
    return {name: round_to(t, spec["dtype"]) for name, t in raw}


def write_fixture(spec, out_dir):
    """Returns the max abs diff between the torch reference and the hand-written check."""
    w = write_model(spec, out_dir)
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        assert specials.index("[CLS]") == CLS_ID
        for i in range(spec["vocab"]):
            f.write((specials[i] if i < len(specials) else f"tok{i}") + "\n")

    seqs = make_batch(spec)
    with torch.no_grad():
        flat, pooler = torch_reference(spec, w, seqs)
        diff = check_against_hand_written(spec, w, seqs, flat, pooler)
    if not diff <= REFERENCE_AGREEMENT:
        sys.exit(f"error: {spec['name']}: torch reference and hand-written BERT differ by {diff:.3e}"
                 f" (> {REFERENCE_AGREEMENT:g}); not writing a golden")

    lens = [len(ids) for ids, _ in seqs]
    cu = torch.tensor([0] + list(np.cumsum(lens)), dtype=torch.int64)
    last = flat[-1]
    pooled_cls = torch.stack([last[cu[s]] for s in range(len(seqs))])
    pooled_mean = torch.stack([last[cu[s]:cu[s + 1]].mean(dim=0) for s in range(len(seqs))])
    tensors = [
        ("input_ids", "I64", torch.cat([ids for ids, _ in seqs])),
        ("token_type_ids", "I64", torch.cat([types for _, types in seqs])),
        ("cu_seqlens", "I64", cu),
    ]
    tensors += [(f"hidden_states.{k}", "F32", st) for k, st in enumerate(flat)]
    tensors += [("pooled_cls", "F32", pooled_cls), ("pooled_mean", "F32", pooled_mean)]
    if pooler is not None:
        tensors.append(("pooler_output", "F32", pooler))
    write_safetensors(os.path.join(out_dir, "golden.safetensors"), tensors)
    return diff


def write_default_model(out_dir, vocab_path):
    with open(vocab_path, "r", encoding="utf-8", newline="") as f:
        vocab_size = len(f.readlines())
    spec = dict(DEFAULT_MODEL, vocab=vocab_size)
    write_model(spec, out_dir)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    return vocab_size


# BERT-base shape as bert-base-chinese has it, for the benchmarks (bench/): generated into the build
# tree by `--bert-base OUT_DIR`, never committed. F32 weights, no golden; vocab.txt is the bundled
# model's vocabulary cut to 21128 lines (its first lines hold the special tokens).
# Every linear weight has std 0.04 here. The fixtures' per-projection values were chosen for
# hidden 32; on unit-variance inputs a logit q.k/sqrt(d) has std ~ std_w^2 * hidden, so at hidden
# 768 the fixtures' 0.12 would give logits with std ~11 (near one-hot attention, which amplifies
# any perturbation, fp32 rounding included, and which trained models do not show); 0.04 gives ~1.2.
BERT_BASE = dict(name="bert-base-shape-zh", hidden=768, heads=12, layers=12, intermediate=3072,
                 act="gelu", eps=1e-12, type_vocab=2, max_pos=512, vocab=21128, dtype="F32",
                 prefix="", pooler=True, linear_std=0.04)


def write_bert_base(out_dir):
    write_model(BERT_BASE, out_dir)
    with open(os.path.join(REPO, DEFAULT_MODEL_DIR, "vocab.txt"), "r", encoding="utf-8",
              newline="") as f:
        lines = f.readlines()[:BERT_BASE["vocab"]]
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8", newline="") as f:
        f.writelines(lines)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")


def generate(root):
    """Writes every fixture and the default model under `root` (a repo root or a temp dir)."""
    diffs = {}
    for spec in FIXTURES:
        diffs[spec["name"]] = write_fixture(spec, os.path.join(root, FIXTURE_ROOT, spec["name"]))
    write_default_model(os.path.join(root, DEFAULT_MODEL_DIR),
                        os.path.join(REPO, DEFAULT_MODEL_DIR, "vocab.txt"))
    return diffs


# ---------------------------------------------------------------------------------------------
# --check


def expected_files():
    files = []
    for spec in FIXTURES:
        for f in ("config.json", "model.safetensors", "vocab.txt", "golden.safetensors"):
            files.append(os.path.join(FIXTURE_ROOT, spec["name"], f))
    for f in ("config.json", "model.safetensors", "tokenizer_config.json"):
        files.append(os.path.join(DEFAULT_MODEL_DIR, f))
    return files


def compare_golden(fresh_path, committed_path):
    """Returns (problems, max float diff)."""
    fresh, committed = read_safetensors(fresh_path), read_safetensors(committed_path)
    problems = []
    worst = 0.0
    if sorted(fresh) != sorted(committed):
        problems.append(f"tensor names differ: expected {sorted(fresh)}, found {sorted(committed)}")
    for name in sorted(set(fresh) & set(committed)):
        (fd, fs, fa), (cd, cs, ca) = fresh[name], committed[name]
        if (fd, fs) != (cd, cs):
            problems.append(f"{name}: expected {fd}{fs}, found {cd}{cs}")
        elif fd == "I64":
            if not np.array_equal(fa, ca):
                problems.append(f"{name}: integer values differ")
        else:
            diff = float(np.max(np.abs(fa.astype(np.float64) - ca.astype(np.float64)),
                                initial=0.0))
            if not np.all(np.isfinite(ca)):
                problems.append(f"{name}: non-finite values")
            elif not diff <= GOLDEN_TOLERANCE:
                problems.append(f"{name}: max abs diff {diff:.3e} > {GOLDEN_TOLERANCE:g}")
            worst = max(worst, diff)
    return problems, worst


def check():
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="tideserve-fixtures-")
    try:
        diffs = generate(tmp)
        failures = 0
        worst_golden = 0.0
        for rel in expected_files():
            fresh, committed = os.path.join(tmp, rel), os.path.join(REPO, rel)
            if not os.path.isfile(committed):
                print(f"MISSING {rel}")
                failures += 1
                continue
            if rel.endswith("golden.safetensors"):
                try:
                    problems, worst = compare_golden(fresh, committed)
                except (ValueError, KeyError, struct.error) as e:
                    problems, worst = [f"unreadable: {e}"], 0.0
                worst_golden = max(worst_golden, worst)
                status = "ok" if not problems else "DRIFT"
                print(f"{status:7} {rel} (max abs diff {worst:.1e})")
                for p in problems:
                    print(f"          {p}")
                failures += bool(problems)
            else:
                with open(fresh, "rb") as a, open(committed, "rb") as b:
                    same = a.read() == b.read()
                print(f"{'ok' if same else 'DRIFT':7} {rel}" + ("" if same else
                                                                 " (bytes differ)"))
                failures += not same
        print(f"torch reference vs hand-written BERT: max abs diff "
              f"{max(diffs.values()):.2e} (limit {REFERENCE_AGREEMENT:g})")
        print(f"{len(expected_files()) - failures}/{len(expected_files())} files match; "
              f"golden max abs diff {worst_golden:.1e} (limit {GOLDEN_TOLERANCE:g}); "
              f"{time.monotonic() - t0:.1f} s")
        if failures:
            print("FAILED: committed fixtures drifted or are missing; regenerate with "
                  "/usr/bin/python3 tools/make_fixture_model.py --all and review the diff")
            return 1
        print("PASSED")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--all", action="store_true",
                      help="regenerate every fixture and the default model in place")
    mode.add_argument("--check", action="store_true",
                      help="regenerate into a temp dir and compare with the committed files")
    mode.add_argument("--bert-base", metavar="OUT_DIR",
                      help="write a BERT-base-shaped model (random F32 weights) for benchmarks")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)  # nothing should use the global RNG; pin it anyway
    if args.check:
        return check()
    if args.bert_base:
        write_bert_base(args.bert_base)
        print(f"wrote {args.bert_base} (BERT-base shape, F32)")
        return 0
    t0 = time.monotonic()
    diffs = generate(REPO)
    for name, diff in diffs.items():
        print(f"wrote {os.path.join(FIXTURE_ROOT, name)} (torch vs hand-written: {diff:.2e})")
    print(f"wrote {DEFAULT_MODEL_DIR} (config.json, model.safetensors, tokenizer_config.json)")
    print(f"{time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
