"""The package as pip builds it: configs ship inside the wheel, and the serve extra has no torch."""
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser

from conftest import ROOT


def build_wheel(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for f in ("setup.py", "settings.ini", "README.md"):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / "mlops_basics", src / "mlops_basics", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = (tmp_path / "dist").glob("*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_ships_configs_and_a_torch_free_serve_extra(tmp_path):
    whl = build_wheel(tmp_path)
    names = set(whl.namelist())
    for group in ("config", "model/minilm", "model/bert_tiny", "model/tiny_random", "training/full", "training/smoke",
                  "data/cola", "logger/wandb", "logger/csv"):
        assert f"mlops_basics/conf/{group}.yaml" in names, group
    meta = Parser().parsestr(whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    reqs = meta.get_all("Requires-Dist")
    serve = [r.split(";")[0].strip() for r in reqs if "extra == \"serve\"" in r]
    core = [r for r in reqs if "extra ==" not in r]
    assert serve and {"onnxruntime", "tokenizers", "fastapi"} <= {r.split(">")[0].split("=")[0].split("<")[0] for r in serve}
    heavy = ("torch", "lightning", "transformers", "datasets")
    assert not [r for r in serve + core if r.split(">")[0].split("=")[0].split("<")[0].strip() in heavy]
    entry = whl.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mlops-basics-train = mlops_basics.train:main" in entry and "mlops-basics-course = mlops_basics.core:main" in entry
