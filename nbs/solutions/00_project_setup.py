# Solutions to the "Try it" exercises of nbs/00_project_setup.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: the share of acceptable sentences in cola["validation"]
labels = cola["validation"]["label"]
ex1_share = sum(labels) / len(labels)

# %% Exercise 2
# Exercise 2: the number of validation sentences longer than 32 tokens
ids = tokenizer(list(cola["validation"]["sentence"]))["input_ids"]
ex2_long = sum(len(x) > 32 for x in ids)

# %% Exercise 3
# Exercise 3: the first training batch of a ColaDataModule(batch_size=8, max_length=16)
dm = ColaDataModule(tokenizer, dir=data_dir, batch_size=8, max_length=16)
dm.setup()
ex3_batch = next(iter(dm.train_dataloader()))
