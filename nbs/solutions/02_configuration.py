# Solutions to the "Try it" exercises of nbs/02_configuration.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: tiny_random, smoke, lr 3e-4, batches of 16
ex1_cfg = compose_config(["model=tiny_random", "training=smoke", "training.lr=3e-4", "data.batch_size=16"])

# %% Exercise 2
# Exercise 2: compose with your own training=warm preset
conf = try_dir / "conf"
(conf / "training").mkdir(parents=True, exist_ok=True)
(conf / "training" / "warm.yaml").write_text("defaults:\n  - smoke\n  - _self_\nname: warm\nwarmup_ratio: 0.3\n")
ex2_cfg = compose_config(["training=warm", f"hydra.searchpath=[file://{conf}]"])

# %% Exercise 3
# Exercise 3: a two-job dropout sweep under try_dir / "sweep"
ex3_sweep_dir = try_dir / "sweep"
args = ["-m", "model.dropout=0.0,0.3", "model=tiny_random", "training=smoke", "logger=csv", f"hydra.sweep.dir={ex3_sweep_dir}"]
args += [f"data.dir={data_dir}"] if data_dir else []
print(subprocess.run([train_cli, *args], capture_output=True, text=True).stdout[-300:])
