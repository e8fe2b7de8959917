#!/usr/bin/python3
"""The engine benchmark: tideserve's encoder against ONNX Runtime (npm onnxruntime-node) and
PyTorch 1.13 (TransformerEncoder fast path) on the same BERT model, at 1 and 2 threads, on

  (a) latency:    batch 1 x 128 tokens
  (b) throughput: batch 8 x 128 tokens
  (d) a query:    batch 1 x 16 tokens (a short text: what one user waits for at low load)
  (c) mixed:      256 sequences, lengths from a fixed skewed distribution (80% 8-64, 15% 65-192,
                  5% 193-512, seed 5), in arrival order, in batches of 32 (the server's default
                  --max-client-batch-size): tideserve runs each batch as one flat token stream,
                  the peers pad each batch to its longest sequence.

Every engine runs the workload's first batch to warm up, then `reps` timed passes (the first
pass's CLS vectors are compared: max abs diff and the lowest cosine over all sequences, against
tideserve); the
table shows the median with the min-max spread and the ratio of medians. Each engine runs in its
own process, one after the other, never concurrently. Also: tideserve's per-layer GFLOP/s at
8 x 128 tokens beside oneDNN's raw matmul at the layer's GEMM shapes, fp32 / bf16 / int8.

tideserve's fp32 runs three ways: as the server runs it (each layer shape on the faster of
oneDNN's GEMM and tideserve's packed AVX2 GEMM, measured at load), and forced onto each of the
two (--fp32-kernel), for the table that shows what the choice is worth.

Every table's header names the machine: CPU model, the ISA flags that decide the kernels,
oneDNN's dispatch, the date.

tideserve also runs every workload in each reduced precision of --dtypes (int8, bf16): its time
against ONNX Runtime fp32 and against tideserve fp32, and its accuracy against tideserve fp32
(CLS cosine, max abs diff). A dtype the CPU cannot run (bf16 without AVX512) is reported as such.

    /usr/bin/python3 bench/engine/run.py --model DIR --build DIR [--threads 1,2] [--dtypes int8,bf16] [--smoke]

--smoke (the CTest smoke, ~10 s): one thread, one timed pass, small workloads, and it fails unless
all three engines ran and agree (cosine >= 0.9999).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(os.path.dirname(HERE), "peers")
PY = "/usr/bin/python3"


def vocab_ids(model_dir):
    with open(os.path.join(model_dir, "vocab.txt"), encoding="utf-8") as f:
        vocab = [line.rstrip("\n") for line in f]
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        size = json.load(f)["vocab_size"]
    return vocab.index("[CLS]"), vocab.index("[SEP]"), min(size, len(vocab))


def make_workloads(model_dir, smoke):
    cls, sep, vocab = vocab_ids(model_dir)
    rng = np.random.RandomState(5)

    def seq(n):
        ids = rng.randint(max(sep + 1, 200) if vocab > 400 else sep + 1, vocab, size=n).tolist()
        ids[0] = cls
        if n > 1:
            ids[-1] = sep
        return ids

    def lengths(count):
        out = []
        for u in rng.random_sample(count):
            if u < 0.80:
                out.append(int(rng.randint(8, 65)))
            elif u < 0.95:
                out.append(int(rng.randint(65, 193)))
            else:
                out.append(int(rng.randint(193, 513)))
        return out

    count = 16 if smoke else 256
    mixed = [seq(n) for n in lengths(count)]
    return {
        "d": [[seq(16)]],
        "a": [[seq(128)]],
        "b": [[seq(128) for _ in range(8)]],
        "c": [mixed[i:i + 32] for i in range(0, count, 32)],
    }


ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16",
             "amx_bf16", "amx_int8")


def machine_line(isa):
    """The CPU model, the ISA flags that decide which kernels run, oneDNN's dispatch, the date."""
    model, flags = "unknown CPU", []
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            if key.strip() == "flags" and not flags:
                present = set(value.split())
                flags = [flag for flag in ISA_FLAGS if flag in present]
    return (f"machine: {model}, {os.cpu_count()} CPUs, ISA {','.join(flags) or 'none of the listed'}, "
            f"oneDNN dispatches {isa}; {time.strftime('%Y-%m-%d', time.gmtime())}")


def write_workload(path, batches):
    words = [len(batches)]
    for seqs in batches:
        words.append(len(seqs))
        words += [len(s) for s in seqs]
        for s in seqs:
            words += s
    np.asarray(words, dtype="<i4").tofile(path)


def peer_env(threads):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)  # let OpenBLAS pick kernels for the real CPU
    env.pop("OPENBLAS_L2_SIZE", None)
    env.update(OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_WAIT_POLICY="PASSIVE")
    return env


class Unsupported(Exception):
    """tideserve refused a dtype this CPU cannot run."""


def run_json(cmd, env=None, cwd=None):
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3600)
    if p.returncode != 0 and "not available on this CPU" in p.stderr:
        raise Unsupported(p.stderr.strip().splitlines()[-1])
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    line = [l for l in p.stdout.splitlines() if l.startswith("{")][-1]
    result = json.loads(line)
    result["wall_s"] = time.monotonic() - t0
    return result


def compare(ours, theirs, hidden):
    a = np.fromfile(ours, dtype="<f4").reshape(-1, hidden).astype(np.float64)
    b = np.fromfile(theirs, dtype="<f4").reshape(-1, hidden).astype(np.float64)
    if a.shape != b.shape:
        return float("inf"), -1.0
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.abs(a - b).max()), float(cos.min())


def fmt_ms(times):
    return f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--build", required=True, help="CMake build dir holding bench/engine")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", default="10,5,3,40", help="timed passes for a,b,c[,d] (d: 4 x a)")
    ap.add_argument("--work", help="scratch dir (default BUILD/bench/engine/work)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--skip", default="", help="workload@threads pairs to leave out, e.g. c@1")
    ap.add_argument("--dtypes", default="int8,bf16", help="reduced precisions to run besides fp32")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    args.model, args.build = os.path.abspath(args.model), os.path.abspath(args.build)

    threads = [1] if args.smoke else [int(t) for t in args.threads.split(",")]
    reps = dict(zip("abcd", [1, 1, 1, 1] if args.smoke else [int(r) for r in args.reps.split(",")]))
    reps.setdefault("d", 4 * reps["a"])
    work = args.work or os.path.join(args.build, "bench", "engine", "work" + ("-smoke" if args.smoke else ""))
    os.makedirs(work, exist_ok=True)
    bench_bin = os.path.join(args.build, "bench", "engine", "engine_bench")
    with open(os.path.join(args.model, "config.json"), encoding="utf-8") as f:
        hidden = json.load(f)["hidden_size"]

    onnx_path = os.path.join(work, "model.onnx")
    weights = os.path.join(args.model, "model.safetensors")
    if not os.path.exists(onnx_path) or os.path.getmtime(onnx_path) < os.path.getmtime(weights):
        subprocess.run([PY, os.path.join(PEERS, "export_onnx.py"), args.model, onnx_path],
                       check=True, cwd=PEERS, capture_output=True)

    workloads = make_workloads(args.model, args.smoke)
    for name, batches in workloads.items():
        write_workload(os.path.join(work, f"{name}.i32"), batches)

    dtypes = [d for d in args.dtypes.split(",") if d]
    unsupported = {}
    no_kernel = {}  # fp32 GEMMs this CPU cannot run
    results = []
    for n in threads:
        for name, batches in workloads.items():
            if f"{name}@{n}" in args.skip.split(","):
                continue
            wl = os.path.join(work, f"{name}.i32")
            row = {"workload": name, "threads": n,
                   "sequences": sum(len(b) for b in batches),
                   "tokens": sum(len(s) for b in batches for s in b),
                   "padded_tokens": sum(len(b) * max(len(s) for s in b) for b in batches)}
            out = {e: os.path.join(work, f"{e}_{name}_{n}.f32") for e in ("ours", "ort", "torch")}
            env = dict(os.environ, OMP_NUM_THREADS=str(n))
            row["ours"] = run_json([bench_bin, "--model", args.model, "--threads", str(n),
                                    "--workload", wl, "--reps", str(reps[name]),
                                    "--out", out["ours"]], env=env)
            row["ort"] = run_json(["node", os.path.join(PEERS, "ort_peer.js"), "--model", onnx_path,
                                   "--threads", str(n), "--workload", wl, "--reps",
                                   str(reps[name]), "--out", out["ort"]], env=env, cwd=PEERS)
            row["torch"] = run_json([PY, os.path.join(PEERS, "torch_peer.py"), "--model", args.model,
                                     "--threads", str(n), "--workload", wl, "--reps",
                                     str(reps[name]), "--out", out["torch"]],
                                    env=peer_env(n), cwd=PEERS)
            row["kernels"] = {}
            for kernel in ("onednn", "packed"):
                if kernel in no_kernel:
                    continue
                try:
                    row["kernels"][kernel] = run_json(
                        [bench_bin, "--model", args.model, "--threads", str(n),
                         "--fp32-kernel", kernel, "--workload", wl, "--reps", str(reps[name]),
                         "--out", os.path.join(work, f"ours_{kernel}_{name}_{n}.f32")], env=env)
                except Unsupported as e:
                    no_kernel[kernel] = str(e)
                    continue
                # A forced kernel must compute what the served one does: checked against ORT.
                row["kernels"][kernel]["vs_ort"] = compare(
                    os.path.join(work, f"ours_{kernel}_{name}_{n}.f32"), out["ort"], hidden)
            row["vs_ort"] = compare(out["ours"], out["ort"], hidden)
            row["vs_torch"] = compare(out["ours"], out["torch"], hidden)
            row["dtypes"] = {}
            for dtype in dtypes:
                if dtype in unsupported:
                    continue
                path = os.path.join(work, f"ours_{dtype}_{name}_{n}.f32")
                try:
                    r = run_json([bench_bin, "--model", args.model, "--threads", str(n),
                                  "--dtype", dtype, "--workload", wl, "--reps", str(reps[name]),
                                  "--out", path], env=env)
                except Unsupported as e:
                    unsupported[dtype] = str(e)
                    continue
                r["vs_fp32"] = compare(out["ours"], path, hidden)
                row["dtypes"][dtype] = r
            results.append(row)
            print(f"  ran ({name}) at {n} thread(s)", file=sys.stderr, flush=True)

    layers = []
    for n in threads:
        for dtype in ["fp32"] + [d for d in dtypes if d not in unsupported]:
            layers.append(run_json([bench_bin, "--model", args.model, "--threads", str(n),
                                    "--dtype", dtype, "--layers-at", "256" if args.smoke else "1024",
                                    "--reps", "1" if args.smoke else "5"],
                                   env=dict(os.environ, OMP_NUM_THREADS=str(n))))

    machine = machine_line(results[0]["ours"].get("isa", "?") if results else "?")
    print("\n### Engine: tideserve vs ONNX Runtime vs PyTorch (fp32)\n")
    print(machine + "\n")
    print("| workload | threads | tideserve ms | ONNX Runtime ms | PyTorch ms | vs ORT | vs PyTorch "
          "| tideserve seq/s | max abs diff ORT / torch | min cosine ORT / torch |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    worst = 1.0
    for r in results:
        med = {e: statistics.median(r[e]["times_ms"]) for e in ("ours", "ort", "torch")}
        desc = {"a": "(a) 1x128", "b": "(b) 8x128", "d": "(d) 1x16",
                "c": f"(c) {r['sequences']} mixed, {r['tokens']} tok ({r['padded_tokens']} padded)"}
        worst = min([worst, r["vs_ort"][1], r["vs_torch"][1]] +
                    [k["vs_ort"][1] for k in r["kernels"].values()])
        print(f"| {desc[r['workload']]} | {r['threads']} | {fmt_ms(r['ours']['times_ms'])} "
              f"| {fmt_ms(r['ort']['times_ms'])} | {fmt_ms(r['torch']['times_ms'])} "
              f"| {med['ort'] / med['ours']:.2f}x | {med['torch'] / med['ours']:.2f}x "
              f"| {r['sequences'] * 1e3 / med['ours']:.1f} "
              f"| {r['vs_ort'][0]:.1e} / {r['vs_torch'][0]:.1e} "
              f"| {r['vs_ort'][1]:.7f} / {r['vs_torch'][1]:.7f} |")
    print("\n(ms: median (min-max) of the timed passes over the whole workload; vs X: X's median / "
          "ours, > 1 means tideserve is faster)")

    print("\n### tideserve fp32: oneDNN's GEMM vs tideserve's packed GEMM (same workloads, same run)\n")
    print(machine + "\n")
    print("| workload | threads | oneDNN only ms | packed only ms | oneDNN / packed "
          "| as served ms | served kernels |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        k = r["kernels"]
        if "onednn" not in k or "packed" not in k:
            continue
        one, packed = (statistics.median(k[e]["times_ms"]) for e in ("onednn", "packed"))
        print(f"| ({r['workload']}) | {r['threads']} | {fmt_ms(k['onednn']['times_ms'])} "
              f"| {fmt_ms(k['packed']['times_ms'])} | {one / packed:.2f}x "
              f"| {fmt_ms(r['ours']['times_ms'])} | {r['ours']['matmul_impl']} |")
    if "packed" in no_kernel:
        print(f"\npacked: not run on this CPU ({no_kernel['packed']})")

    if dtypes:
        print("\n### tideserve in reduced precision (same workloads, same run)\n")
        print(machine + "\n")
        print("| workload | threads | dtype | tideserve ms | vs ORT fp32 | vs tideserve fp32 "
              "| max abs diff vs fp32 | min CLS cosine vs fp32 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in results:
            med_ours = statistics.median(r["ours"]["times_ms"])
            med_ort = statistics.median(r["ort"]["times_ms"])
            for dtype, d in r["dtypes"].items():
                med = statistics.median(d["times_ms"])
                print(f"| ({r['workload']}) | {r['threads']} | {dtype} | {fmt_ms(d['times_ms'])} "
                      f"| {med_ort / med:.2f}x | {med_ours / med:.2f}x | {d['vs_fp32'][0]:.1e} "
                      f"| {d['vs_fp32'][1]:.5f} |")
        for dtype, why in unsupported.items():
            print(f"\n{dtype}: not run on this CPU ({why})")

    print("\n### Layer GFLOP/s vs oneDNN raw matmul at the same shapes\n")
    print(machine + "\n")
    print("| threads | dtype | tokens | layer ms | layer GFLOP/s (GEMM+attn) | GEMM-only GFLOP/s "
          "| raw matmul GFLOP/s, same dtype | layer GEMM / raw | raw f32 | raw bf16 | raw int8 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    raw_key = {"float32": "f32", "bfloat16": "bf16", "int8": "int8"}
    for l in layers:
        raw = l["raw"]
        gemm_rate = l["layer_gemm_gflop"] / l["layer_ms"] * 1e3
        total_rate = (l["layer_gemm_gflop"] + l["layer_attention_gflop"]) / l["layer_ms"] * 1e3

        def raw_cell(v):
            return f"{v['gflops']:.1f} ({v['impl']})" if v["ms"] > 0 else f"n/a ({v['impl'][:60]})"

        same = raw[raw_key[l["dtype"]]]
        print(f"| {l['threads']} | {l['dtype']} | {l['tokens']} | {l['layer_ms']:.2f} "
              f"| {total_rate:.1f} | {gemm_rate:.1f} | {same['gflops']:.1f} "
              f"| {gemm_rate / same['gflops'] * 100 if same['gflops'] else 0:.0f}% "
              f"| {raw_cell(raw['f32'])} | {raw_cell(raw['bf16'])} | {raw_cell(raw['int8'])} |")
    print("\n(GEMM-only: the layer's GEMM FLOPs (int8: operations) over the whole layer time, "
          "attention, LayerNorm, quantization and embeddings' share included in the time, so it is "
          "a lower bound; raw: oneDNN matmul at fixed M in its preferred weight layout, no epilogue)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"results": results, "layers": layers}, f, indent=1)
    if worst < (0.9999 if args.smoke else 0.999):
        sys.exit(f"bench: outputs disagree (lowest cosine {worst:.6f})")
    # A reduced precision that drifts far from fp32 is a bug, not a quantization error.
    for r in results:
        for dtype, d in r["dtypes"].items():
            if d["vs_fp32"][1] < 0.98:
                sys.exit(f"bench: {dtype} disagrees with fp32 on ({r['workload']}) "
                         f"(lowest cosine {d['vs_fp32'][1]:.5f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
