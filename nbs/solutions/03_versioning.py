# Solutions to the "Try it" exercises of nbs/03_versioning.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: dvc add data.csv, then git commit the .dvc file
dvc("add", "data.csv", cwd=repo)
git_commit_all(repo, "data v1")
print((repo / "data.csv.dvc").read_text())

# %% Exercise 2
# Exercise 2: dvc remote add -d, git commit, dvc push
dvc("remote", "add", "-d", "local", str(storage), cwd=repo)
git_commit_all(repo, "a local remote")
dvc("push", cwd=repo)

# %% Exercise 3
# Exercise 3: make a version 2 of data.csv, then restore version 1
v1 = run_cmd(["git", "rev-parse", "HEAD"], repo).strip()
with open(repo / "data.csv", "a") as f:
    f.write("Cat the sat.,0\n")
dvc("add", "data.csv", cwd=repo)
git_commit_all(repo, "data v2")
run_cmd(["git", "checkout", v1, "--", "data.csv.dvc"], repo)
dvc("checkout", cwd=repo)
