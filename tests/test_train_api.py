"""`train()` in-process: the partial checkpoint folder never survives a failed run."""
import lightning as L
import pytest
import mlops_basics.cola as C
import mlops_basics.train as T

class Boom(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 2:
            raise RuntimeError("simulated crash")


def test_crash_mid_training_leaves_no_checkpoint(cola_dir, tmp_path, monkeypatch):
    real = C.make_trainer
    monkeypatch.setattr(C, "make_trainer", lambda *a, callbacks=(), **k: real(*a, callbacks=[*callbacks, Boom()], **k))
    cfg = T.compose_config(["model=tiny_random", "training=smoke", "logger=csv", f"data.dir={cola_dir}"])
    with pytest.raises(RuntimeError, match="simulated crash"):
        T.train(cfg, tmp_path / "run")
    assert not list((tmp_path / "run").rglob("*.ckpt"))
    assert not (tmp_path / "run" / "checkpoints.partial").exists() and not (tmp_path / "run" / "checkpoints").exists()


def test_checkpoint_reloads_and_predicts(cola_dir, tmp_path):
    from mlops_basics.cola import ColaModel, load_tokenizer, predict_sentences
    cfg = T.compose_config(["model=tiny_random", "training=smoke", "logger=csv", f"data.dir={cola_dir}"])
    s = T.train(cfg, tmp_path / "run")
    model = ColaModel.load_from_checkpoint(s["checkpoint"], map_location="cpu")
    out = predict_sentences(model, load_tokenizer(), ["The cat saw the ball.", "ball the saw cat The."])
    assert [r["label"] in ("acceptable", "unacceptable") for r in out] == [True, True]
