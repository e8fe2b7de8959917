"""Exports the benchmark model to ONNX with torch.onnx.export (opset 14, dynamic batch and
sequence axes) for the ONNX Runtime peer: /usr/bin/python3 export_onnx.py MODEL_DIR OUT.onnx"""
import sys

import torch

import bert_torch


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    cfg = bert_torch.load_config(model_dir)
    model = bert_torch.Bert(cfg, bert_torch.load_weights(model_dir)).eval()
    ids = torch.ones(2, 16, dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, torch.zeros_like(ids), torch.ones_like(ids)), out,
            input_names=["input_ids", "token_type_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in
                          ("input_ids", "token_type_ids", "attention_mask", "last_hidden_state")},
            opset_version=14, do_constant_folding=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
