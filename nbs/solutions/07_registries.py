# Solutions to the "Try it" exercises of nbs/07_registries.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: notes.txt three times, then ex1_versions = its version ids
for i in range(3):
    try_s3.put_object(Bucket=try_cfg.bucket, Key="notes.txt", Body=f"version {i + 1}".encode())
ex1_versions = [v["VersionId"] for v in try_s3.list_object_versions(Bucket=try_cfg.bucket, Prefix="notes.txt")["Versions"]]

# %% Exercise 2
# Exercise 2: ex2_trust = a trust policy for the production and staging environments
ex2_trust = trust_policy(try_cfg, "123456789012")
cond = ex2_trust["Statement"][0]["Condition"]["StringEquals"]
cond[f"{GITHUB_OIDC}:sub"] = [f"repo:learner/mlops-basics:environment:{env}" for env in ("production", "staging")]

# %% Exercise 3
# Exercise 3: provision with ecr.keep_images=5
provision(aws_config(["github.repository=learner/mlops-basics", "bucket=try-it", "ecr.keep_images=5"]))
