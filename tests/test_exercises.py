"""Every week's "Try it" checks are real: each says "not done yet" on the untouched notebook and "done" with its solution.

The exercise cells of a notebook (from its "## Try it" heading to the end) run after its parameters cell in a
fresh kernel, twice: as committed, and with each `# Exercise N` cell replaced by its block in nbs/solutions/."""
import re
import nbformat
import pytest
from nbclient import NotebookClient
from conftest import ROOT, real_cola_dir

WEEKS = sorted(p.stem for p in (ROOT / "nbs").glob("[0-9][0-9]_*.ipynb"))


def solutions(week: str) -> dict[int, str]:
    "The solution blocks of a week: exercise number -> the code that replaces its cell."
    text = (ROOT / "nbs" / "solutions" / f"{week}.py").read_text()
    blocks = re.split(r"^# %% Exercise (\d+)\n", text, flags=re.M)[1:]
    return {int(n): code.strip() for n, code in zip(blocks[::2], blocks[1::2])}


def try_it(week: str, solved: bool) -> nbformat.NotebookNode:
    "The notebook's parameters cell and its Try-it section, optionally with the solutions applied."
    nb = nbformat.read(ROOT / "nbs" / f"{week}.ipynb", as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("## Try it"))
    params = next(c for c in nb.cells if c.cell_type == "code" and "MLOPS_BASICS_PROFILE" in c.source)
    cells = [params] + [c for c in nb.cells[start:] if c.cell_type == "code"]
    sol = solutions(week)
    for c in cells:
        m = re.match(r"# Exercise (\d+):", c.source)
        if m and solved:
            c.source = sol[int(m[1])]
    nb.cells = cells
    return nb


def check_lines(nb) -> list[str]:
    "The one-line verdicts the check cells printed."
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                raise AssertionError(f"a cell raised {o['ename']}: {o['evalue'][:300]}\n{c.source[:300]}")
            if o.get("name") == "stdout":
                out += [l for l in o["text"].splitlines() if l[:2] in ("✓ ", "✗ ")]
    return out


def run(nb, tmp_path):
    "Execute in a fresh kernel (it inherits this process's environment); the check lines."
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return check_lines(nb)


@pytest.mark.parametrize("week", WEEKS)
def test_every_check_fails_untouched_and_passes_with_its_solution(week, tmp_path, monkeypatch):
    if real_cola_dir() is None:
        pytest.skip("needs the CoLA folder (MLOPS_BASICS_DATA_DIR or ../shared/data/cola)")
    monkeypatch.setenv("MLOPS_BASICS_DATA_DIR", str(real_cola_dir()))
    monkeypatch.setenv("MLOPS_BASICS_HOME", str(tmp_path / "home"))  # restored after the test
    monkeypatch.setenv("MLOPS_BASICS_PROFILE", "smoke")
    n = len(solutions(week))
    assert 3 <= n <= 5, f"{week}: {n} exercises; a week has 3 to 5"
    untouched = run(try_it(week, solved=False), tmp_path)
    assert len(untouched) == n and all(l.startswith("✗ ") and "not done yet" in l for l in untouched), untouched
    solved = run(try_it(week, solved=True), tmp_path)
    assert len(solved) == n and all(l.startswith("✓ ") and l.endswith(": done") for l in solved), solved


def test_week6_exercise1_refuses_an_input_pasted_into_run(tmp_path, monkeypatch):
    "Exercise 1 solved the unsafe way, `${{ inputs.greeting }}` inside `run:` (a script injection), stays not done."
    monkeypatch.setenv("MLOPS_BASICS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_BASICS_PROFILE", "smoke")
    nb = try_it("06_ci_cd", solved=True)
    cell = next(c for c in nb.cells if c.source.startswith("# Exercise 1:"))
    safe = '      - run: echo "$GREETING from ${{ github.repository }}"\n        env:\n          GREETING: ${{ inputs.greeting }}\n'
    assert safe in cell.source
    cell.source = cell.source.replace(safe, '      - run: echo "${{ inputs.greeting }} from ${{ github.repository }}"\n')
    lines = run(nb, tmp_path)
    assert lines[0].startswith("✗ Exercise 1") and "template-injection" in lines[0] and "env:" in lines[0], lines
    assert all(l.endswith(": done") for l in lines[1:]), lines
