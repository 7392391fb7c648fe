# Solutions to the "Try it" exercises of nbs/09_monitoring.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
with try_log.open("a") as f:
    f.write('{"event": "prediction", "schema": 1, "ts": "cut off here\n')
ex1 = ingest_file(try_con, try_log)

# %% Exercise 2
ex2_rates = dict(try_con.execute(
    "SELECT model_version, avg(CAST(truncated AS DOUBLE)) FROM predictions GROUP BY model_version").fetchall())

# %% Exercise 3
with try_log.open("a") as f:
    for i in (100, 101):
        for e in prediction_events(f"try-{i}", "v2", ["A short one.", "A long one."], preds, 4.0, "service"):
            f.write(json.dumps(e) + "\n")
print(ingest_file(try_con, try_log))
