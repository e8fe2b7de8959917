#!/usr/bin/env python3
"""Writes the libFuzzer seed corpora under fuzz/corpus/<target>/ (small, deterministic), from
hand-written requests and the repository's own fixtures. Run after changing a fixture or a
target's input format:

    python3 tools/make_fuzz_corpus.py          # rewrite fuzz/corpus
    python3 tools/make_fuzz_corpus.py --check  # exit 1 if the committed corpus differs

Input formats (see each target's header comment): tokenizer_fuzz: flags byte, max_length byte,
text [0xFF pair]; loaders_fuzz: reader byte (0 tokenizer.json, 1 vocab.txt, 2 config.json,
3 safetensors), then the file; model_directory_fuzz: modules.json, 1_Pooling/config.json,
2_Dense/config.json, config_sentence_transformers.json and config.json joined by 0xFF bytes;
request_fuzz: route byte (the index into its kTargets), then the body, or 0xFF, a
multipart/form-data Content-Type value, '\n' and the multipart body; plan_inputs_fuzz:
reader byte (0 manifests, 1 capacity profile, 2 rate schedule, 3 quantity, 4 cron spec), then
the input.
"""
import json
import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = os.path.join(REPO, "tests", "fixtures", "kinds")
ST = os.path.join(KINDS, "st_mean_dense_norm")


def read(*parts):
    with open(os.path.join(REPO, *parts), "rb") as f:
        return f.read()


def tokenizer_json():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "你", "好"]
    doc = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for i, t in enumerate(vocab[:5])],
        "normalizer": {"type": "BertNormalizer", "clean_text": True,
                       "handle_chinese_chars": True, "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100,
                  "vocab": {t: i for i, t in enumerate(vocab)}},
    }
    return json.dumps(doc).encode()


def corpora():
    routes = ["/predict", "/embed", "/tokenize", "/v1/embeddings", "/v2/models/tiny/infer",
              "/v2/models/tiny/versions/1/infer", "/rerank", "/v1/rerank", "/classify", "/info",
              "/v2/models/tiny", "/health"]

    def route(path, body):
        return bytes([routes.index(path)]) + json.dumps(body, ensure_ascii=False).encode()

    def multipart(boundary, parts, content_type=None):
        body = b""
        for headers, data in parts:
            body += b"--" + boundary + b"\r\n" + b"".join(h + b"\r\n" for h in headers)
            body += b"\r\n" + data + b"\r\n"
        body += b"--" + boundary + b"--\r\n"
        if content_type is None:
            content_type = b"multipart/form-data; boundary=" + boundary
        return b"\xff" + content_type + b"\n" + body

    batch = (json.dumps({"custom_id": "r1", "method": "POST", "url": "/v1/embeddings",
                         "body": {"model": "tiny", "input": "你好"}}, ensure_ascii=False)
             + "\n").encode()
    purpose = ([b'Content-Disposition: form-data; name="purpose"'], b"batch")

    st_files = [read(ST, "modules.json"), read(ST, "1_Pooling", "config.json"),
                read(ST, "2_Dense", "config.json"), read(ST, "config_sentence_transformers.json"),
                read(ST, "config.json")]
    return {
        "tokenizer_fuzz": {
            "plain": b"\x00\x00" + "Hello, 你好 world!".encode(),
            "pair_truncated": b"\x03\x08the first text\xffand the second one",
            "left_no_specials": b"\x0e\x05\xc3\xa9\xcc\x81 \xc3\x9f \xf0\x9f\x98\x80 tab\there",
            "cased_tokenizer": b"\x10\x10ab abab ABB " + "中".encode(),
        },
        "loaders_fuzz": {
            "tokenizer_json": b"\x00" + tokenizer_json(),
            "vocab_txt": b"\x01[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\n",
            "config_json": b"\x02" + read("tests", "fixtures", "kinds", "bert_classifier",
                                         "config.json"),
            "safetensors": b"\x03" + read("tests", "fixtures", "kinds", "st_mean_dense_norm",
                                         "2_Dense", "model.safetensors"),
        },
        "model_directory_fuzz": {
            "st_mean_dense_norm": b"\xff".join(st_files),
        },
        "request_fuzz": {
            "predict": route("/predict", {"text": "今天天气很好", "max_length": 16}),
            "embed": route("/embed", {"inputs": ["你好", "world"], "normalize": False,
                                      "prompt_name": "query", "dimensions": 2, "truncate": True}),
            "embed_chunks": route("/embed", {"inputs": "今天天气很好。我们去公园散步吧！",
                                             "chunking": {"max_tokens": 6, "overlap": 1,
                                                          "document_embedding": True},
                                             "stream": False}),
            "tokenize": route("/tokenize", {"inputs": ["你好 world"],
                                            "add_special_tokens": False}),
            "openai": route("/v1/embeddings", {"input": [[2, 5, 3], "hi"], "model": "tiny",
                                               "encoding_format": "base64", "dimensions": 3}),
            "kserve": route("/v2/models/tiny/infer", {"inputs": [
                {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["你好"]}],
                "parameters": {"normalize": True, "raw_scores": True}}),
            "rerank": route("/rerank", {"query": "q", "texts": ["a", "b"], "return_text": True}),
            "v1_rerank": route("/v1/rerank", {"query": "q", "documents": ["a", {"text": "b"}],
                                              "top_n": 1, "return_documents": True}),
            "classify": route("/classify", {"input": ["a"], "labels": ["x"]}),
            # What undici's FormData (the openai npm client) and curl -F send to POST /v1/files.
            "multipart_undici": multipart(b"----formdata-undici-012345678901", [purpose, (
                [b'Content-Disposition: form-data; name="file"; filename="batch.jsonl"',
                 b"Content-Type: application/octet-stream"], batch)]),
            "multipart_curl": multipart(b"------------------------d74496d66958873e", [purpose, (
                [b'Content-Disposition: form-data; name="file"; filename="x.jsonl"',
                 b"Content-Type: application/jsonl"], batch)]),
            "multipart_quoted": multipart(b"a'()+_,-./:=? b", [(
                [b'content-disposition: Form-Data; NAME="a \\"q\\" b"; filename*=UTF-8\'\'x',
                 b"X-Other: 1"], b"\x00\r\n--a'()+_\r\n\r\n")],
                b'Multipart/Form-Data; charset=utf-8; Boundary="a\'()+_,-./:=? b"'),
        },
        "plan_inputs_fuzz": {
            "hpa": b"\x00" + read("deploy", "k8s", "base", "autoscaling", "hpa.yaml"),
            "scaledobject": b"\x00" + read("deploy", "k8s", "overlays", "keda",
                                           "scaledobject.yaml"),
            "deployment": b"\x00" + read("deploy", "k8s", "base", "workload", "deployment.yaml"),
            "profile": b"\x01" + json.dumps({"slo_p99_ms": 250, "capacity_rps": 40, "steps": [
                {"offered_rate": r, "throughput": r, "goodput": r, "p50_ms": r / 4,
                 "p90_ms": r / 2, "p99_ms": r, "p999_ms": r, "requests": 10 * r, "errors": 0,
                 "cpu_cores": r / 100, "memory_bytes": 1e8, "within_slo": True}
                for r in (10, 40)]}).encode(),
            "schedule": b"\x02time_s,rate\n0,10\n60,50.5\n",
            "quantity": b"\x031.5Gi",
            "cron": b"\x04*/15 8-20 * JAN-DEC MON-FRI",
        },
    }


def main():
    check = "--check" in sys.argv[1:]
    root = tempfile.mkdtemp() if check else os.path.join(REPO, "fuzz", "corpus")
    drift = 0
    for target, files in corpora().items():
        os.makedirs(os.path.join(root, target), exist_ok=True)
        for name, data in files.items():
            path = os.path.join(target, name)
            if check:
                committed = os.path.join(REPO, "fuzz", "corpus", path)
                same = os.path.exists(committed) and open(committed, "rb").read() == data
                drift += not same
                print(("ok     " if same else "DRIFT  ") + path)
            else:
                with open(os.path.join(root, path), "wb") as f:
                    f.write(data)
    return 1 if drift else 0


if __name__ == "__main__":
    sys.exit(main())
