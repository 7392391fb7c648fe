# Solutions to the "Try it" exercises of nbs/01_experiment_tracking.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: MCC of preds vs target with torchmetrics
from torchmetrics.classification import BinaryMatthewsCorrCoef

ex1_mcc = float(BinaryMatthewsCorrCoef()(preds, target))

# %% Exercise 2
# Exercise 2: an offline W&B run under try_dir that logged try/score three times
import wandb

run = wandb.init(project="mlops-basics-try-it", mode="offline", dir=str(try_dir))
for score in [0.1, 0.3, 0.5]:
    run.log({"try/score": score})
run.finish()
ex2_run_dir = Path(run.dir).parent

# %% Exercise 3
# Exercise 3: false positives (true 0, predicted 1) from the confusion matrix
cm = confusion(target, preds)
ex3_fp = int(cm[0, 1])
