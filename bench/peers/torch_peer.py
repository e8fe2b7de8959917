"""The PyTorch peer of the engine benchmark: torch.nn.TransformerEncoder's fast path under
torch.inference_mode(), batches padded to their longest sequence (the fast path turns a padded
batch with a key padding mask into a nested tensor, so it skips the padding too).

    OPENBLAS_NUM_THREADS=N OMP_NUM_THREADS=N OMP_WAIT_POLICY=PASSIVE \
        /usr/bin/python3 torch_peer.py --model DIR --threads N --workload FILE --reps R --out FILE

Threads (run.py sets this environment): OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are unset so
OpenBLAS picks its kernels for the real CPU; torch's OpenMP pool (LayerNorm, softmax, GELU, the
fast path's own kernels) and OpenBLAS's pthread pool (the GEMMs) both get N threads, with
OMP_WAIT_POLICY=PASSIVE so idle OpenMP workers sleep instead of spinning while OpenBLAS runs.
Prints one JSON line like engine_bench and writes the CLS vectors to --out.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch

import bert_torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    cfg = bert_torch.load_config(args.model)
    model = bert_torch.FastPathBert(cfg, bert_torch.load_weights(args.model)).eval()
    batches = [bert_torch.pad_batch(seqs) for seqs in bert_torch.read_workload(args.workload)]
    cls = []
    with torch.inference_mode():
        model(*batches[0])  # warm-up: the first batch
        times = []
        for r in range(args.reps):
            t0 = time.perf_counter()
            for ids, types, mask in batches:
                out = model(ids, types, mask)
                if r == 0:  # the compared output (copying a [B, H] slice costs microseconds)
                    cls.append(out[:, 0, :].numpy().copy())
            times.append((time.perf_counter() - t0) * 1e3)
    np.concatenate(cls).astype("<f4").tofile(args.out)
    print(json.dumps({"engine": "pytorch", "threads": args.threads, "torch": torch.__version__,
                      "times_ms": [round(t, 3) for t in times]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
