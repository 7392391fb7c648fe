# Solutions to the "Try it" exercises of nbs/08_serverless.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
ex1_event = {"httpMethod": "GET", "path": "/predict", "queryStringParameters": {"text": "The cat sat on the mat."},
             "headers": {}, "body": None, "isBase64Encoded": False, "requestContext": {"requestId": "exercise-1"}}

# %% Exercise 2
ex2_cfg = aws_config(["github.repository=learner/mlops-basics", "lambda_function=try-it",
                      "function.memory_mb=2048", "function.timeout_s=20"])
deploy(ex2_cfg, try_images[0])

# %% Exercise 3
rollback(try_cfg, to="1")
