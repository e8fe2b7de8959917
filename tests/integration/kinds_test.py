#!/usr/bin/python3
"""Every model kind through the real server: sentence-transformers directories (pooling, Dense,
Normalize, prompts, Matryoshka dimensions), a classifier, a multi-label classifier and a
cross-encoder reranker, each served from tests/fixtures/kinds and compared with the golden.json
the fixture script computed with torch, through every route that serves the job: /embed,
/v1/embeddings, KServe v2 infer, /classify, /rerank and /v1/rerank (also through the official
Cohere npm client). Bad requests per route, each in its family's error shape; a directory that is
none of these kinds is refused at load.

    kinds_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest args]
"""
import json
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
KINDS = os.path.join("tests", "fixtures", "kinds")
KEY = "kinds-test-key"
AUTH = {"Authorization": "Bearer " + KEY}
# The fp32 engine against the float64 reference (the C++ test holds the same line).
TOL = 1e-4
# Far over every fixture's 64 positions.
LONG = "the cat sat on the mat and the dog read a book . " * 12


def unit(v):
    n = th.norm(v)
    return [x / n for x in v] if n > 0 else list(v)


def read_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return json.load(f)


class KindCase(th.ServerCase, unittest.TestCase):
    """One server per class on the fixture directory `model`."""

    model = None
    server_args = ("--api-key", KEY)

    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(KINDS, cls.model)
        cls.golden = read_json(cls.dir, "golden.json")
        cls.server_model = cls.dir
        super().setUpClass()

    def post(self, path, obj, headers=AUTH):
        return self.server.post_json(path, obj, headers)

    def ok(self, path, obj):
        status, _, body = self.post(path, obj)
        self.assertEqual(status, 200, (path, obj, body))
        return body

    def assertClose(self, got, want, what):
        self.assertEqual(len(got), len(want), what)
        self.assertLessEqual(th.max_abs_diff(got, want), TOL, what)

    def refused(self, path, obj, status, needle):
        """The answer has `status`, the family's error shape and `needle` in its message."""
        code, _, body = self.post(path, obj)
        self.assertEqual(code, status, (path, obj, body))
        if path.startswith("/v1/") or path == "/classify":
            message = body["error"]["message"]  # OpenAI's shape
            self.assertEqual(body["error"]["type"], "invalid_request_error", body)
        else:
            message = body["error"]  # TEI's shape
            self.assertIn("error_type", body)
        self.assertIn(needle, message, body)
        return message

    def info(self):
        status, _, body = self.server.get_json("/info")
        self.assertEqual(status, 200, body)
        return body


# ==============================================================================================
class EmbeddingKind:
    """Tests every sentence-transformers fixture runs (mixed into one class per directory)."""

    def cases(self):
        return self.golden["cases"]

    def declared_pooling(self):
        config = read_json(self.dir, "1_Pooling", "config.json")
        modes = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                 "pooling_mode_max_tokens": "max", "pooling_mode_lasttoken": "lasttoken",
                 "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                 "pooling_mode_weightedmean_tokens": "weightedmean"}
        on = [mode for key, mode in modes.items() if config.get(key)]
        self.assertEqual(len(on), 1, config)
        return on[0]

    def prompts(self):
        path = os.path.join(self.dir, "config_sentence_transformers.json")
        return read_json(path).get("prompts", {}) if os.path.exists(path) else {}

    def with_prompt(self, case, body):
        if case["prompt_name"] is not None:
            body["prompt_name"] = case["prompt_name"]
        return body

    def test_info_and_log_say_which_pooling_and_why(self):
        info = self.info()
        embedding = info["model_type"]["embedding"]
        self.assertEqual(embedding["pooling"], self.declared_pooling())
        self.assertTrue(embedding["pooling_source"].endswith(
            os.path.join("1_Pooling", "config.json")), embedding)
        self.assertEqual(embedding["prompts"], self.prompts())
        self.assertEqual(info["output_size"], self.golden["output_size"])
        self.assertEqual(info["hidden_size"], self.golden["hidden_size"])
        self.assertEqual(info["max_input_length"], self.golden["max_seq_length"])
        loaded = self.server.event("model_loaded")
        self.assertEqual(loaded["pooling"], self.declared_pooling())
        self.assertEqual(loaded["pooling_source"], embedding["pooling_source"])

    def test_tokenization_agrees_with_the_reference(self):
        # The golden's ids come from the fixture script's own tokenizer of the prompted text.
        prompts = self.prompts()
        path = os.path.join(self.dir, "config_sentence_transformers.json")
        default = read_json(path).get("default_prompt_name") if os.path.exists(path) else None
        for case in self.cases():
            name = case["prompt_name"] or default
            prompt = prompts[name] if name else ""
            body = self.ok("/tokenize", {"inputs": [prompt + t for t in case["texts"]]})
            self.assertEqual([[tok["id"] for tok in seq] for seq in body], case["input_ids"],
                             case["name"])

    def test_embed_matches_the_reference(self):
        for case in self.cases():
            raw = self.ok("/embed", self.with_prompt(case, {"inputs": case["texts"],
                                                           "normalize": False}))
            unitized = self.ok("/embed", self.with_prompt(case, {"inputs": case["texts"]}))
            for i, want in enumerate(case["outputs"]):
                self.assertClose(raw[i], want, (case["name"], i))
                self.assertClose(unitized[i], unit(want), (case["name"], i, "normalized"))
            # TEI's dimensions: the first 8, renormalized.
            cut = self.ok("/embed", self.with_prompt(case, {"inputs": case["texts"],
                                                           "dimensions": 8}))
            for i, want in enumerate(case["outputs"]):
                self.assertClose(cut[i], unit(want[:8]), (case["name"], i, "dimensions"))

    def test_openai_embeddings_match_the_reference(self):
        for case in self.cases():
            body = self.ok("/v1/embeddings", self.with_prompt(case, {"input": case["texts"]}))
            self.assertEqual(body["usage"]["prompt_tokens"],
                             sum(len(ids) for ids in case["input_ids"]))
            for i, want in enumerate(case["outputs"]):
                self.assertClose(body["data"][i]["embedding"], unit(want), (case["name"], i))
            cut = self.ok("/v1/embeddings", self.with_prompt(
                case, {"input": case["texts"], "dimensions": 5}))
            for i, want in enumerate(case["outputs"]):
                got = cut["data"][i]["embedding"]
                self.assertClose(got, unit(want[:5]), (case["name"], i, "dimensions"))
                self.assertAlmostEqual(th.norm(got), 1.0, places=5)

    def test_kserve_infer_matches_the_reference(self):
        model = self.model
        for case in self.cases():
            params = self.with_prompt(case, {"normalize": False})
            body = self.ok("/v2/models/%s/infer" % model, {
                "inputs": [{"name": "text", "shape": [len(case["texts"])], "datatype": "BYTES",
                            "data": case["texts"]}], "parameters": params})
            out = body["outputs"][0]
            self.assertEqual(out["name"], "embedding")
            self.assertEqual(out["shape"], [len(case["texts"]), self.golden["output_size"]])
            flat = [x for row in case["outputs"] for x in row]
            self.assertClose(out["data"], flat, case["name"])

    def test_bad_embedding_requests(self):
        size = self.golden["output_size"]
        for path, key, status in (("/embed", "inputs", 422), ("/v1/embeddings", "input", 400)):
            self.refused(path, {key: "paris", "dimensions": 0}, status, "dimensions")
            self.refused(path, {key: "paris", "dimensions": "8"}, status, "dimensions")
            message = self.refused(path, {key: "paris", "dimensions": size + 1}, status,
                                   "dimensions %d" % (size + 1))
            self.assertIn(str(size), message)
            self.refused(path, {key: "paris", "prompt_name": "nope"}, status, "'nope'")
            self.refused(path, {key: "paris", "prompt_name": "query", "prompt": "q: "}, status,
                         "not both")
            self.refused(path, {key: "paris", "prompt": 3}, status, "'prompt'")
        # Over the declared max_seq_length without truncation; cut with it.
        self.refused("/embed", {"inputs": LONG}, 413, "maximum is %d" % self.golden["max_seq_length"])
        self.refused("/v1/embeddings", {"input": LONG}, 400, "tokens")
        self.assertEqual(len(self.ok("/embed", {"inputs": LONG, "truncate": True})[0]), size)
        # The jobs of the other kinds.
        self.refused("/rerank", {"query": "a", "texts": ["b"]}, 422, "not a reranker")
        self.refused("/v1/rerank", {"query": "a", "documents": ["b"]}, 400, "not a reranker")
        self.refused("/classify", {"input": ["a"]}, 400, "no classification head")


class StMeanDenseNormTest(EmbeddingKind, KindCase):
    model = "st_mean_dense_norm"

    def test_prompts_change_the_vector_and_prompt_text_equals_its_name(self):
        named = self.ok("/embed", {"inputs": "paris", "prompt_name": "query"})
        text = self.ok("/embed", {"inputs": "paris", "prompt": "query: "})
        plain = self.ok("/embed", {"inputs": "paris"})
        self.assertLessEqual(th.max_abs_diff(named[0], text[0]), 1e-6)
        self.assertGreater(th.max_abs_diff(named[0], plain[0]), 1e-3)

    def test_the_normalize_module_makes_unit_vectors_whatever_the_request_says(self):
        raw = self.ok("/embed", {"inputs": ["paris", "the cat sat"], "normalize": False})
        for row in raw:
            self.assertAlmostEqual(th.norm(row), 1.0, places=5)
        self.assertTrue(self.info()["model_type"]["embedding"]["normalized"])


class StMeanNoPromptDefaultTest(EmbeddingKind, KindCase):
    model = "st_mean_noprompt_default"

    def test_the_default_prompt_applies_and_is_left_out_of_pooling(self):
        info = self.info()["model_type"]["embedding"]
        self.assertEqual(info["default_prompt_name"], "query")
        default = self.ok("/embed", {"inputs": "paris"})
        named = self.ok("/embed", {"inputs": "paris", "prompt_name": "query"})
        empty = self.ok("/embed", {"inputs": "paris", "prompt_name": "passage"})
        self.assertLessEqual(th.max_abs_diff(default[0], named[0]), 1e-6)
        # Left out of pooling, but the prompt's tokens still change the others' states.
        self.assertGreater(th.max_abs_diff(default[0], empty[0]), 1e-3)


class StMaxDenseIdentityTest(EmbeddingKind, KindCase):
    model = "st_max_dense_identity"


class StClsSubdirTest(EmbeddingKind, KindCase):
    model = "st_cls_subdir"


# ==============================================================================================
class ClassifierKind:
    def probabilities(self, case, i):
        return dict(zip(self.golden["labels"], case["probabilities"][i]))

    def test_info_lists_the_labels(self):
        info = self.info()
        kind = info["model_type"]["classifier"]
        labels = self.golden["labels"]
        self.assertEqual(kind["id2label"], {str(i): name for i, name in enumerate(labels)})
        self.assertEqual(kind["label2id"], {name: i for i, name in enumerate(labels)})
        self.assertEqual(info["output_size"], len(labels))
        self.assertEqual(self.server.event("model_loaded")["kind"], "classifier")

    def test_classify_matches_the_reference(self):
        for case in self.golden["cases"]:
            body = self.ok("/classify", {"input": case["texts"]})
            self.assertEqual(body["object"], "classify")
            self.assertEqual(body["model"], self.model)
            self.assertEqual(body["usage"]["prompt_tokens"],
                             sum(len(ids) for ids in case["input_ids"]))
            raw = self.ok("/classify", {"input": case["texts"], "raw_scores": True})
            for i, scores in enumerate(body["data"]):
                got = [s["score"] for s in scores]
                self.assertEqual(got, sorted(got, reverse=True), "sorted by score")
                want = self.probabilities(case, i)
                self.assertEqual({s["label"] for s in scores}, set(want))
                for s in scores:
                    self.assertAlmostEqual(s["score"], want[s["label"]], delta=TOL)
                logits = dict(zip(self.golden["labels"], case["outputs"][i]))
                for s in raw["data"][i]:
                    self.assertAlmostEqual(s["score"], logits[s["label"]], delta=TOL)

    def test_kserve_infer_answers_scores_and_labels(self):
        case = self.golden["cases"][0]
        body = self.ok("/v2/models/%s/infer" % self.model, {"inputs": [
            {"name": "text", "shape": [len(case["texts"])], "datatype": "BYTES",
             "data": case["texts"]}]})
        scores, labels = body["outputs"]
        self.assertEqual((scores["name"], scores["datatype"]), ("scores", "FP32"))
        self.assertEqual(scores["shape"], [len(case["texts"]), len(self.golden["labels"])])
        self.assertClose(scores["data"], [x for row in case["probabilities"] for x in row],
                         "scores")
        self.assertEqual((labels["name"], labels["datatype"]), ("label", "BYTES"))
        best = [self.golden["labels"][row.index(max(row))] for row in case["probabilities"]]
        self.assertEqual(labels["data"], best)
        status, _, meta = self.server.get_json("/v2/models/%s" % self.model)
        self.assertEqual([o["name"] for o in meta["outputs"]], ["scores", "label"])

    def test_a_label_subset(self):
        case = self.golden["cases"][0]
        want = self.golden["labels"][-1]
        body = self.ok("/classify", {"input": case["texts"][0], "labels": [want]})
        self.assertEqual([s["label"] for s in body["data"][0]], [want])
        self.assertAlmostEqual(body["data"][0][0]["score"], self.probabilities(case, 0)[want],
                               delta=TOL)

    def test_bad_classify_requests(self):
        self.refused("/classify", {"input": []}, 400, "empty list")
        self.refused("/classify", {"input": [1]}, 400, "strings")
        self.refused("/classify", {"input": ""}, 400, "empty string")
        self.refused("/classify", {}, 400, "missing field 'input'")
        self.refused("/classify", {"input": "a", "labels": ["nope"]}, 400, "unknown label 'nope'")
        self.refused("/classify", {"input": LONG}, 400, "tokens")
        self.assertEqual(len(self.ok("/classify", {"input": LONG, "truncate": True})["data"]), 1)
        self.refused("/embed", {"inputs": "a"}, 422, "not an embedding model")
        self.refused("/v1/embeddings", {"input": "a"}, 400, "not an embedding model")
        self.refused("/rerank", {"query": "a", "texts": ["b"]}, 422, "not a reranker")
        status, _, _ = self.post("/classify", {"input": "a"}, headers={})
        self.assertEqual(status, 401)


class ClassifierTest(ClassifierKind, KindCase):
    model = "bert_classifier"

    def test_single_label_scores_are_a_softmax(self):
        body = self.ok("/classify", {"input": ["i like tea", "bad movie"]})
        for scores in body["data"]:
            self.assertAlmostEqual(sum(s["score"] for s in scores), 1.0, places=5)


class MultiLabelTest(ClassifierKind, KindCase):
    model = "bert_multilabel"

    def test_multi_label_scores_are_sigmoids(self):
        self.assertEqual(self.info()["model_type"]["classifier"]["problem_type"],
                         "multi_label_classification")
        case = self.golden["cases"][0]
        sums = [sum(row) for row in case["probabilities"]]
        self.assertTrue(any(abs(s - 1.0) > 0.05 for s in sums), sums)  # not a softmax


# ==============================================================================================
class RerankerTest(KindCase):
    model = "bert_reranker"

    def test_info(self):
        info = self.info()
        self.assertEqual(info["model_type"]["reranker"]["id2label"], {"0": "LABEL_0"})
        self.assertEqual(self.server.event("model_loaded")["kind"], "reranker")

    def test_tei_rerank_matches_the_reference(self):
        for case in self.golden["cases"]:
            body = self.ok("/rerank", {"query": case["query"], "texts": case["texts"],
                                       "return_text": True})
            self.assertEqual(sorted(r["index"] for r in body), list(range(len(case["texts"]))))
            scores = [r["score"] for r in body]
            self.assertEqual(scores, sorted(scores, reverse=True))
            for r in body:
                self.assertAlmostEqual(r["score"], case["scores"][r["index"]], delta=TOL)
                self.assertEqual(r["text"], case["texts"][r["index"]])
            raw = self.ok("/rerank", {"query": case["query"], "texts": case["texts"],
                                      "raw_scores": True})
            for r in raw:
                self.assertAlmostEqual(r["score"], case["outputs"][r["index"]][0], delta=TOL)
                self.assertNotIn("text", r)

    def test_v1_rerank_matches_the_reference(self):
        for case in self.golden["cases"]:
            docs = [{"text": t} if i % 2 else t for i, t in enumerate(case["texts"])]
            body = self.ok("/v1/rerank", {"model": self.model, "query": case["query"],
                                          "documents": docs, "top_n": 3,
                                          "return_documents": True})
            self.assertEqual(body["model"], self.model)
            self.assertTrue(body["id"].startswith("rerank-"))
            order = sorted(range(len(case["scores"])), key=lambda i: -case["scores"][i])[:3]
            self.assertEqual([r["index"] for r in body["results"]], order)
            for r in body["results"]:
                self.assertAlmostEqual(r["relevance_score"], case["scores"][r["index"]], delta=TOL)
                self.assertEqual(r["document"], {"text": case["texts"][r["index"]]})
            pairs = sum(len(ids) for ids in case["input_ids"])
            self.assertEqual(body["usage"]["total_tokens"], pairs)
            plain = self.ok("/v1/rerank", {"query": case["query"], "documents": case["texts"]})
            self.assertEqual(len(plain["results"]), len(case["texts"]))
            self.assertNotIn("document", plain["results"][0])

    def cohere(self, request, key=KEY):
        r = th.run_node_client(self, "cohere-ai", "rerank_client.mjs",
                               [self.server.url("/"), key, self.model],
                               input=json.dumps(request), timeout=120)
        self.assertEqual(r.returncode, 0, "rerank_client.mjs failed:\n" + r.stdout + r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def test_the_cohere_npm_client(self):
        case = self.golden["cases"][0]
        answer = self.cohere({"query": case["query"], "documents": case["texts"], "top_n": 2,
                              "return_documents": True})
        self.assertNotIn("error", answer)
        order = sorted(range(len(case["scores"])), key=lambda i: -case["scores"][i])[:2]
        self.assertEqual([r["index"] for r in answer["results"]], order)
        for r in answer["results"]:
            self.assertAlmostEqual(r["relevance_score"], case["scores"][r["index"]], delta=TOL)
            self.assertEqual(r["document"], case["texts"][r["index"]])
        self.assertEqual(answer["http"]["status"], 200)
        # The client sees our errors with their status.
        bad = self.cohere({"query": case["query"], "documents": case["texts"], "top_n": 0,
                           "return_documents": False})
        self.assertEqual(bad["error"]["status"], 400, bad)
        unauthorized = self.cohere({"query": "q", "documents": ["d"], "top_n": None,
                                    "return_documents": False}, key="wrong")
        self.assertEqual(unauthorized["error"]["status"], 401, unauthorized)

    def test_bad_rerank_requests(self):
        docs = ["paris", "berlin"]
        self.refused("/rerank", {"query": "q", "texts": []}, 422, "empty list")
        self.refused("/rerank", {"texts": docs}, 422, "missing field 'query'")
        self.refused("/rerank", {"query": "", "texts": docs}, 422, "'query' is an empty string")
        self.refused("/rerank", {"query": "q", "texts": ["a", ""]}, 422, "texts[1]")
        self.refused("/rerank", {"query": "q", "texts": [LONG]}, 413, "tokens")
        self.assertEqual(len(self.ok("/rerank", {"query": "q", "texts": [LONG],
                                                 "truncate": True})), 1)
        self.refused("/v1/rerank", {"query": "q", "documents": []}, 400, "empty list")
        self.refused("/v1/rerank", {"query": "q", "documents": docs, "top_n": 0}, 400, "top_n")
        self.refused("/v1/rerank", {"query": "q", "documents": docs, "top_n": 3}, 400, "top_n")
        self.refused("/v1/rerank", {"query": "q", "documents": [{"txt": "a"}]}, 400,
                     "documents[0]")
        self.refused("/v1/rerank", {"query": "q", "documents": [LONG], "truncate": False}, 400,
                     "tokens")
        # Cohere's API cuts long documents: so does /v1/rerank unless told not to.
        self.assertEqual(len(self.ok("/v1/rerank", {"query": "q", "documents": [LONG]})
                             ["results"]), 1)
        self.refused("/embed", {"inputs": "a"}, 422, "not an embedding model")

    def test_classify_on_a_reranker_scores_its_one_label(self):
        body = self.ok("/classify", {"input": ["paris"]})
        self.assertEqual([s["label"] for s in body["data"][0]], ["LABEL_0"])
        self.assertTrue(0.0 < body["data"][0][0]["score"] < 1.0)


# ==============================================================================================
class LoadRefusalTest(unittest.TestCase):
    """A directory that is neither an encoder nor one of the heads never serves."""

    def refused_at_load(self, fixture, edit, needle):
        root = tempfile.mkdtemp(prefix="tideserve_kinds_test_")
        try:
            model = os.path.join(root, "m")
            shutil.copytree(os.path.join(KINDS, fixture), model)
            edit(model)
            server = th.Server(BINARY, model=model)
            try:
                server.wait_listening()
                event = server.wait_event("model_load_failed")
                self.assertIn(needle, event["error"])
                self.assertEqual(server.wait_exit(60), 1, server.log_text())
            finally:
                server.kill()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @staticmethod
    def replace(path, old, new):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        assert old in text, (path, old)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace(old, new))

    def test_a_token_classification_head(self):
        self.refused_at_load("bert_classifier", lambda m: self.replace(
            os.path.join(m, "config.json"), "BertForSequenceClassification",
            "BertForTokenClassification"), "BertForTokenClassification")

    def test_an_unknown_sentence_transformers_module(self):
        self.refused_at_load("st_mean_dense_norm", lambda m: self.replace(
            os.path.join(m, "modules.json"), "models.Normalize", "models.CNN"),
            "sentence_transformers.models.CNN")


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
