"""A torch BERT built from a tideserve model directory (config.json + model.safetensors), shared by
the benchmark's PyTorch peer, its ONNX export and the FastAPI seed service (transformers is not
packaged in Debian, so the module is written here from plain torch ops).

Run with Debian's interpreter (/usr/bin/python3), which sees python3-torch.
"""
import json
import os
import struct

import numpy as np
import torch
from torch import nn

NUMPY_DTYPE = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def load_weights(model_dir):
    """name (without a 'bert.' prefix) -> float32 torch tensor."""
    with open(os.path.join(model_dir, "model.safetensors"), "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        arr = np.frombuffer(blob, dtype=NUMPY_DTYPE[info["dtype"]], count=(end - begin) //
                            np.dtype(NUMPY_DTYPE[info["dtype"]]).itemsize, offset=8 + n + begin)
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        t = torch.from_numpy(arr.astype(np.float32)).reshape(info["shape"])
        out[name[5:] if name.startswith("bert.") else name] = t
    return out


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


class Embeddings(nn.Module):
    def __init__(self, cfg, w):
        super().__init__()
        h = cfg["hidden_size"]
        self.word = nn.Embedding.from_pretrained(w["embeddings.word_embeddings.weight"])
        self.position = nn.Embedding.from_pretrained(w["embeddings.position_embeddings.weight"])
        self.token_type = nn.Embedding.from_pretrained(w["embeddings.token_type_embeddings.weight"])
        self.norm = nn.LayerNorm(h, eps=cfg["layer_norm_eps"])
        self.norm.weight.data.copy_(w["embeddings.LayerNorm.weight"])
        self.norm.bias.data.copy_(w["embeddings.LayerNorm.bias"])

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.norm(x)


def _linear(w, name):
    weight = w[name + ".weight"]
    lin = nn.Linear(weight.shape[1], weight.shape[0])
    lin.weight.data.copy_(weight)
    lin.bias.data.copy_(w[name + ".bias"])
    return lin


def _norm(cfg, w, name):
    norm = nn.LayerNorm(cfg["hidden_size"], eps=cfg["layer_norm_eps"])
    norm.weight.data.copy_(w[name + ".weight"])
    norm.bias.data.copy_(w[name + ".bias"])
    return norm


class Layer(nn.Module):
    """One BERT layer from plain ops (exports to ONNX as the usual BERT graph)."""

    def __init__(self, cfg, w, i):
        super().__init__()
        p = f"encoder.layer.{i}."
        self.heads = cfg["num_attention_heads"]
        self.q = _linear(w, p + "attention.self.query")
        self.k = _linear(w, p + "attention.self.key")
        self.v = _linear(w, p + "attention.self.value")
        self.o = _linear(w, p + "attention.output.dense")
        self.norm1 = _norm(cfg, w, p + "attention.output.LayerNorm")
        self.up = _linear(w, p + "intermediate.dense")
        self.down = _linear(w, p + "output.dense")
        self.norm2 = _norm(cfg, w, p + "output.LayerNorm")
        self.tanh_gelu = cfg["hidden_act"] != "gelu"

    def forward(self, x, mask_bias):
        b, l, h = x.shape
        d = h // self.heads

        def split(t):
            return t.view(b, l, self.heads, d).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (d ** 0.5) + mask_bias
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, l, h)
        x = self.norm1(x + self.o(ctx))
        f = self.up(x)
        f = nn.functional.gelu(f, approximate="tanh" if self.tanh_gelu else "none")
        return self.norm2(x + self.down(f))


class Bert(nn.Module):
    """input_ids, token_type_ids, attention_mask [B, L] -> last_hidden_state [B, L, H]."""

    def __init__(self, cfg, w):
        super().__init__()
        self.embeddings = Embeddings(cfg, w)
        self.layers = nn.ModuleList(Layer(cfg, w, i) for i in range(cfg["num_hidden_layers"]))

    def forward(self, input_ids, token_type_ids, attention_mask):
        x = self.embeddings(input_ids, token_type_ids)
        mask_bias = (1.0 - attention_mask.to(x.dtype))[:, None, None, :] * -10000.0
        for layer in self.layers:
            x = layer(x, mask_bias)
        return x


class FastPathBert(nn.Module):
    """The same BERT on torch.nn.TransformerEncoder, whose inference fast path (torch >= 1.12:
    fused kernels, nested tensors for padded batches) runs under torch.inference_mode()."""

    def __init__(self, cfg, w):
        super().__init__()
        h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
        assert cfg["hidden_act"] == "gelu", "the fast path supports relu and (erf) gelu only"
        self.embeddings = Embeddings(cfg, w)
        layer = nn.TransformerEncoderLayer(h, heads, cfg["intermediate_size"], dropout=0.0,
                                           activation="gelu", layer_norm_eps=cfg["layer_norm_eps"],
                                           batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, cfg["num_hidden_layers"],
                                             enable_nested_tensor=True)
        for i, mod in enumerate(self.encoder.layers):
            p = f"encoder.layer.{i}."
            mod.self_attn.in_proj_weight.data.copy_(torch.cat(
                [w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]))
            mod.self_attn.in_proj_bias.data.copy_(torch.cat(
                [w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")]))
            mod.self_attn.out_proj.weight.data.copy_(w[p + "attention.output.dense.weight"])
            mod.self_attn.out_proj.bias.data.copy_(w[p + "attention.output.dense.bias"])
            mod.norm1.weight.data.copy_(w[p + "attention.output.LayerNorm.weight"])
            mod.norm1.bias.data.copy_(w[p + "attention.output.LayerNorm.bias"])
            mod.linear1.weight.data.copy_(w[p + "intermediate.dense.weight"])
            mod.linear1.bias.data.copy_(w[p + "intermediate.dense.bias"])
            mod.linear2.weight.data.copy_(w[p + "output.dense.weight"])
            mod.linear2.bias.data.copy_(w[p + "output.dense.bias"])
            mod.norm2.weight.data.copy_(w[p + "output.LayerNorm.weight"])
            mod.norm2.bias.data.copy_(w[p + "output.LayerNorm.bias"])

    def forward(self, input_ids, token_type_ids, attention_mask):
        x = self.embeddings(input_ids, token_type_ids)
        pad = attention_mask == 0
        if not bool(pad.any()):
            return self.encoder(x)
        out = self.encoder(x, src_key_padding_mask=pad)
        return out.to_padded_tensor(0.0, x.shape) if out.is_nested else out


def read_workload(path):
    """-> list of batches, each a list of id lists (tideserve's workload file, int32 LE)."""
    words = np.fromfile(path, dtype="<i4")
    pos = 0
    batches = []
    nb = int(words[pos]); pos += 1
    for _ in range(nb):
        ns = int(words[pos]); pos += 1
        lens = words[pos:pos + ns].tolist(); pos += ns
        seqs = []
        for n in lens:
            seqs.append(words[pos:pos + n].tolist()); pos += n
        batches.append(seqs)
    return batches


def pad_batch(seqs):
    """Pads to the longest sequence of the batch -> (input_ids, token_type_ids, attention_mask)."""
    longest = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), longest, dtype=torch.int64)
    mask = torch.zeros(len(seqs), longest, dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.int64)
        mask[i, :len(s)] = 1
    return ids, torch.zeros_like(ids), mask
