#!/usr/bin/python3
"""Where the int8 path's error comes from, on one BERT-base-shaped layer call (numpy, float64
reference): y = x W^T with x ~ N(0, 1) [512, 768] and W ~ N(0, 0.04) [768, 768] (the bench
model's statistics), quantized as engine/linear.cc does: W symmetric per output row with 7 bits
(|q| <= 63, CPUs without VNNI) or 8 bits (127), x to u8 with one scale and zero point for the
whole input. Prints the relative RMS error of y for each part alone and together.

    /usr/bin/python3 bench/engine/int8_error.py
"""
import numpy as np


def quantize_rows(w, limit):
    scale = np.abs(w).max(axis=1, keepdims=True) / limit
    return np.clip(np.round(w / scale), -limit, limit) * scale


def quantize_u8(x):
    lo, hi = min(x.min(), 0.0), max(x.max(), 0.0)
    scale = (hi - lo) / 255
    zero = np.round(-lo / scale)
    return (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale


def main():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.04, (768, 768))
    x = rng.normal(0, 1, (512, 768))
    y = x @ w.T

    def err(xx, ww):
        return np.sqrt(((xx @ ww.T - y) ** 2).sum() / (y ** 2).sum())

    xq = quantize_u8(x)
    print("relative RMS error of one layer call")
    print(f"  u8 activations alone:            {err(xq, w):.4f}")
    for limit, name in ((63, "7-bit"), (127, "8-bit")):
        wq = quantize_rows(w, limit)
        print(f"  {name} weights alone:            {err(x, wq):.4f}")
        print(f"  {name} weights + u8 activations: {err(xq, wq):.4f}")


if __name__ == "__main__":
    main()
