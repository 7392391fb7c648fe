"""Benchmark: per-sentence inference, side by side in one run on the same fine-tuned model.

Paths (CoLA validation sentences, this machine's CPU):
  (a) the 2021 course's serving path: ONNX Runtime fp32, transformers tokenizer, padded to 128, one sentence at a time
  (b) PyTorch eager (the checkpoint), dynamic padding, batch 1 and 32
  (c) our `Predictor` (ONNX Runtime + tokenizers, padding per batch), fp32 and int8, batch 1 and 32
  (d) the int8 we had before: ONNX Runtime's dynamic quantization (activation scales from each batch)

Prints one JSON object: per path median and p99 milliseconds per call and per sentence, sentences/s,
accuracy and MCC on the validation set, agreement with fp32, how far a sentence's score moves with its
batch-mates (`batch_invariance`: alone vs sorted, shuffled and padded-to-the-longest batches of 32),
and the per-sentence speed-up over (a).
Targets: int8 >= 10x faster per sentence than (a); every precision batch-invariant (scores within 1e-4,
no label change); int8 within 0.01 MCC of fp32 and at least as fast as (d) at batch 1 and 32.

    python bench/inference.py [--checkpoint CKPT] [--bundle DIR] [--data-dir DIR] [--n 300] [--threads N]

Without --checkpoint it uses the newest full MiniLM run under ~/.mlops-basics/runs (training one if
there is none); without --bundle it exports one from the checkpoint into a temporary folder.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
import numpy as np
from machine import machine  # bench/machine.py: cores, CPU model and features
from mlops_basics.core import MlopsBasicsError, fail

def timed(fn, items, warmup: int = 5) -> list[float]:
    "Seconds of `fn(item)` for each item (after a few warm-up calls)."
    for it in items[:warmup]:
        fn(it)
    out = []
    for it in items:
        t0 = time.perf_counter()
        fn(it)
        out.append(time.perf_counter() - t0)
    return out


def summary(secs: list[float], per_call: int, preds, labels) -> dict:
    "Median/p99 per call and per sentence, throughput and quality."
    from mlops_basics.bundle import classification_metrics
    med, p99 = statistics.median(secs), float(np.percentile(secs, 99))
    return {"batch": per_call, "median_ms_per_call": round(1000 * med, 3), "p99_ms_per_call": round(1000 * p99, 3),
            "median_ms_per_sentence": round(1000 * med / per_call, 3), "sent_per_s": round(per_call / med, 1),
            **classification_metrics(labels, preds)}


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench/inference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint")
    p.add_argument("--bundle")
    p.add_argument("--data-dir")
    p.add_argument("--n", type=int, default=300, help="timed single-sentence calls per path (default 300)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime / torch threads (default: all cores)")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnxruntime as ort
    import torch
    from mlops_basics.bundle import batch_invariance, export_bundle, load_checkpoint, torch_logits, validation_set
    from mlops_basics.cola import load_tokenizer
    from mlops_basics.predict import Predictor
    from mlops_basics.versioning import ensure_checkpoint

    if a.threads:
        torch.set_num_threads(a.threads)
    ckpt = a.checkpoint or ensure_checkpoint("minilm", "full", a.data_dir)
    tmp = tempfile.TemporaryDirectory(prefix="mlops-basics-bench-")
    bundle = a.bundle or export_bundle(ckpt, Path(tmp.name) / "bundle", a.data_dir) and Path(tmp.name) / "bundle"
    sentences, labels = validation_set(a.data_dir)
    n = min(a.n, len(sentences))
    singles = sentences[:n]
    batches = [sentences[k:k + 32] for k in range(0, len(sentences) - 31, 32)]
    res = {"benchmark": "inference", **machine(),
           "onnxruntime": ort.__version__, "torch": torch.__version__, "n_validation": len(sentences),
           "n_single_calls": n, "batches_of_32": len(batches), "threads": a.threads or "default", "paths": {}}
    P = res["paths"]

    # (a) 2021 serving path: transformers tokenizer, padding="max_length" 128, ORT fp32, one at a time
    model = load_checkpoint(ckpt)
    hf_tok = load_tokenizer(**model.hparams.backbone)
    opts = ort.SessionOptions()
    if a.threads:
        opts.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(str(Path(bundle) / "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def old_2021(text: str) -> int:
        enc = hf_tok([text], padding="max_length", max_length=128, truncation=True, return_tensors="np",
                     return_token_type_ids=False)
        logits = sess.run(None, {"input_ids": enc["input_ids"].astype(np.int64),
                                 "attention_mask": enc["attention_mask"].astype(np.int64)})[0]
        return int(logits.argmax(-1)[0])
    secs = timed(old_2021, singles)
    P["a_2021_onnx_fp32_pad128_batch1"] = summary(secs, 1, [old_2021(s) for s in sentences], labels)

    # (b) PyTorch eager, dynamic padding
    secs = timed(lambda s: torch_logits(model, hf_tok, [s]), singles)
    preds = torch_logits(model, hf_tok, sentences).argmax(-1)
    P["b_pytorch_eager_batch1"] = summary(secs, 1, preds, labels)
    secs = timed(lambda b: torch_logits(model, hf_tok, b, batch_size=32), batches, warmup=2)
    P["b_pytorch_eager_batch32"] = summary(secs, 32, preds, labels)

    # (c) our predictor, fp32 and int8; (d) the dynamic int8 of before, from the same fp32 model
    dyn = Path(tmp.name) / "dynamic"
    dyn.mkdir()
    for f in ("model.onnx", "tokenizer.json", "manifest.json"):
        (dyn / f).symlink_to(Path(bundle).resolve() / f)
    from onnxruntime.quantization import QuantType, quantize_dynamic
    quantize_dynamic(str(dyn / "model.onnx"), str(dyn / "model.int8.onnx"), weight_type=QuantType.QInt8,
                     per_channel=True, extra_options={"DefaultTensorType": 1})
    fp32_preds = None
    for name, b, prec in (("c_predictor_fp32", bundle, "fp32"), ("c_predictor_int8", bundle, "int8"),
                          ("d_int8_dynamic_before", dyn, "int8")):
        pr = Predictor(b, prec, threads=a.threads, verify=b is bundle)
        preds = pr.logits(sentences).argmax(-1)
        fp32_preds = preds if fp32_preds is None else fp32_preds
        inv = batch_invariance(pr, sentences)
        for k, items, per in (("batch1", [[s] for s in singles], 1), ("batch32", batches, 32)):
            P[f"{name}_{k}"] = summary(timed(pr.predict, items, warmup=2), per, preds, labels)
            P[f"{name}_{k}"].update(agreement_with_fp32=round(float((preds == fp32_preds).mean()), 4), batch_invariance=inv)

    base = P["a_2021_onnx_fp32_pad128_batch1"]["median_ms_per_sentence"]
    for v in P.values():
        v["speedup_per_sentence_vs_a"] = round(base / v["median_ms_per_sentence"], 2)
    i8, f32 = P["c_predictor_int8_batch1"], P["c_predictor_fp32_batch1"]
    res["target"] = {"int8_speedup_vs_a_min": 10, "int8_mcc_within_of_fp32": 0.01, "batch_invariance_max_score_diff": 1e-4}
    res["int8_batch1_speedup_vs_a"] = i8["speedup_per_sentence_vs_a"]
    res["int8_mcc_minus_fp32"] = round(i8["mcc"] - f32["mcc"], 4)
    res["int8_vs_dynamic_before"] = {k: round(P[f"d_int8_dynamic_before_{k}"]["median_ms_per_sentence"]
                                              / P[f"c_predictor_int8_{k}"]["median_ms_per_sentence"], 2) for k in ("batch1", "batch32")}
    invariant = all(v["batch_invariance"]["max_score_diff"] <= 1e-4 and not v["batch_invariance"]["label_changes"]
                    for k, v in P.items() if k.startswith("c_"))
    res["meets_target"] = {"int8_10x_vs_a": i8["speedup_per_sentence_vs_a"] >= 10, "batch_invariant": invariant,
                           "int8_mcc_within_0.01": abs(res["int8_mcc_minus_fp32"]) <= 0.01,
                           "int8_as_fast_as_before": min(res["int8_vs_dynamic_before"].values()) >= 1.0}
    tmp.cleanup()
    return res


if __name__ == "__main__":
    try:
        print(json.dumps(main(sys.argv[1:]), indent=1))
    except MlopsBasicsError as e:
        fail("bench/inference.py", e)
