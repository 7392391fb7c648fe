"""The CoLA loader and data module: real data, dynamic padding, and clear errors for bad files."""
import pytest
from conftest import real_cola_dir, write_cola
from mlops_basics.cola import ColaDataModule, load_tokenizer
from mlops_basics.core import DataError, load_cola, read_cola_tsv

@pytest.mark.skipif(real_cola_dir() is None, reason="real CoLA not available")
def test_real_cola_sizes_and_labels():
    ds = load_cola(real_cola_dir())
    assert (len(ds["train"]), len(ds["validation"])) == (8551, 1043)
    assert set(ds["train"]["label"]) == {0, 1}
    assert 0.69 < sum(ds["validation"]["label"]) / 1043 < 0.70  # the majority-class baseline


@pytest.mark.parametrize("line, expect", [
    ("gj04\t1\tThe cat sat.", "expected 4 tab-separated columns"),
    ("gj04\t1\t\tThe cat\tsat.", "found 5"),
    ("gj04\t2\t\tThe cat sat.", "label must be 0 or 1, found '2'"),
    ("gj04\tyes\t\tThe cat sat.", "label must be 0 or 1"),
    ("gj04\t1\t\t   ", "the sentence is empty"),
])
def test_bad_lines_name_file_line_and_fix(tmp_path, line, expect):
    f = tmp_path / "train.tsv"
    f.write_text("gj04\t1\t\tA fine sentence.\n" + line + "\n")
    with pytest.raises(DataError) as e:
        read_cola_tsv(f)
    msg = str(e.value)
    assert f"{f}:2:" in msg and expect in msg and "Fix:" in msg


def test_missing_dir_and_file(tmp_path):
    with pytest.raises(DataError, match="data directory not found.*Fix:"):
        load_cola(tmp_path / "nope")
    (tmp_path / "train.tsv").write_text("gj04\t1\t\tOk.\n")
    with pytest.raises(DataError, match="validation.tsv.*Fix:"):
        load_cola(tmp_path)


def test_not_utf8(tmp_path):
    (tmp_path / "x.tsv").write_bytes(b"gj04\t1\t\tcaf\xe9\n")
    with pytest.raises(DataError, match="not UTF-8"):
        read_cola_tsv(tmp_path / "x.tsv")


def test_datamodule_dynamic_padding_and_grouping(tmp_path):
    folder = write_cola(tmp_path / "cola", n_train=200, n_val=50)
    dm = ColaDataModule(load_tokenizer(), dir=str(folder), batch_size=16, eval_batch_size=20)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert sum(len(b["labels"]) for b in batches) == 200
    seen = sorted(int(i) for b in batches for i in b["idx"])
    assert seen == list(range(200))  # every sentence exactly once per epoch
    for b in batches:  # padded to the longest sentence of the batch, not to max_length
        assert b["input_ids"].shape[1] == int(b["attention_mask"].sum(1).max())
    val = list(dm.val_dataloader())
    assert [len(b["labels"]) for b in val] == [20, 20, 10]


def test_hub_unreachable_says_how_to_go_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match=r"could not load nyu-mll/glue/cola from the Hugging Face hub.*Fix: when offline"):
        load_cola(None, hub_id="nyu-mll/glue", hub_config="cola")
