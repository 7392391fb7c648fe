# Solutions to the "Try it" exercises of nbs/05_serving.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: the JSON answer of POST /predict for two sentences
with TestClient(create_app(ServeSettings(bundle=str(try_bundle)))) as client:
    ex1_answer = client.post("/predict", json={"sentences": ["The cat sat on the mat.", "Cat the mat on sat."]}).json()
ex1_answer

# %% Exercise 2
# Exercise 2: three sentences to a server that takes two
with serving(max_sentences=2) as url:
    r = httpx.post(url + "/predict", json={"sentences": ["One.", "Two.", "Three."]})
ex2_status, ex2_body = r.status_code, r.json()
ex2_body

# %% Exercise 3
# Exercise 3: 64 concurrent requests against a queue of one
sentences = [f"Sentence number {i} is here." for i in range(64)]
with serving(queue_size=1, max_batch=64, threads=1) as url:
    with ThreadPoolExecutor(64) as pool:
        ex3_statuses = list(pool.map(lambda i: httpx.post(url + "/predict", json={"sentences": sentences}, timeout=60).status_code,
                                     range(64)))
print(sorted(set(ex3_statuses)), ex3_statuses.count(503), "x 503")
