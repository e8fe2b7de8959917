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

For every entry in KINDS a task-shaped model directory under tests/fixtures/kinds/<name>/, with a
real word vocabulary so tests can send text, and a ``golden.json`` (see "Task-kind fixtures").

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
float64. Heads follow the same rule: a sentence-transformers Dense layer's ``linear.weight`` is
seeded with "<model>/<module path>/linear.weight" and drawn N(0, 0.3^2) (so tanh is not flat),
``linear.bias`` N(0, 0.1^2); a classifier's ``classifier.weight`` N(0, 0.5^2) and
``classifier.bias`` N(0, 0.1^2).

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

Pooling follows sentence-transformers' Pooling module (the reference, ``st_pooling``, works like it
on a right-padded batch with an attention mask; sentence-transformers itself is not installed here,
so this is written from its documented semantics). With the mask m_t of each token (0 for padding
and for excluded leading tokens, see pool_skip below):

  cls                   state of token 0 (whatever the mask says)
  mean                  sum_t m_t x_t / sum_t m_t
  max                   elementwise max over tokens with m_t = 1
  mean_sqrt_len_tokens  sum_t m_t x_t / sqrt(sum_t m_t)
  weightedmean          sum_t w_t x_t / sum_t w_t with w_t = (t + 1) m_t, t the 0-based position
                        in the sequence (excluded tokens keep nothing, the rest keep weight t + 1)
  lasttoken             state of the last token with m_t = 1

It is cross-checked against ``loop_pooling``, explicit Python loops with math.fsum over exactly the
tokens t >= skip of each sequence (no mask, no padding); the script aborts above 1e-9.

golden.safetensors holds (T = total tokens, B = sequences, no padding anywhere):

  input_ids        I64 [T]     all sequences concatenated; each starts with the CLS id (2)
  token_type_ids   I64 [T]     0 for the first half of a sequence, 1 for the rest (all 0 if
                               type_vocab_size == 1)
  cu_seqlens       I64 [B+1]   0, len0, len0+len1, ...
  pool_skip        I64 [B]     leading tokens excluded from the *_skip poolings: POOL_SKIP,
                               each capped at len - 1 so at least one token remains. This is what
                               sentence-transformers does for include_prompt=false: the attention
                               mask of the first prompt_length tokens is set to 0 before pooling.
  hidden_states.0  F32 [T, H]  embeddings after their LayerNorm
  hidden_states.k  F32 [T, H]  output of encoder layer k, k = 1..num_hidden_layers
  pooled_cls       F32 [B, H]  last hidden state of each sequence's first token
  pooled_mean      F32 [B, H]  mean of the last hidden states over each sequence's tokens
  pooler_output    F32 [B, H]  tanh(pooler.dense(CLS state)), only when the model has a pooler
  pooled_max                   F32 [B, H]  the poolings above over all of a sequence's tokens
  pooled_mean_sqrt_len_tokens  F32 [B, H]
  pooled_weightedmean          F32 [B, H]
  pooled_lasttoken             F32 [B, H]
  pooled_mean_skip                  F32 [B, H]  the same over tokens t >= pool_skip only
  pooled_max_skip                   F32 [B, H]  (weightedmean keeps the absolute weights t + 1;
  pooled_mean_sqrt_len_tokens_skip  F32 [B, H]  mean_sqrt_len divides by sqrt of the count that
  pooled_weightedmean_skip          F32 [B, H]  remains; cls and lasttoken ignore the skip, so
                                                they have no _skip variant)

All poolings are computed in float64 from the last hidden states and stored as F32. Lengths include
1, 2, a few middling ones and max_position_embeddings exactly.

Task-kind fixtures (tests/fixtures/kinds/<name>/)
-------------------------------------------------
Each KINDS entry is a small F32 BERT (hidden 32, 4 heads, 2 layers, intermediate 64, gelu, eps
1e-12, type_vocab 2, max_pos 64, pooler included; weights drawn as above with the directory name as
model name) laid out as sentence-transformers or transformers save it. All share KIND_VOCAB in
vocab.txt (id = line: [PAD] [UNK] [CLS] [SEP] [MASK], the punctuation : , . ? !, KIND_WORDS, then
the CJK characters 你 好 世 界 北 京; config.json's vocab_size is its line count) and
tokenizer_config.json = TOKENIZER_CONFIG (BertTokenizer, do_lower_case true).

  st_mean_dense_norm        modules Transformer (path "") -> Pooling mean -> Dense 32->16 with
                            bias, Tanh -> Normalize; prompts {"query": "query: ", "passage":
                            "passage: "}, no default prompt; max_seq_length 48
  st_mean_noprompt_default  Transformer -> Pooling mean with include_prompt false -> Normalize;
                            prompts {"query": "query: ", "passage": ""}, default_prompt_name
                            "query"; max_seq_length 32
  st_max_dense_identity     Transformer -> Pooling max -> Dense 32->24 without bias, Identity;
                            no prompts file, no sentence_bert_config.json (so max_seq_length is
                            min(max_position_embeddings, model_max_length) = 64)
  st_cls_subdir             the old layout: Transformer at path "0_Transformer" (config.json,
                            model.safetensors, vocab.txt, tokenizer_config.json and
                            sentence_bert_config.json with max_seq_length 40 live there) ->
                            Pooling cls; modules.json and 1_Pooling/ at the root
  bert_classifier           BertForSequenceClassification, id2label negative/neutral/positive,
                            single_label_classification
  bert_multilabel           BertForSequenceClassification, id2label sports/politics/tech/food,
                            multi_label_classification
  bert_reranker             cross-encoder: BertForSequenceClassification with one label
                            (LABEL_0), no problem_type, no sentence_bert_config.json

sentence-transformers directories hold modules.json, <idx>_Pooling/config.json (the eight keys in
the order sentence-transformers writes them), <idx>_Dense/config.json and
<idx>_Dense/model.safetensors (``linear.weight`` [out, in], ``linear.bias`` [out] when bias is
true), sentence_bert_config.json and config_sentence_transformers.json where listed, and a root
config.json (BertModel) with an unprefixed model.safetensors. sentence-transformers writes an empty
<idx>_Normalize/ directory; git cannot hold one, so none is written (modules.json still names it).
Classifier directories hold config.json (architectures, id2label, label2id, problem_type) and a
model.safetensors with every BERT tensor prefixed ``bert.`` (bert.pooler.dense.* included) plus the
unprefixed ``classifier.weight`` [num_labels, 32] and ``classifier.bias`` [num_labels], as
transformers saves BertForSequenceClassification.

Tokenization of the goldens is ``reference_tokenize``, a tiny reference tokenizer: lowercase, split
on whitespace, every ASCII punctuation character and every CJK character becomes its own piece, and
every piece must be a whole vocabulary entry (asserted, so no WordPiece splitting is ever needed);
a text is [CLS] pieces [SEP] with token_type_ids 0, a pair is [CLS] a [SEP] b [SEP] with
token_type_ids 0 for [CLS] a [SEP] and 1 for b [SEP]. The golden texts use only vocabulary words,
so on them this is exactly BERT's BasicTokenizer + WordPiece (a regular expression re-splits every
text as a second opinion). No golden text is truncated: each fits max_seq_length (asserted).

The reference numerics are written from the documented semantics of sentence-transformers and of
transformers' BertForSequenceClassification (neither is installed here); the encoder is
torch_reference above, in float64.

* Embedding (SentenceTransformer.encode): the prompt is prompts[prompt_name] if a prompt_name is
  given, else prompts[default_prompt_name] if that is set, else none. The model input is prompt +
  text (plain string concatenation). prompt_length = (tokens of the prompt alone, with [CLS] and
  [SEP]) - 1, i.e. [CLS] plus the prompt's own tokens; with include_prompt false the first
  prompt_length tokens are masked out of the pooling (cls ignores this). An empty prompt ("") counts
  as no prompt: nothing is prepended and nothing is excluded, as in sentence-transformers v5 (``if
  prompt is not None and len(prompt) > 0``; earlier releases tested only ``prompt is not None``
  and so masked out [CLS], prompt_length 1, for an empty prompt). Then Pooling
  (mode as configured) -> Dense (y = act(W x + b), act Tanh or Identity) -> Normalize (x / max(|x|,
  1e-12)), each only where modules.json declares it; no normalization otherwise.
* Classifier: logits = classifier(tanh(pooler.dense(h_CLS))) (dropout off); probabilities are
  softmax(logits) for single_label_classification, sigmoid(logits) for multi_label_classification.
* Reranker: the same logits for each (query, document) pair, one per pair; score = sigmoid(logit),
  as sentence-transformers' CrossEncoder applies to a one-label model.

Each is cross-checked before anything is written against a second computation that shares no code
path with the first: hand_bert for the hidden states (one sequence at a time) and explicit Python
loops with math.fsum / math.tanh / math.exp for pooling, Dense, Normalize, pooler, classifier,
softmax and sigmoid; the script aborts if any output differs by more than 1e-9.

golden.json (UTF-8, CJK written as is, not escaped; one key per line and every list of scalars
on one line; floats are the float64 values written with repr(), so they read back exactly; ids are
ints):

  {"kind": "embedding" | "classifier" | "reranker",
   "hidden_size": 32,
   "output_size": embedding dimension after Dense (embedding) or num_labels,
   "max_seq_length": effective sentence-transformers max_seq_length (embedding only),
   "labels": id2label in id order (classifier only),
   "cases": [...]}

  embedding case:  {"name", "texts": [text], "prompt_name": null | "query" | "passage",
                    "input_ids": [[id]], "token_type_ids": [[0]] (prompt included in both),
                    "prompt_length": [n per text] (tokens excluded from pooling; 0 when nothing is
                    excluded), "outputs": [[float]] (the pipeline output per text)}
  classifier case: {"name", "texts", "prompt_name": null, "input_ids", "token_type_ids",
                    "outputs": [[logit per label]], "probabilities": [[float per label]]}
  reranker case:   {"name", "query", "texts": [document], "input_ids", "token_type_ids" (of each
                    (query, document) pair), "outputs": [[logit]] per pair, "scores": [sigmoid per
                    pair]}

Cases, in this order. Embedding: "plain" (4 texts, prompt_name null, so for
st_mean_noprompt_default the default prompt applies); then for every prompt in
config_sentence_transformers.json, in its order, "<name>_prompt" (4 other texts, prompt_name
<name>) for a non-empty prompt or "explicit_<name>" (the plain texts again, prompt_name <name>) for
an empty one, so st_mean_dense_norm has query_prompt and passage_prompt, st_mean_noprompt_default
query_prompt and explicit_passage; last "max_len", one text (prompt_name null) whose input_ids,
with [CLS], [SEP] and the prompt that applies, are exactly max_seq_length long. Classifier:
"plain" (5 texts) and "max_len" (one text of exactly max_position_embeddings = 64 tokens).
Reranker: "capital" and "weather", one query and 5 documents each, every pair of a different
length.

``--all`` rewrites each tests/fixtures/kinds/<name>/ from scratch (removing it first: it holds
generated files only).

safetensors, written by hand
----------------------------
8-byte little-endian u64 N, then N bytes of JSON header
``{"<name>": {"dtype": "F32"|"F16"|"BF16"|"I64", "shape": [...], "data_offsets": [begin, end]},
..., "__metadata__": {"format": "pt"}}`` padded with spaces so 8 + N is a multiple of 8, then the
raw little-endian tensor data, packed in header order (offsets relative to the data start). Within
a file the tensors are ordered so every tensor starts at a multiple of its element size.

--check regenerates into a temporary directory and compares with the committed files: config.json,
model.safetensors, vocab.txt and tokenizer_config.json byte for byte, and under tests/fixtures/kinds
every file byte for byte except golden.json; golden tensors by name, dtype and shape, integers
exactly, floats to 1e-6 max abs; golden.json by structure, with keys, strings and integers exactly
and floats to 1e-6. It exits 1 on any drift, on a missing file, and on a committed file under
tests/fixtures/kinds that the generator does not write.

``--bert-base OUT_DIR`` and ``--bert-base-reranker OUT_DIR`` write BERT-base-shaped models for the
benchmarks (see BERT_BASE below); they are never committed.
"""
import argparse
import json
import math
import os
import re
import shutil
import string
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
KINDS_ROOT = os.path.join("tests", "fixtures", "kinds")
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

# Leading tokens excluded from the *_skip poolings of golden.safetensors, per sequence of make_batch
# (each capped at its length - 1).
POOL_SKIP = [2, 0, 3, 0, 1, 5, 0, 4]

# ---- task-kind fixtures (tests/fixtures/kinds/<name>/) ----

KIND_PUNCT = [":", ",", ".", "?", "!"]
KIND_WORDS = [
    "query", "passage", "what", "is", "the", "capital", "of", "france", "paris", "berlin",
    "germany", "city", "a", "an", "in", "cat", "dog", "sat", "on", "mat",
    "weather", "today", "sunny", "rain", "i", "you", "my", "like", "love", "tea",
    "coffee", "food", "pizza", "apple", "good", "bad", "movie", "was", "great", "terrible",
    "fine", "it", "this", "that", "are", "how", "book", "read", "and", "or",
    "not", "very", "team", "won", "game", "vote", "election", "phone", "new", "river",
]
KIND_CJK = ["你", "好", "世", "界", "北", "京"]
KIND_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + KIND_PUNCT + KIND_WORDS + KIND_CJK
KIND_TOKEN_ID = {tok: i for i, tok in enumerate(KIND_VOCAB)}
SEP_ID = KIND_TOKEN_ID["[SEP]"]


def kind_encoder(name, prefix):
    """The transformer shared by every task-kind fixture; `name` seeds its weights."""
    return dict(name=name, hidden=32, heads=4, layers=2, intermediate=64, act="gelu", eps=1e-12,
                type_vocab=2, max_pos=64, vocab=len(KIND_VOCAB), dtype="F32", prefix=prefix,
                pooler=True)


# Embedding texts: "plain" and "query_prompt" cases (4 texts each); mixed case, punctuation, CJK.
KIND_PLAIN_TEXTS = ["The cat sat on the mat.", "what is the capital of france?", "你好世界",
                    "Paris"]
KIND_QUERY_TEXTS = ["what is the capital of germany?", "Berlin is a very good city, not bad!",
                    "is it sunny today?", "北京"]
KIND_PASSAGE_TEXTS = ["paris is the capital of france.", "i like tea", "rain",
                      "the weather today is sunny and my dog sat on the mat."]
# Filler that "max_len" cases repeat to reach an exact token count.
KIND_FILLER = "i read a very good book and it was great , the dog sat on the mat .".split()

KINDS = [
    dict(name="st_mean_dense_norm", kind="embedding", transformer_path="", pooling="mean",
         include_prompt=True, dense=dict(out_features=16, bias=True, activation="tanh"),
         normalize=True, sbert_config={"max_seq_length": 48, "do_lower_case": False},
         st_config={"prompts": {"query": "query: ", "passage": "passage: "},
                    "default_prompt_name": None, "similarity_fn_name": "cosine"}),
    dict(name="st_mean_noprompt_default", kind="embedding", transformer_path="", pooling="mean",
         include_prompt=False, dense=None, normalize=True,
         sbert_config={"max_seq_length": 32, "do_lower_case": False},
         st_config={"prompts": {"query": "query: ", "passage": ""},
                    "default_prompt_name": "query"}),
    dict(name="st_max_dense_identity", kind="embedding", transformer_path="", pooling="max",
         include_prompt=True, dense=dict(out_features=24, bias=False, activation="identity"),
         normalize=False, sbert_config=None, st_config=None),
    dict(name="st_cls_subdir", kind="embedding", transformer_path="0_Transformer", pooling="cls",
         include_prompt=True, dense=None, normalize=False,
         sbert_config={"max_seq_length": 40, "do_lower_case": False}, st_config=None),
    dict(name="bert_classifier", kind="classifier", labels=["negative", "neutral", "positive"],
         problem_type="single_label_classification",
         texts=["this movie was great!", "the movie was terrible.", "it was fine", "I love pizza",
                "你好"]),
    dict(name="bert_multilabel", kind="classifier", labels=["sports", "politics", "tech", "food"],
         problem_type="multi_label_classification",
         texts=["the team won the game!", "vote in the election.", "my new phone is great",
                "pizza and apple are good food, i like food", "a new game on my phone"]),
    dict(name="bert_reranker", kind="reranker", labels=["LABEL_0"], problem_type=None,
         pairs=[("capital", "what is the capital of france?",
                 ["Paris is the capital of france.", "berlin is a city in germany, not france.",
                  "the cat sat.", "paris",
                  "the capital of france is not berlin, it is paris, a very good city."]),
                ("weather", "is the weather good today?",
                 ["it is sunny today.", "rain, rain and rain.", "I like tea.",
                  "the weather today is very good and sunny, not bad! i like it.", "北京"])]),
]

# sentence-transformers' Pooling config keys, in the order it writes them, and the mode each sets.
POOLING_KEYS = [("pooling_mode_cls_token", "cls"), ("pooling_mode_mean_tokens", "mean"),
                ("pooling_mode_max_tokens", "max"),
                ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"),
                ("pooling_mode_weightedmean_tokens", "weightedmean"),
                ("pooling_mode_lasttoken", "lasttoken")]
POOLING_MODES = [mode for _, mode in POOLING_KEYS]
ST_ACTIVATION = {"tanh": "torch.nn.modules.activation.Tanh",
                 "identity": "torch.nn.modules.linear.Identity"}
ST_MODULE_TYPE = {name: "sentence_transformers.models." + name
                  for name in ("Transformer", "Pooling", "Dense", "Normalize")}

DENSE_STD, DENSE_BIAS_STD = 0.3, 0.1
CLASSIFIER_STD, CLASSIFIER_BIAS_STD = 0.5, 0.1

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
    """BertModel config; with spec["labels"] a BertForSequenceClassification one (id2label,
    label2id and, where spec["problem_type"] is set, problem_type appended at the end)."""
    cfg = {
        "architectures": [spec.get("architecture", "BertModel")],
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
    if spec.get("labels"):
        cfg["id2label"] = {str(i): label for i, label in enumerate(spec["labels"])}
        cfg["label2id"] = {label: i for i, label in enumerate(spec["labels"])}
        if spec.get("problem_type"):
            cfg["problem_type"] = spec["problem_type"]
    return json.dumps(cfg, indent=2) + "\n"


def classifier_spec(spec, labels, problem_type):
    """`spec` as a BertForSequenceClassification checkpoint: bert.-prefixed, with a pooler."""
    return dict(spec, prefix="bert.", pooler=True, architecture="BertForSequenceClassification",
                labels=list(labels), problem_type=problem_type)


def make_classifier_weights(spec):
    """classifier.weight [num_labels, H] and classifier.bias [num_labels] (unprefixed, as
    transformers saves them); std from spec["classifier_std"] / ["classifier_bias_std"]."""
    n, h = len(spec["labels"]), spec["hidden"]
    return [("classifier.weight", draw(spec["name"], "classifier.weight", (n, h),
                                       spec.get("classifier_std", CLASSIFIER_STD))),
            ("classifier.bias", draw(spec["name"], "classifier.bias", (n,),
                                     spec.get("classifier_bias_std", CLASSIFIER_BIAS_STD)))]


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
# pooling: sentence-transformers' Pooling on a padded batch, and explicit loops as its check


def pad_batch(flat, lens):
    """[T, H] rows of sequences of lengths `lens` -> right-padded [B, L, H] and mask [B, L]."""
    b, lmax, h = len(lens), max(lens), flat.shape[-1]
    tokens = torch.zeros(b, lmax, h, dtype=torch.float64)
    mask = torch.zeros(b, lmax, dtype=torch.float64)
    start = 0
    for s, length in enumerate(lens):
        tokens[s, :length] = flat[start:start + length]
        mask[s, :length] = 1.0
        start += length
    return tokens, mask


def st_pooling(tokens, mask, mode, skip):
    """sentence-transformers' Pooling for one mode: tokens [B, L, H] right-padded, mask [B, L],
    skip[s] leading tokens of sequence s masked out first (include_prompt=false)."""
    mask = mask.clone()
    for s, k in enumerate(skip):
        mask[s, :k] = 0.0
    b, lmax, _ = tokens.shape
    m = mask.unsqueeze(-1)
    if mode == "cls":
        return tokens[:, 0]
    if mode == "max":
        return tokens.masked_fill(m == 0, -1e9).max(dim=1).values
    if mode in ("mean", "mean_sqrt_len_tokens"):
        total = (tokens * m).sum(dim=1)
        count = m.sum(dim=1).clamp(min=1e-9)
        return total / count if mode == "mean" else total / torch.sqrt(count)
    if mode == "weightedmean":
        weights = torch.arange(1, lmax + 1, dtype=torch.float64).view(1, lmax, 1) * m
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    if mode == "lasttoken":
        values, flipped = mask.flip(1).max(dim=1)
        flipped = torch.where(values == 0, torch.full_like(flipped, lmax - 1), flipped)
        return tokens[torch.arange(b), lmax - flipped - 1]
    raise ValueError(f"unknown pooling mode {mode}")


def loop_pooling(rows, mode, skip):
    """The same for one sequence, as plain loops: rows = list of per-token lists of floats;
    the pooled tokens are exactly t = skip .. len(rows) - 1."""
    keep = range(skip, len(rows))
    assert len(keep) >= 1
    if mode == "cls":
        return list(rows[0])
    if mode == "lasttoken":
        return list(rows[-1])
    out = []
    for j in range(len(rows[0])):
        if mode == "max":
            v = rows[keep[0]][j]
            for t in keep:
                v = rows[t][j] if rows[t][j] > v else v
        elif mode == "mean":
            v = math.fsum(rows[t][j] for t in keep) / len(keep)
        elif mode == "mean_sqrt_len_tokens":
            v = math.fsum(rows[t][j] for t in keep) / math.sqrt(len(keep))
        elif mode == "weightedmean":
            v = math.fsum((t + 1) * rows[t][j] for t in keep) / math.fsum(t + 1 for t in keep)
        else:
            raise ValueError(f"unknown pooling mode {mode}")
        out.append(v)
    return out


def max_abs_diff(a, b):
    """Max abs difference of two equally shaped nested lists / tensors of floats."""
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item() if a.numel() else 0.0


def require_agreement(name, what, diff):
    if not diff <= REFERENCE_AGREEMENT:
        sys.exit(f"error: {name}: {what} differ by {diff:.3e} (> {REFERENCE_AGREEMENT:g}); "
                 f"not writing a golden")


# Pooled goldens of golden.safetensors: (tensor name, mode, skipped?) after pooled_cls/pooled_mean.
EXTRA_POOLED = [("pooled_max", "max", False),
                ("pooled_mean_sqrt_len_tokens", "mean_sqrt_len_tokens", False),
                ("pooled_weightedmean", "weightedmean", False),
                ("pooled_lasttoken", "lasttoken", False),
                ("pooled_mean_skip", "mean", True),
                ("pooled_max_skip", "max", True),
                ("pooled_mean_sqrt_len_tokens_skip", "mean_sqrt_len_tokens", True),
                ("pooled_weightedmean_skip", "weightedmean", True)]


# ---------------------------------------------------------------------------------------------
# writers


def write_model(spec, out_dir):
    """Writes config.json and model.safetensors; returns the float64 weights as stored, by
    unprefixed name. With spec["labels"] the classifier head is appended, unprefixed."""
    assert spec["act"] in ACTIVATIONS and spec["hidden"] % spec["heads"] == 0
    os.makedirs(out_dir, exist_ok=True)
    raw = make_weights(spec)
    head = make_classifier_weights(spec) if spec.get("labels") else []
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(config_json(spec))
    write_safetensors(os.path.join(out_dir, "model.safetensors"),
                      [(spec["prefix"] + name, spec["dtype"], t) for name, t in raw]
                      + [(name, spec["dtype"], t) for name, t in head])
    return {name: round_to(t, spec["dtype"]) for name, t in raw + head}


def write_fixture(spec, out_dir):
    """Returns the max abs diff between the torch reference and the hand-written check, and
    between st_pooling and loop_pooling."""
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
    require_agreement(spec["name"], "torch reference and hand-written BERT", diff)

    lens = [len(ids) for ids, _ in seqs]
    assert len(POOL_SKIP) == len(lens)
    skip = [min(k, length - 1) for k, length in zip(POOL_SKIP, lens)]
    cu = torch.tensor([0] + list(np.cumsum(lens)), dtype=torch.int64)
    last = flat[-1]
    pooled_cls = torch.stack([last[cu[s]] for s in range(len(seqs))])
    pooled_mean = torch.stack([last[cu[s]:cu[s + 1]].mean(dim=0) for s in range(len(seqs))])
    tokens, mask = pad_batch(last, lens)
    extra = []
    rows = [last[cu[s]:cu[s + 1]].tolist() for s in range(len(seqs))]
    pool_diff = max(max_abs_diff(pooled_cls, [loop_pooling(r, "cls", 0) for r in rows]),
                    max_abs_diff(pooled_mean, [loop_pooling(r, "mean", 0) for r in rows]))
    for name, mode, skipped in EXTRA_POOLED:
        k = skip if skipped else [0] * len(lens)
        pooled = st_pooling(tokens, mask, mode, k)
        check = [loop_pooling(r, mode, ks) for r, ks in zip(rows, k)]
        pool_diff = max(pool_diff, max_abs_diff(pooled, check))
        extra.append((name, "F32", pooled))
    require_agreement(spec["name"], "st_pooling and loop_pooling", pool_diff)

    tensors = [
        ("input_ids", "I64", torch.cat([ids for ids, _ in seqs])),
        ("token_type_ids", "I64", torch.cat([types for _, types in seqs])),
        ("cu_seqlens", "I64", cu),
        ("pool_skip", "I64", torch.tensor(skip, dtype=torch.int64)),
    ]
    tensors += [(f"hidden_states.{k}", "F32", st) for k, st in enumerate(flat)]
    tensors += [("pooled_cls", "F32", pooled_cls), ("pooled_mean", "F32", pooled_mean)]
    if pooler is not None:
        tensors.append(("pooler_output", "F32", pooler))
    tensors += extra
    write_safetensors(os.path.join(out_dir, "golden.safetensors"), tensors)
    return max(diff, pool_diff)


def write_default_model(out_dir, vocab_path):
    with open(vocab_path, "r", encoding="utf-8", newline="") as f:
        vocab_size = len(f.readlines())
    spec = dict(DEFAULT_MODEL, vocab=vocab_size)
    write_model(spec, out_dir)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8",
              newline="\n") as f:
        f.write(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
    return vocab_size


# ---------------------------------------------------------------------------------------------
# task-kind fixtures: tokenizer


def is_cjk(ch):
    """The code point ranges BERT's BasicTokenizer treats as CJK characters."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
        (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))


def reference_tokenize(text):
    """The tiny reference tokenizer of the task-kind goldens (NOT a general BERT tokenizer):
    lowercase, split on whitespace, each ASCII punctuation or CJK character its own piece; every
    piece must be a whole KIND_VOCAB entry. On such texts it equals BERT WordPiece."""
    pieces = []
    for word in text.lower().split():
        current = ""
        for ch in word:
            if ch in string.punctuation or is_cjk(ch):
                if current:
                    pieces.append(current)
                current = ""
                pieces.append(ch)
            else:
                current += ch
        if current:
            pieces.append(current)
    # a second opinion, by regular expression: CJK char | other non-word char | run of word chars
    assert pieces == re.findall(r"[\u4e00-\u9fff]|[^\w\s]|\w+", text.lower()), text
    for piece in pieces:
        assert piece in KIND_TOKEN_ID, f"{piece!r} (in {text!r}) is not in KIND_VOCAB"
    return pieces


def encode_text(text):
    """[CLS] text [SEP] -> (input_ids, token_type_ids) as lists."""
    ids = [CLS_ID] + [KIND_TOKEN_ID[p] for p in reference_tokenize(text)] + [SEP_ID]
    return ids, [0] * len(ids)


def encode_pair(first, second):
    """[CLS] first [SEP] second [SEP]; type ids 0 up to the first [SEP], 1 after it."""
    a, _ = encode_text(first)
    b = [KIND_TOKEN_ID[p] for p in reference_tokenize(second)] + [SEP_ID]
    return a + b, [0] * len(a) + [1] * len(b)


def filler_text(pieces):
    """A text of exactly `pieces` tokens (without [CLS]/[SEP]) cut from KIND_FILLER."""
    words = [KIND_FILLER[i % len(KIND_FILLER)] for i in range(pieces)]
    text = ""
    for word in words:
        text += word if word in KIND_PUNCT or not text else " " + word
    assert len(reference_tokenize(text)) == pieces
    return text


# ---------------------------------------------------------------------------------------------
# task-kind fixtures: reference pipelines (A) and their explicit-loop checks (B)


def as_seqs(encoded):
    return [(torch.tensor(ids, dtype=torch.int64), torch.tensor(types, dtype=torch.int64))
            for ids, types in encoded]


def encoder_states(spec, w, seqs):
    """torch_reference on `seqs`, checked against hand_bert; returns (flat states, pooler)."""
    flat, pooler = torch_reference(spec, w, seqs)
    require_agreement(spec["name"], "torch reference and hand-written BERT",
                      check_against_hand_written(spec, w, seqs, flat, pooler))
    return flat, pooler


def st_pipeline(kind, spec, w, dense, seqs, excluded):
    """A: sentence-transformers' Transformer -> Pooling -> [Dense] -> [Normalize], batched."""
    flat, _ = encoder_states(spec, w, seqs)
    tokens, mask = pad_batch(flat[-1], [len(ids) for ids, _ in seqs])
    x = st_pooling(tokens, mask, kind["pooling"], excluded)
    if kind["dense"]:
        x = F.linear(x, dense["linear.weight"], dense.get("linear.bias"))
        if kind["dense"]["activation"] == "tanh":
            x = torch.tanh(x)
    if kind["normalize"]:
        x = F.normalize(x, p=2.0, dim=1, eps=1e-12)
    return x.tolist()


def loop_pipeline(kind, spec, w, dense, seqs, excluded):
    """B: the same from hand_bert, one sequence at a time, with plain loops."""
    out = []
    for (ids, types), skip in zip(seqs, excluded):
        rows = hand_bert(spec, w, ids.tolist(), types.tolist())[-1].tolist()
        x = loop_pooling(rows, kind["pooling"], skip)
        if kind["dense"]:
            weight = dense["linear.weight"].tolist()
            bias = dense["linear.bias"].tolist() if "linear.bias" in dense else None
            y = []
            for i, row in enumerate(weight):
                v = math.fsum(row[j] * x[j] for j in range(len(x)))
                v = v + bias[i] if bias is not None else v
                y.append(math.tanh(v) if kind["dense"]["activation"] == "tanh" else v)
            x = y
        if kind["normalize"]:
            norm = math.sqrt(math.fsum(v * v for v in x))
            x = [v / max(norm, 1e-12) for v in x]
        out.append(x)
    return out


def classifier_logits(spec, w, seqs):
    """A: logits = classifier(pooler_output) from the batched torch reference."""
    _, pooler = encoder_states(spec, w, seqs)
    return F.linear(pooler, w["classifier.weight"], w["classifier.bias"])


def loop_logits(spec, w, seqs):
    """B: tanh(pooler.dense(h_CLS)) and the classifier as loops over hand_bert's CLS state."""
    pw, pb = w["pooler.dense.weight"].tolist(), w["pooler.dense.bias"].tolist()
    cw, cb = w["classifier.weight"].tolist(), w["classifier.bias"].tolist()
    out = []
    for ids, types in seqs:
        cls = hand_bert(spec, w, ids.tolist(), types.tolist())[-1][0].tolist()
        pooled = [math.tanh(math.fsum(pw[i][j] * cls[j] for j in range(len(cls))) + pb[i])
                  for i in range(len(pw))]
        out.append([math.fsum(cw[k][j] * pooled[j] for j in range(len(pooled))) + cb[k]
                    for k in range(len(cw))])
    return out


def loop_softmax(row):
    top = max(row)
    e = [math.exp(v - top) for v in row]
    total = math.fsum(e)
    return [v / total for v in e]


def loop_sigmoid(row):
    return [1.0 / (1.0 + math.exp(-v)) for v in row]


# ---------------------------------------------------------------------------------------------
# task-kind fixtures: golden.json cases


def st_max_seq_length(kind, spec):
    """sentence_bert_config.json's max_seq_length, else min(max_position_embeddings,
    model_max_length) as sentence-transformers' Transformer module takes it."""
    if kind["sbert_config"]:
        return kind["sbert_config"]["max_seq_length"]
    return min(spec["max_pos"], TOKENIZER_CONFIG["model_max_length"])


def resolve_prompt(kind, prompt_name):
    """SentenceTransformer.encode: prompts[prompt_name], else the default prompt, else None."""
    cfg = kind["st_config"] or {}
    prompts = cfg.get("prompts", {})
    if prompt_name is not None:
        return prompts[prompt_name]
    default = cfg.get("default_prompt_name")
    return prompts[default] if default is not None else None


def prompt_exclusion(kind, prompt):
    """Tokens masked out of the pooling: prompt_length = len([CLS] prompt [SEP]) - 1 when the
    pooling has include_prompt false; 0 otherwise and for no or an empty prompt."""
    if not prompt or kind["include_prompt"]:
        return 0
    return len(encode_text(prompt)[0]) - 1


def embedding_case_texts(kind, spec):
    """(case name, texts, prompt_name): plain, then per prompt name <name>_prompt (or
    explicit_<name> for an empty prompt, on the plain texts), then max_len."""
    cases = [("plain", KIND_PLAIN_TEXTS, None)]
    prompt_texts = {"query": KIND_QUERY_TEXTS, "passage": KIND_PASSAGE_TEXTS}
    for name, prompt in ((kind["st_config"] or {}).get("prompts") or {}).items():
        if prompt:
            cases.append((f"{name}_prompt", prompt_texts[name], name))
        else:
            cases.append((f"explicit_{name}", KIND_PLAIN_TEXTS, name))
    prompt = resolve_prompt(kind, None)
    prompt_pieces = len(reference_tokenize(prompt)) if prompt else 0
    cases.append(("max_len", [filler_text(st_max_seq_length(kind, spec) - 2 - prompt_pieces)],
                  None))
    return cases


def embedding_golden(kind, spec, w, dense):
    max_len = st_max_seq_length(kind, spec)
    cases = []
    for name, texts, prompt_name in embedding_case_texts(kind, spec):
        prompt = resolve_prompt(kind, prompt_name)
        encoded = [encode_text(prompt + t if prompt else t) for t in texts]
        if prompt:
            prompt_ids = encode_text(prompt)[0][:-1]
            assert all(ids[:len(prompt_ids)] == prompt_ids for ids, _ in encoded)
        assert all(len(ids) <= max_len for ids, _ in encoded), (kind["name"], name)
        if name == "max_len":
            assert len(encoded[0][0]) == max_len
        excluded = [prompt_exclusion(kind, prompt)] * len(texts)
        seqs = as_seqs(encoded)
        outputs = st_pipeline(kind, spec, w, dense, seqs, excluded)
        require_agreement(kind["name"], f"case {name}: st_pipeline and loop_pipeline",
                          max_abs_diff(outputs, loop_pipeline(kind, spec, w, dense, seqs,
                                                              excluded)))
        cases.append({"name": name, "texts": list(texts), "prompt_name": prompt_name,
                      "input_ids": [ids for ids, _ in encoded],
                      "token_type_ids": [types for _, types in encoded],
                      "prompt_length": excluded, "outputs": outputs})
    output_size = kind["dense"]["out_features"] if kind["dense"] else spec["hidden"]
    return {"kind": "embedding", "hidden_size": spec["hidden"], "output_size": output_size,
            "max_seq_length": max_len, "cases": cases}


def classifier_golden(kind, spec, w):
    multi = kind["problem_type"] == "multi_label_classification"
    cases = []
    for name, texts in (("plain", kind["texts"]), ("max_len", [filler_text(spec["max_pos"] - 2)])):
        encoded = [encode_text(t) for t in texts]
        assert all(len(ids) <= spec["max_pos"] for ids, _ in encoded)
        seqs = as_seqs(encoded)
        logits = classifier_logits(spec, w, seqs)
        probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
        check = loop_logits(spec, w, seqs)
        check_probs = [loop_sigmoid(r) if multi else loop_softmax(r) for r in check]
        require_agreement(kind["name"], f"case {name}: logits / probabilities and their loops",
                          max(max_abs_diff(logits, check), max_abs_diff(probs, check_probs)))
        cases.append({"name": name, "texts": list(texts), "prompt_name": None,
                      "input_ids": [ids for ids, _ in encoded],
                      "token_type_ids": [types for _, types in encoded],
                      "outputs": logits.tolist(), "probabilities": probs.tolist()})
    return {"kind": "classifier", "hidden_size": spec["hidden"],
            "output_size": len(kind["labels"]), "labels": list(kind["labels"]), "cases": cases}


def reranker_golden(kind, spec, w):
    cases = []
    for name, query, docs in kind["pairs"]:
        encoded = [encode_pair(query, d) for d in docs]
        assert all(len(ids) <= spec["max_pos"] for ids, _ in encoded)
        assert len({len(ids) for ids, _ in encoded}) == len(docs), "documents of one length"
        seqs = as_seqs(encoded)
        logits = classifier_logits(spec, w, seqs)
        scores = torch.sigmoid(logits[:, 0])
        check = loop_logits(spec, w, seqs)
        require_agreement(kind["name"], f"case {name}: logits / scores and their loops",
                          max(max_abs_diff(logits, check),
                              max_abs_diff(scores, [loop_sigmoid(r)[0] for r in check])))
        cases.append({"name": name, "query": query, "texts": list(docs),
                      "input_ids": [ids for ids, _ in encoded],
                      "token_type_ids": [types for _, types in encoded],
                      "outputs": logits.tolist(), "scores": scores.tolist()})
    return {"kind": "reranker", "hidden_size": spec["hidden"], "output_size": 1, "cases": cases}


# ---------------------------------------------------------------------------------------------
# task-kind fixtures: writers


def json_value(obj, indent=0):
    """JSON with one key per line and every list of scalars on one line; floats as repr()."""
    pad = "  " * indent
    if isinstance(obj, dict):
        items = [f"{pad}  {json.dumps(k, ensure_ascii=False)}: {json_value(v, indent + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}" if items else "{}"
    if isinstance(obj, list):
        if all(not isinstance(v, (list, dict)) for v in obj):
            return "[" + ", ".join(json_value(v) for v in obj) + "]"
        return "[\n" + ",\n".join(pad + "  " + json_value(v, indent + 1) for v in obj) + "\n" \
            + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
        return repr(obj)
    return json.dumps(obj, ensure_ascii=False)


def write_json(path, obj, compact=False):
    """indent=2 JSON as sentence-transformers / transformers write their configs, or
    json_value's layout with compact=True (golden.json)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = json_value(obj) if compact else json.dumps(obj, indent=2, ensure_ascii=False)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text + "\n")


def write_kind_tokenizer(out_dir):
    with open(os.path.join(out_dir, "vocab.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.writelines(tok + "\n" for tok in KIND_VOCAB)
    write_json(os.path.join(out_dir, "tokenizer_config.json"), TOKENIZER_CONFIG)


def st_modules(kind):
    """modules.json entries: the Transformer at kind["transformer_path"], then <idx>_<Type>."""
    types = ["Pooling"] + ["Dense"] * bool(kind["dense"]) + ["Normalize"] * kind["normalize"]
    modules = [{"idx": 0, "name": "0", "path": kind["transformer_path"],
                "type": ST_MODULE_TYPE["Transformer"]}]
    for t in types:
        idx = len(modules)
        modules.append({"idx": idx, "name": str(idx), "path": f"{idx}_{t}",
                        "type": ST_MODULE_TYPE[t]})
    return modules


def write_embedding_kind(kind, out_dir):
    spec = kind_encoder(kind["name"], "")
    modules = st_modules(kind)
    write_json(os.path.join(out_dir, "modules.json"), modules)
    transformer_dir = os.path.join(out_dir, kind["transformer_path"])
    w = write_model(spec, transformer_dir)
    write_kind_tokenizer(transformer_dir)
    if kind["sbert_config"]:
        write_json(os.path.join(transformer_dir, "sentence_bert_config.json"),
                   kind["sbert_config"])
    if kind["st_config"]:
        write_json(os.path.join(out_dir, "config_sentence_transformers.json"), kind["st_config"])
    paths = {m["type"].rsplit(".", 1)[1]: m["path"] for m in modules}
    pooling = {"word_embedding_dimension": spec["hidden"]}
    pooling.update({key: mode == kind["pooling"] for key, mode in POOLING_KEYS})
    pooling["include_prompt"] = kind["include_prompt"]
    write_json(os.path.join(out_dir, paths["Pooling"], "config.json"), pooling)
    dense = {}
    if kind["dense"]:
        d = kind["dense"]
        dense_dir = os.path.join(out_dir, paths["Dense"])
        write_json(os.path.join(dense_dir, "config.json"),
                   {"in_features": spec["hidden"], "out_features": d["out_features"],
                    "bias": d["bias"], "activation_function": ST_ACTIVATION[d["activation"]]})
        seed = f"{paths['Dense']}/linear."
        raw = [("linear.weight", draw(kind["name"], seed + "weight",
                                      (d["out_features"], spec["hidden"]), DENSE_STD))]
        if d["bias"]:
            raw.append(("linear.bias", draw(kind["name"], seed + "bias", (d["out_features"],),
                                            DENSE_BIAS_STD)))
        write_safetensors(os.path.join(dense_dir, "model.safetensors"),
                          [(name, "F32", t) for name, t in raw])
        dense = {name: round_to(t, "F32") for name, t in raw}
    # Normalize has no files: sentence-transformers writes an empty directory, git keeps none.
    with torch.no_grad():
        return embedding_golden(kind, spec, w, dense)


def write_classifier_kind(kind, out_dir):
    spec = classifier_spec(kind_encoder(kind["name"], "bert."), kind["labels"],
                           kind["problem_type"])
    w = write_model(spec, out_dir)
    write_kind_tokenizer(out_dir)
    with torch.no_grad():
        if kind["kind"] == "reranker":
            return reranker_golden(kind, spec, w)
        return classifier_golden(kind, spec, w)


def write_kind(kind, out_dir):
    """Rewrites tests/fixtures/kinds/<name>/ from scratch (it holds generated files only)."""
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    if kind["kind"] == "embedding":
        golden = write_embedding_kind(kind, out_dir)
    else:
        golden = write_classifier_kind(kind, out_dir)
    write_json(os.path.join(out_dir, "golden.json"), golden, compact=True)
    return sum(len(c["texts"]) for c in golden["cases"])


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
# `--bert-base-reranker OUT_DIR`: the same shape and vocabulary as a one-label
# BertForSequenceClassification cross-encoder (bert.-prefixed tensors, classifier.weight [1, 768],
# classifier.bias [1]; config as bert_reranker's). Its own weights (its own name); the classifier
# weight has the linear std 0.04 too (0.5 would put the logit at std ~5 at hidden 768).
BERT_BASE_RERANKER = dict(classifier_spec(BERT_BASE, ["LABEL_0"], None),
                          name="bert-base-shape-zh-reranker", classifier_std=0.04,
                          classifier_bias_std=0.02)


def write_bert_base(out_dir, spec=BERT_BASE):
    write_model(spec, out_dir)
    with open(os.path.join(REPO, DEFAULT_MODEL_DIR, "vocab.txt"), "r", encoding="utf-8",
              newline="") as f:
        lines = f.readlines()[:spec["vocab"]]
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
    for kind in KINDS:
        write_kind(kind, os.path.join(root, KINDS_ROOT, kind["name"]))
    return diffs


def kind_files(root):
    """Every file under root/KINDS_ROOT, relative to root, sorted."""
    found = []
    for dirpath, _, names in os.walk(os.path.join(root, KINDS_ROOT)):
        found += [os.path.relpath(os.path.join(dirpath, n), root) for n in names]
    return sorted(found)


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


def compare_json_values(fresh, committed, where, problems):
    """Appends differences to `problems`; returns the max float difference. Floats (of either
    side) compare to GOLDEN_TOLERANCE, everything else exactly, including types and key order."""
    if isinstance(fresh, float) and isinstance(committed, float):
        diff = abs(fresh - committed)
        if not diff <= GOLDEN_TOLERANCE:
            problems.append(f"{where}: {committed!r} differs from {fresh!r} by {diff:.3e}")
        return diff if math.isfinite(diff) else 0.0
    if type(fresh) is not type(committed):
        problems.append(f"{where}: expected {type(fresh).__name__}, found "
                        f"{type(committed).__name__}")
        return 0.0
    worst = 0.0
    if isinstance(fresh, dict):
        if list(fresh) != list(committed):
            problems.append(f"{where}: keys {list(committed)}, expected {list(fresh)}")
        for k in fresh:
            if k in committed:
                worst = max(worst, compare_json_values(fresh[k], committed[k], f"{where}.{k}",
                                                       problems))
    elif isinstance(fresh, list):
        if len(fresh) != len(committed):
            problems.append(f"{where}: {len(committed)} items, expected {len(fresh)}")
        for i, (a, b) in enumerate(zip(fresh, committed)):
            worst = max(worst, compare_json_values(a, b, f"{where}[{i}]", problems))
    elif fresh != committed:
        problems.append(f"{where}: {committed!r}, expected {fresh!r}")
    return worst


def compare_golden_json(fresh_path, committed_path):
    """Returns (problems, max float diff)."""
    with open(fresh_path, "r", encoding="utf-8") as f:
        fresh = json.load(f)
    with open(committed_path, "r", encoding="utf-8") as f:
        committed = json.load(f)
    problems = []
    worst = compare_json_values(fresh, committed, "golden", problems)
    if len(problems) > 8:
        problems = problems[:8] + [f"... and {len(problems) - 8} more"]
    return problems, worst


def check():
    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="tideserve-fixtures-")
    try:
        diffs = generate(tmp)
        failures = 0
        worst_golden = 0.0
        files = expected_files() + kind_files(tmp)
        extras = sorted(set(kind_files(REPO)) - set(files))
        for rel in extras:
            print(f"EXTRA   {rel} (not written by this generator)")
        for rel in files:
            fresh, committed = os.path.join(tmp, rel), os.path.join(REPO, rel)
            if not os.path.isfile(committed):
                print(f"MISSING {rel}")
                failures += 1
                continue
            if rel.endswith("golden.safetensors") or rel.endswith("golden.json"):
                try:
                    if rel.endswith(".json"):
                        problems, worst = compare_golden_json(fresh, committed)
                    else:
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
        print(f"torch reference vs hand-written BERT and loop pooling: max abs diff "
              f"{max(diffs.values()):.2e} (limit {REFERENCE_AGREEMENT:g})")
        print(f"{len(files) - failures}/{len(files)} files match, {len(extras)} extra; "
              f"golden max abs diff {worst_golden:.1e} (limit {GOLDEN_TOLERANCE:g}); "
              f"{time.monotonic() - t0:.1f} s")
        if failures or extras:
            print("FAILED: committed fixtures drifted, are missing or extra; regenerate with "
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
    mode.add_argument("--bert-base-reranker", metavar="OUT_DIR",
                      help="write a BERT-base-shaped one-label cross-encoder "
                           "(BertForSequenceClassification, random F32 weights) for benchmarks")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)  # nothing should use the global RNG; pin it anyway
    if args.check:
        return check()
    if args.bert_base:
        write_bert_base(args.bert_base)
        print(f"wrote {args.bert_base} (BERT-base shape, F32)")
        return 0
    if args.bert_base_reranker:
        write_bert_base(args.bert_base_reranker, BERT_BASE_RERANKER)
        print(f"wrote {args.bert_base_reranker} (BERT-base shape cross-encoder, F32)")
        return 0
    t0 = time.monotonic()
    diffs = generate(REPO)
    for name, diff in diffs.items():
        print(f"wrote {os.path.join(FIXTURE_ROOT, name)} (torch vs hand-written, pooling vs loops: "
              f"{diff:.2e})")
    print(f"wrote {DEFAULT_MODEL_DIR} (config.json, model.safetensors, tokenizer_config.json)")
    for kind in KINDS:
        rel = os.path.join(KINDS_ROOT, kind["name"])
        n = len([f for f in kind_files(REPO) if f.startswith(rel + os.sep)])
        print(f"wrote {rel} ({kind['kind']}, {n} files)")
    print(f"{time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
