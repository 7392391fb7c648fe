"""The model bundle and the torch-free predictor: real export, real ONNX Runtime, real processes for the CLI."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
import pytest
from conftest import ROOT, run_cli

@pytest.fixture
def copy_of(bundle, tmp_path):
    def make() -> Path:
        d = tmp_path / "copy"
        shutil.copytree(bundle, d)
        return d
    return make


def test_importing_the_predictor_or_the_bundle_tools_does_not_import_the_training_stack():
    code = ("import sys, mlops_basics.predict, mlops_basics.bundle; "
            "print(sorted(m for m in ('torch', 'lightning', 'transformers', 'datasets', 'onnx', 'hydra') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


HEAVY = ("torch", "lightning", "transformers", "datasets")


def _heavy_modules_after(mod: str, argv: list[str], **env) -> list[str]:
    "Run `mod.main(argv)` in a fresh Python; the heavy modules it imported."
    code = ("import sys, json\n"
            f"from {mod} import main\n"
            "try:\n"
            f"    main({argv!r})\n"
            "except SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **env}, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_reading_cola_and_scoring_a_bundle_import_no_training_stack(bundle, trained, tmp_path):
    # the DVC data stage: read and check CoLA, copy it
    assert _heavy_modules_after("mlops_basics.dvc_cli", ["fetch-data", str(tmp_path / "cola"), "--data-dir", str(trained["data"])]) == []
    assert sorted(p.name for p in (tmp_path / "cola").iterdir()) == ["train.tsv", "validation.tsv"]
    # the DVC evaluate stage: score both precisions on the validation set
    assert _heavy_modules_after("mlops_basics.bundle", ["evaluate", str(bundle), "--data-dir", str(trained["data"]),
                                                         "--out", str(tmp_path / "eval")]) == []
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 48


def test_bundle_has_the_contract_files_and_a_complete_manifest(bundle, trained):
    from mlops_basics.predict import sha256_file
    assert sorted(p.name for p in bundle.iterdir()) == ["manifest.json", "model.int8.onnx", "model.onnx", "tokenizer.json"]
    assert not (bundle.parent / "bundle.partial").exists()
    m = json.loads((bundle / "manifest.json").read_text())
    assert m["format"] == "mlops-basics-bundle/1" and m["labels"] == ["unacceptable", "acceptable"]
    assert m["max_length"] == 64 and m["backbone"]["source"] == "random"
    for name, f in m["files"].items():
        assert sha256_file(bundle / name) == f["sha256"] and (bundle / name).stat().st_size == f["bytes"]
    assert m["version"] == m["files"]["model.onnx"]["sha256"][:12]
    assert m["checkpoint_sha256"] == sha256_file(trained["checkpoint"])
    assert m["config"]["model"]["name"] == "tiny_random" and "val/mcc" in m["metrics"]["train"]
    assert m["parity"]["fp32"]["n"] == 48 and m["parity"]["fp32"]["max_abs_logit_diff"] < 1e-3
    assert m["parity"]["fp32"]["argmax_agreement"] == 1.0
    assert {"pytorch", "onnx_fp32", "onnx_int8"} <= set(m["metrics"]) and m["created"].endswith("Z")
    assert (bundle / "model.int8.onnx").stat().st_size < 0.6 * (bundle / "model.onnx").stat().st_size
    # no machine paths travel with the bundle (it goes into images and remotes)
    text = (bundle / "manifest.json").read_text()
    assert "paths" not in m["config"] and str(trained["tmp"]) not in text and '"/' not in text


def test_onnx_model_has_dynamic_batch_and_sequence_axes_and_no_external_data(bundle):
    import onnx
    g = onnx.load(str(bundle / "model.onnx"), load_external_data=False).graph
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in g.initializer)
    for i in g.input:
        dims = i.type.tensor_type.shape.dim
        assert len(dims) == 2 and all(d.dim_param and not d.dim_value for d in dims), i


def test_predictions_match_pytorch_and_keep_input_order(bundle, trained):
    from mlops_basics.bundle import load_checkpoint, torch_logits
    from mlops_basics.cola import load_tokenizer
    from mlops_basics.predict import Predictor
    sents = ["The cat saw the ball.", "ball the saw cat The.", "A dog found a book.", "book a found dog A.", "My friend took the car."]
    model = load_checkpoint(trained["checkpoint"])
    ref = torch_logits(model, load_tokenizer(**model.hparams.backbone), sents)
    p = Predictor(bundle, "fp32", chunk=2)  # several padded chunks, sorted by length
    res = p.predict(sents)
    assert [r["label"] for r in res] == [p.labels[i] for i in ref.argmax(-1)]
    assert all(0.5 <= r["score"] <= 1 and r["truncated"] is False for r in res)
    assert res == [p.predict([s])[0] for s in sents]  # batching changes nothing
    assert p.version == json.loads((bundle / "manifest.json").read_text())["version"]
    assert Predictor(bundle).precision == "fp32"  # the exact model is the default; int8 is the fast option


def test_long_text_is_truncated_to_max_length_and_flagged(bundle):
    from mlops_basics.predict import Predictor
    p = Predictor(bundle)
    long, short = " ".join(["The cat saw the ball."] * 40), "The cat saw the ball."
    r = p.predict([long, short])
    assert r[0]["truncated"] is True and r[0]["tokens"] == 64
    assert r[1]["truncated"] is False and r[1]["tokens"] < 64
    assert p.predict(["word " * 100_000])[0]["truncated"] is True  # cut to max_chars before tokenizing


@pytest.mark.parametrize("bad, msg", [
    ([], "no sentences given"),
    ([""], "sentence 0 is empty"),
    (["ok", "  \n\t"], "sentence 1 is empty or only whitespace"),
    (["ok", 3], "sentence 1 is a int, not text"),
    (["ok", None], "sentence 1 is a NoneType"),
    ("a plain string", "got a single string"),
    ({"text": "x"}, "got dict"),
    (["x"] * 9, "9 sentences in one call, the limit is 8"),
])
def test_bad_input_is_refused_with_a_clear_message(bundle, bad, msg):
    from mlops_basics.predict import InputError, Predictor
    with pytest.raises(InputError, match=msg):
        Predictor(bundle, max_batch=8).predict(bad)


@pytest.mark.parametrize("damage, msg", [
    (lambda d: (d / "model.int8.onnx").write_bytes((d / "model.int8.onnx").read_bytes()[:-10] + b"0123456789"), "does not match its sha256"),
    (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json is missing"),
    (lambda d: (d / "manifest.json").unlink(), "has no manifest.json"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "is not valid JSON"),
    (lambda d: (d / "manifest.json").write_text('{"format": "other"}'), "is not a mlops-basics-bundle/1 manifest"),
])
def test_tampered_or_incomplete_bundle_is_refused(copy_of, damage, msg):
    from mlops_basics.predict import BundleError, Predictor, verify_bundle
    d = copy_of()
    damage(d)
    with pytest.raises(BundleError, match=msg):
        verify_bundle(d)
    with pytest.raises(BundleError, match=msg):
        Predictor(d, "int8")


def test_fp32_file_changed_is_caught_by_verify_even_when_only_int8_is_loaded(copy_of):
    from mlops_basics.predict import BundleError, Predictor, verify_bundle
    d = copy_of()
    with open(d / "model.onnx", "r+b") as f:
        f.seek(-50, 2)
        f.write(b"\xff" * 4)
    Predictor(d, "int8")  # loads only what it uses
    with pytest.raises(BundleError, match="model.onnx does not match"):
        verify_bundle(d)


def test_failed_parity_check_writes_no_bundle(trained, tmp_path):
    from mlops_basics.bundle import export_bundle
    from mlops_basics.predict import BundleError
    with pytest.raises(BundleError, match="ONNX and PyTorch disagree"):
        export_bundle(trained["checkpoint"], tmp_path / "b", data_dir=trained["data"], atol=0.0, limit=8)
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_to_overwrite_and_bad_checkpoints(bundle, trained, tmp_path):
    from mlops_basics.bundle import export_bundle
    from mlops_basics.core import ConfigError
    with pytest.raises(ConfigError, match="already exists"):
        export_bundle(trained["checkpoint"], bundle, data_dir=trained["data"])
    with pytest.raises(ConfigError, match="checkpoint not found"):
        export_bundle(tmp_path / "nope.ckpt", tmp_path / "b", data_dir=trained["data"])
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="is not a mlops-basics checkpoint"):
        export_bundle(tmp_path / "junk.ckpt", tmp_path / "b", data_dir=trained["data"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.ckpt"]


# --- the command line, in real processes ---

def test_cli_help_lists_commands_and_examples(home):
    r = run_cli("mlops-basics-bundle", "--help", home=home)
    assert r.returncode == 0
    for word in ("export", "verify", "evaluate", "predict", "examples:", "MLOPS_BASICS_BUNDLE"):
        assert word in r.stdout
    r = run_cli("mlops-basics-bundle", "predict", "--help", home=home)
    assert "--file" in r.stdout and "--json" in r.stdout


def test_cli_export_verify_evaluate_and_predict(trained, home, tmp_path):
    b = tmp_path / "b"
    r = run_cli("mlops-basics-bundle", "export", trained["checkpoint"], str(b), "--data-dir", str(trained["data"]), home=home)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4/4 bundle" in r.stderr and f"in {b}" in r.stdout
    assert "Quantization parameters" not in r.stderr  # the quantizer's chatter stays quiet
    r = run_cli("mlops-basics-bundle", "verify", str(b), home=home)
    assert r.returncode == 0 and "all 3 files match" in r.stdout
    r = run_cli("mlops-basics-bundle", "evaluate", str(b), "--data-dir", str(trained["data"]), "--out", str(tmp_path / "eval"), home=home)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["n"] == 48 and {"acc", "mcc"} <= set(m["int8"]) and 0 <= m["int8_agreement"] <= 1
    assert len((tmp_path / "eval" / "predictions.csv").read_text().splitlines()) == 49
    r = run_cli("mlops-basics-bundle", "predict", "-b", str(b), "--json", "The cat saw the ball.", "cat The ball saw.", home=home)
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and [x["sentence"] for x in rows] == ["The cat saw the ball.", "cat The ball saw."]
    assert all(x["label"] in ("acceptable", "unacceptable") and x["version"] for x in rows)
    f = tmp_path / "s.txt"
    f.write_text("The cat saw the ball.\n\nA dog found a book.\n")
    r = run_cli("mlops-basics-bundle", "predict", "--file", str(f), home=home, MLOPS_BASICS_BUNDLE=str(b))
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2  # blank lines skipped
    r = subprocess.run([str(Path(sys.executable).parent / "mlops-basics-bundle"), "predict", "-b", str(b), "--file", "-"],
                       input="One sentence here.\n", capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("One sentence here.")


@pytest.mark.parametrize("args, msg", [
    (["predict", "-b", "{tmp}/missing", "Hello."], "model bundle not found"),
    (["predict", "-b", "{bundle}"], "no sentences given"),
    (["predict", "-b", "{bundle}", "   "], "sentence 0 is empty"),
    (["predict", "-b", "{bundle}", "--file", "{tmp}/nofile.txt"], "cannot read"),
    (["export", "{tmp}/none.ckpt", "{tmp}/b"], "checkpoint not found"),
    (["verify", "{tmp}"], "has no manifest.json"),
])
def test_cli_errors_are_one_line_without_traceback(bundle, tmp_path, home, args, msg):
    args = [a.format(tmp=tmp_path, bundle=bundle) for a in args]
    r = run_cli("mlops-basics-bundle", *args, home=home)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("mlops-basics-bundle: error: ") and msg in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_every_precision_gives_each_sentence_the_same_answer_in_any_batch(minilm_bundle, precision):
    "The whole validation set: alone vs length-sorted chunks, shuffled batch-mates, and padded to the longest sentence."
    from conftest import real_cola_dir
    from mlops_basics.bundle import batch_invariance, validation_set
    from mlops_basics.predict import Predictor
    sentences, _ = validation_set(real_cola_dir())
    b = batch_invariance(Predictor(minilm_bundle, precision), sentences)
    assert b["n"] == len(sentences) == 1043
    assert b["max_score_diff"] <= 1e-4 and b["label_changes"] == 0, b
    m = json.loads((minilm_bundle / "manifest.json").read_text())
    assert m["parity"][precision]["batch_invariance"]["max_score_diff"] <= 1e-4  # the export checked it too


@pytest.mark.slow
def test_dynamic_int8_depends_on_the_batch_and_the_export_refuses_it(minilm_bundle, tmp_path):
    "The control: ONNX Runtime's dynamic quantization moves scores with the batch, and the check catches it."
    import logging
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from conftest import real_cola_dir
    from mlops_basics.bundle import batch_invariance, check_batch_invariance, validation_set
    from mlops_basics.predict import BundleError, Predictor
    d = tmp_path / "dynamic"
    shutil.copytree(minilm_bundle, d)
    logging.getLogger().setLevel(logging.ERROR)
    quantize_dynamic(str(d / "model.onnx"), str(d / "model.int8.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": 1})
    sentences, _ = validation_set(real_cola_dir(), 300)
    b = batch_invariance(Predictor(d, "int8", verify=False), sentences)
    assert b["max_score_diff"] > 1e-3, b
    with pytest.raises(BundleError, match="depend on the batch"):
        check_batch_invariance(b, "int8")


def test_int8_uses_fixed_activation_scales_and_fused_integer_kernels(bundle):
    import onnx
    ops = [n.op_type for n in onnx.load(str(bundle / "model.int8.onnx")).graph.node]
    assert "DynamicQuantizeLinear" not in ops and "DynamicQuantizeMatMul" not in ops
    assert "QuantizeLinear" in ops and "MatMulIntegerToFloat" in ops and "MatMulInteger" not in ops
    q = json.loads((bundle / "manifest.json").read_text())["quantization"]
    assert q["calibration_sentences"] == 64 and q["fused_matmuls"] == ops.count("MatMulIntegerToFloat")
