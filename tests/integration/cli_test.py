#!/usr/bin/env python3
"""Drives the tideserve binary's CLI: help, exit codes and one-line errors, and `embed` output
against the torch goldens of a fixture model. Standard library only.

usage: cli_test.py PATH_TO_TIDESERVE [--only CLASS] [--exclude CLASS] [unittest names]
       (run from the repository root; exit 77 when every test that ran was skipped)
"""
import json
import math
import os
import re
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tideserve_harness as th  # noqa: E402

BINARY = None
# type_vocab_size 1: every golden token has type id 0, as `embed` gives a single input.
FIXTURE = os.path.join("tests", "fixtures", "models", "bert_gelu_new_f16")


def run(*args, env=None):
    full_env = dict(os.environ)
    full_env.pop("MODEL_NAME", None)
    if env:
        full_env.update(env)
    return subprocess.run([BINARY, *args], capture_output=True, text=True, env=full_env, timeout=120)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin : base + end]
        fmt = {"F32": "f", "I64": "q"}.get(info["dtype"])
        if fmt is None:
            continue
        values = list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(fmt), fmt), raw))
        tensors[name] = (info["shape"], values)
    return tensors


class CliCase(unittest.TestCase):
    """The fixture's goldens and the helpers; no tests of its own."""

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(FIXTURE, "config.json")) as f:
            assert json.load(f)["type_vocab_size"] == 1
        cls.golden = read_safetensors(os.path.join(FIXTURE, "golden.safetensors"))
        _, ids = cls.golden["input_ids"]
        _, cu = cls.golden["cu_seqlens"]
        cls.sequences = [ids[cu[i] : cu[i + 1]] for i in range(len(cu) - 1)]
        cls.hidden_size = cls.golden["pooled_cls"][0][1]

    def assert_one_line_error(self, result, code, needle):
        self.assertEqual(result.returncode, code, result.stderr)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(needle, lines[0])
        self.assertTrue(lines[0].startswith("tideserve: error:"), lines[0])

    def embed(self, *extra, ids=None):
        seqs = ids if ids is not None else self.sequences
        args = ["embed", "--model", FIXTURE, "--ids", *extra]
        args += [",".join(str(i) for i in s) for s in seqs]
        result = run(*args)
        self.assertEqual(result.returncode, 0, result.stderr)
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        self.assertEqual(len(rows), len(seqs))
        return rows

    def cosines(self, rows, expected_flat):
        h = len(rows[0])
        out = []
        for s, row in enumerate(rows):
            ref = expected_flat[s * h : (s + 1) * h]
            dot = sum(a * b for a, b in zip(row, ref))
            out.append(dot / (math.sqrt(sum(a * a for a in row)) * math.sqrt(sum(b * b for b in ref))))
        return out


class CliTest(CliCase):
    def test_help_lists_subcommands(self):
        result = run("--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("embed", result.stdout)
        result = run("embed", "--help")
        self.assertEqual(result.returncode, 0)
        for flag in ("--model", "--pooling", "--normalize", "--threads", "--ids"):
            self.assertIn(flag, result.stdout)

    def test_bad_usage_exits_2_with_one_line(self):
        self.assert_one_line_error(run("frobnicate"), 2, "frobnicate")
        self.assert_one_line_error(run("embed", "--model", FIXTURE, "--bogus", "x"), 2, "--bogus")
        self.assert_one_line_error(
            run("embed", "--model", FIXTURE, "--pooling", "maximum", "--ids", "1"), 2, "maximum")
        self.assert_one_line_error(
            run("embed", "--model", FIXTURE, "--threads", "-3", "--ids", "1"), 2, "-3")
        self.assert_one_line_error(run(), 2, "subcommand is required")

    def test_model_and_input_errors_exit_1_with_one_line(self):
        self.assert_one_line_error(run("embed", "--model", "/nonexistent", "--ids", "1"), 1,
                                   "/nonexistent/config.json")
        self.assert_one_line_error(run("embed", "--model", FIXTURE, "--ids", "1,100000"), 1,
                                   "outside the vocabulary")
        self.assert_one_line_error(run("embed", "--model", FIXTURE, "--ids", "1,x"), 1, "1,x")

    def assert_rows_close(self, rows, expected_flat, tolerance=1e-4):
        h = len(rows[0])
        for s, row in enumerate(rows):
            expected = expected_flat[s * h : (s + 1) * h]
            diff = max(abs(a - b) for a, b in zip(row, expected))
            self.assertLessEqual(diff, tolerance, "sequence %d" % s)

    def test_embed_matches_torch_golden(self):
        self.assert_rows_close(self.embed(), self.golden["pooled_cls"][1])
        self.assert_rows_close(self.embed("--pooling", "mean"), self.golden["pooled_mean"][1])

    def test_normalize_gives_unit_vectors_in_the_same_direction(self):
        rows = self.embed("--normalize")
        expected = self.golden["pooled_cls"][1]
        h = len(rows[0])
        for s, row in enumerate(rows):
            self.assertAlmostEqual(math.sqrt(sum(x * x for x in row)), 1.0, places=5)
            ref = expected[s * h : (s + 1) * h]
            norm = math.sqrt(sum(x * x for x in ref))
            self.assertLessEqual(max(abs(a - b / norm) for a, b in zip(row, ref)), 1e-4)

    def test_dtype_int8_stays_within_its_accuracy(self):
        rows = self.embed("--dtype", "int8")
        self.assertGreaterEqual(min(self.cosines(rows, self.golden["pooled_cls"][1])), 0.999)
        # Quantized, so not the fp32 answer bit for bit.
        self.assertGreater(max(abs(a - b) for a, b in zip(rows[0], self.embed()[0])), 0)
        self.assert_one_line_error(
            run("embed", "--model", FIXTURE, "--dtype", "fp16", "--ids", "1"), 2, "fp16")

    def test_model_from_environment(self):
        result = run("embed", "--ids", "1,2,3", env={"MODEL_NAME": FIXTURE})
        self.assertEqual(result.returncode, 0, result.stderr)
        from_env = json.loads(result.stdout)
        self.assertEqual(len(from_env), self.hidden_size)
        self.assertEqual(from_env, self.embed(ids=[[1, 2, 3]])[0])


# ==============================================================================================
# The refusal's message names the instruction set oneDNN dispatches; bf16 needs avx512_core or
# newer, so a refusal that names one of those is a bug, not a CPU without bf16.
BF16_REFUSAL = "bfloat16 matmul is not available on this CPU"
DISPATCHED_ISA = re.compile(r"oneDNN dispatches ([a-z0-9_]+)")


def check_bf16_refusal(test, message):
    """On a CPU without a bf16 matmul: the message says so and names an ISA below avx512_core.
    Returns that ISA."""
    test.assertIn(BF16_REFUSAL, message)
    match = DISPATCHED_ISA.search(message)
    test.assertIsNotNone(match, "the refusal does not name the dispatched ISA: " + message)
    isa = match.group(1)
    test.assertFalse(isa.startswith("avx512_core"), "refused bf16 on %s: %s" % (isa, message))
    return isa


class Bf16Test(CliCase):
    """`--dtype bf16`: on a CPU with a bf16 matmul, the torch goldens to cosine 0.9999; on one
    without, the one-line refusal (exit 1) is checked and the test reports SKIPPED. CTest runs
    this class alone (cli_test_bf16, SKIP_RETURN_CODE 77) so that the skip shows there."""

    def test_dtype_bf16_matches_golden(self):
        args = ["embed", "--model", FIXTURE, "--ids", "--dtype", "bf16"]
        result = run(*args, *[",".join(str(i) for i in s) for s in self.sequences])
        if result.returncode != 0:
            self.assert_one_line_error(result, 1, BF16_REFUSAL)
            isa = check_bf16_refusal(self, result.stderr)
            self.skipTest("no bf16 matmul on this CPU (oneDNN dispatches %s); the refusal was "
                          "checked" % isa)
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        self.assertEqual(len(rows), len(self.sequences))
        self.assertEqual({len(r) for r in rows}, {self.hidden_size})
        self.assertGreaterEqual(min(self.cosines(rows, self.golden["pooled_cls"][1])), 0.9999)
        # Converted, so not the fp32 answer bit for bit.
        self.assertGreater(max(abs(a - b) for a, b in zip(rows[0], self.embed()[0])), 0)


if __name__ == "__main__":
    sys.exit(th.run_tests(globals(), __doc__))
