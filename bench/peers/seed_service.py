"""The service tideserve replaces: FastAPI + uvicorn (1 worker) + PyTorch, POST /predict
{"text", "max_length"} -> {"prediction": "[[...]]" (the CLS vector of the last hidden state),
"latency_ms", "model_version"}, GET /health. transformers is not packaged in Debian, so the model
is bench/peers/bert_torch.Bert (the eager BERT from plain torch ops, as transformers' BertModel
runs) and the tokenizer a small BERT WordPiece tokenizer below (lower case, accents stripped,
Chinese characters split, [CLS] ... [SEP], truncation to max_length).

    MODEL_NAME=DIR PORT=8000 /usr/bin/python3 seed_service.py
"""
import os
import sys
import time
import unicodedata

import torch
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bert_torch  # noqa: E402


class WordPiece:
    def __init__(self, vocab_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.vocab = {t.rstrip("\n"): i for i, t in enumerate(f)}
        self.unk, self.cls, self.sep = (self.vocab[t] for t in ("[UNK]", "[CLS]", "[SEP]"))

    @staticmethod
    def _is_cjk(cp):
        return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF or
                0x2A700 <= cp <= 0x2CEAF or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)

    def _words(self, text):
        text = unicodedata.normalize("NFD", text.lower())
        words, cur = [], []
        for ch in text:
            cat = unicodedata.category(ch)
            if cat == "Mn" or ch == "\0" or ch == "\ufffd" or (cat.startswith("C") and
                                                               ch not in "\t\n\r"):
                continue
            if ch.isspace():
                words.append("".join(cur)); cur = []
            elif self._is_cjk(ord(ch)) or cat.startswith("P") or (
                    33 <= ord(ch) <= 47 or 58 <= ord(ch) <= 64 or 91 <= ord(ch) <= 96 or
                    123 <= ord(ch) <= 126):
                words.append("".join(cur)); words.append(ch); cur = []
            else:
                cur.append(ch)
        words.append("".join(cur))
        return [w for w in words if w]

    def encode(self, text, max_length):
        ids = []
        for word in self._words(text):
            if len(word) > 100:
                ids.append(self.unk); continue
            start, pieces = 0, []
            while start < len(word):
                end = len(word)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    if piece in self.vocab:
                        break
                    end -= 1
                if end == start:
                    pieces = [self.unk]; break
                pieces.append(self.vocab[piece]); start = end
            ids += pieces
        return [self.cls] + ids[:max_length - 2] + [self.sep]


MODEL_DIR = os.environ.get("MODEL_NAME", "bert-base-chinese")
MODEL_VERSION = os.environ.get("MODEL_VERSION", "1")
torch.set_num_threads(int(os.environ.get("TORCH_THREADS", os.cpu_count() or 1)))
app = FastAPI()
state = {}


class PredictRequest(BaseModel):
    text: str
    max_length: int = 128


@app.on_event("startup")
def load():
    cfg = bert_torch.load_config(MODEL_DIR)
    state["model"] = bert_torch.Bert(cfg, bert_torch.load_weights(MODEL_DIR)).eval()
    state["tokenizer"] = WordPiece(os.path.join(MODEL_DIR, "vocab.txt"))


@app.get("/health")
def health():
    return {"status": "healthy", "model_version": MODEL_VERSION}


@app.post("/predict")
def predict(req: PredictRequest):
    try:
        t0 = time.perf_counter()
        ids = torch.tensor([state["tokenizer"].encode(req.text, req.max_length)])
        with torch.no_grad():
            out = state["model"](ids, torch.zeros_like(ids), torch.ones_like(ids))
        cls = out[:, 0, :]
        return {"prediction": str(cls.tolist()),
                "latency_ms": (time.perf_counter() - t0) * 1e3, "model_version": MODEL_VERSION}
    except Exception as e:  # the original answered every failure with a 500
        raise HTTPException(status_code=500, detail=str(e))


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), workers=1,
                log_level="warning")
