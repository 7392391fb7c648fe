"""The course notebooks follow the conventions the runner and the package rely on."""
import re
import nbformat
import pytest
from conftest import ROOT

NBS = sorted((ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))
LIB = sorted((ROOT / "nbs" / "lib").glob("*.ipynb"))  # the library notebooks: one module each


def test_one_notebook_per_week_in_order():
    weeks = [int(p.name[:2]) for p in NBS]
    assert weeks == list(range(len(weeks))) and len(weeks) >= 3


@pytest.mark.parametrize("path", NBS, ids=lambda p: p.name)
def test_parameters_cell_and_module(path):
    nb = nbformat.read(path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one papermill parameters cell"
    for name in ("profile", "output_dir", "data_dir", "model_name"):
        assert re.search(rf"^{name} = ", params[0].source, re.M), name
    assert any(c.source.startswith("#| default_exp ") for c in nb.cells if c.cell_type == "code")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# Week ")


@pytest.mark.parametrize("path", [*NBS, *LIB, ROOT / "nbs" / "index.ipynb"], ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        for o in c.get("outputs", []):
            assert o.output_type != "error", f"{path.name}: a committed output is an error"
            text = o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            assert not re.search(r"/(root|home|tmp|work)/", text), f"{path.name}: machine path in output: {text[:120]}"
            assert "Traceback" not in text and "\r" not in text, f"{path.name}: traceback or progress bar in output"
            assert "\x1b[" not in text, f"{path.name}: terminal colour codes in output: {text[:120]!r}"
            assert not (o.output_type == "stream" and o.name == "stderr"), f"{path.name}: stray stderr output: {text[:120]}"
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), f"{path.name}: a widget (progress bar) output"


@pytest.mark.parametrize("path", [*NBS, *LIB, ROOT / "nbs" / "index.ipynb"], ids=lambda p: p.name)
def test_exported_cells_are_short(path):
    "A learner takes in a cell of at most ~40 lines; longer code is built up over several cells (fastcore's @patch)."
    nb = nbformat.read(path, as_version=4)
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(nb.cells)
            if c.cell_type == "code" and c.source.startswith("#| export") and len(c.source.splitlines()) > 41]
    assert not long, f"{path.name}: exported cells over 40 lines (cell index, lines): {long}"


@pytest.mark.parametrize("path", LIB, ids=lambda p: p.name)
def test_library_notebook_exports_one_module_of_its_own(path):
    "A library notebook: a title (not a week's), one `#| default_exp`, and no cell exported elsewhere (`#| export other`)."
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ") and not nb.cells[0].source.startswith("# Week ")
    exps = [c.source.split()[2] for c in nb.cells if c.cell_type == "code" and c.source.startswith("#| default_exp ")]
    assert exps == [path.stem], f"{path.name}: default_exp {exps}, expected [{path.stem!r}]"
    assert not [c for c in nb.cells if c.cell_type == "code" and re.match(r"#\| export \S", c.source)], "an export to another module"


def test_no_module_imports_another_modules_private_names():
    "Modules share public names only: `from .other import _name` (or `from mlops_basics.other import _name`) is a reach inside."
    reach = []
    for py in sorted((ROOT / "mlops_basics").glob("*.py")):
        for m in re.finditer(r"^\s*from (?:\.|mlops_basics\.)(\w+) import ([^\n]+)$", py.read_text(), re.M):
            reach += [f"{py.name}: {m[1]}.{n.strip()}" for n in m[2].split(",") if n.strip().startswith("_")]
    assert not reach, reach


def test_the_reading_time_tables_are_up_to_date():
    "The README's and the index's tables are what `mlops-basics-course --reading-time --write` writes today."
    from mlops_basics.core import READING_END, READING_START, reading_table
    table = f"{READING_START}\n{reading_table(ROOT / 'nbs')}\n{READING_END}"
    assert table in (ROOT / "README.md").read_text(), "README.md: stale reading-time table; run mlops-basics-course --reading-time --write"
    index = "".join(c.source for c in nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4).cells)
    assert table in index, "nbs/index.ipynb: stale reading-time table; run mlops-basics-course --reading-time --write"


def test_reading_time_counts_words_and_code_lines(tmp_path):
    from mlops_basics.core import reading_minutes
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(" ".join(["word"] * 360)),
                                         nbformat.v4.new_code_cell("a = 1\n\n" * 24, outputs=[nbformat.v4.new_output("stream", text="x\n" * 99)])])
    nbformat.write(nb, tmp_path / "n.ipynb")
    assert reading_minutes(tmp_path / "n.ipynb") == 360 / 180 + 24 / 12  # blank lines and outputs are not read


def test_each_week_reads_in_an_evening_and_the_course_in_six_hours():
    from mlops_basics.core import COURSE_BUDGET, WEEK_BUDGET, reading_minutes
    mins = {p.name: reading_minutes(p) for p in NBS}
    assert not {k: round(v, 1) for k, v in mins.items() if v > WEEK_BUDGET}, "weeks over budget"
    assert sum(mins.values()) <= COURSE_BUDGET
