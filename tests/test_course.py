"""The course runner: executes notebooks with papermill and names the notebook and cell that broke."""
import nbformat
from nbformat.v4 import new_code_cell, new_notebook
from conftest import run_cli

def notebook(path, *sources):
    params = new_code_cell('profile = "full"\noutput_dir = None', metadata={"tags": ["parameters"]})
    nb = new_notebook(cells=[params, *map(new_code_cell, sources)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)


def test_runner_executes_in_order_and_names_the_broken_cell(tmp_path, home):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    notebook(nbs / "00_ok.ipynb", "assert profile == 'smoke', profile\nprint(output_dir)")
    notebook(nbs / "01_broken.ipynb", "x = 1", "raise ValueError('boom in week one')")
    notebook(nbs / "02_never.ipynb", "print('unreachable')")
    r = run_cli("mlops-basics-course", "--nbs", str(nbs), "--out", str(out), home=home, timeout=180)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("mlops-basics-course: error: 01_broken.ipynb: cell 3") and "ValueError: boom in week one" in last
    assert (out / "00_ok.ipynb").is_file() and (out / "01_broken.ipynb").is_file() and not (out / "02_never.ipynb").exists()
    executed = nbformat.read(out / "00_ok.ipynb", as_version=4)
    assert any("smoke" in c.source for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))


def test_runner_rejects_bad_arguments(tmp_path, home):
    r = run_cli("mlops-basics-course", "--nbs", str(tmp_path), home=home, timeout=60)
    assert r.returncode == 1 and "no course notebooks" in r.stderr
    r = run_cli("mlops-basics-course", "--profile", "huge", home=home, timeout=60)
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_side_by_side_each_notebook_gets_a_home_of_its_own_and_a_failure_is_named(tmp_path, home):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    for week in ("00_a", "01_b", "02_c"):  # each writes a marker in its home; a shared home would show the others' markers
        notebook(nbs / f"{week}.ipynb", "import os, pathlib, time\nh = pathlib.Path(os.environ['MLOPS_BASICS_HOME'])\n"
                 f"h.mkdir(parents=True, exist_ok=True); (h / '{week}').touch(); time.sleep(1)\n"
                 f"assert [p.name for p in h.iterdir()] == ['{week}'], list(h.iterdir())")
    r = run_cli("mlops-basics-course", "--nbs", str(nbs), "--out", str(out), "--jobs", "2", home=home, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3 notebooks (smoke), 2 at a time" in r.stdout and r.stdout.count(" ok in ") == 3
    assert sorted(p.name for p in (out / "home").iterdir()) == ["00_a", "01_b", "02_c"]
    notebook(nbs / "01_b.ipynb", "raise ValueError('boom side by side')")
    r = run_cli("mlops-basics-course", "--nbs", str(nbs), "--out", str(tmp_path / "out2"), "-j", "2", home=home, timeout=180)
    assert r.returncode == 1 and "01_b.ipynb: cell 2" in r.stderr and "boom side by side" in r.stderr, r.stderr[-2000:]
    r = run_cli("mlops-basics-course", "--nbs", str(nbs), "--jobs", "0", home=home, timeout=60)
    assert r.returncode == 1 and r.stderr.strip().endswith("Fix: --jobs 1 (in order) or more.")


def test_in_order_the_notebooks_share_one_home_and_week4_finds_week0s_checkpoint(tmp_path, home):
    nbs, out = tmp_path / "nbs", tmp_path / "out"
    nbs.mkdir()
    notebook(nbs / "00_a.ipynb", "import os, pathlib\nrun = pathlib.Path(os.environ['MLOPS_BASICS_HOME']) / 'runs' / 'week0_minilm-full'\n"
             "(run / 'checkpoints').mkdir(parents=True); (run / 'checkpoints' / 'best.ckpt').write_text('week 0')")
    notebook(nbs / "01_b.ipynb", "from pathlib import Path\nfrom mlops_basics.versioning import ensure_checkpoint\n"
             "ckpt = Path(ensure_checkpoint('minilm', 'full'))  # would train for minutes if it missed week 0's run\n"
             "assert ckpt.read_text() == 'week 0' and ckpt.parts[-3] == 'week0_minilm-full', ckpt")
    r = run_cli("mlops-basics-course", "--nbs", str(nbs), "--out", str(out), home=home, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "home" / "runs" / "week0_minilm-full").is_dir() and not (home / "runs").exists()
