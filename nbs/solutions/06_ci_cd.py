# Solutions to the "Try it" exercises of nbs/06_ci_cd.ipynb.
# Each block replaces the notebook cell that starts with the same "# Exercise N" line.
# tests/test_exercises.py runs every check without and with these solutions.

# %% Exercise 1
# Exercise 1: add workflow_dispatch with a "greeting" input to wf_dir / "hello.yml"
(wf_dir / "hello.yml").write_text("""\
name: hello
on:
  push:
  workflow_dispatch:
    inputs:
      greeting:
        description: what to say
        type: string
        default: Hello
permissions:
  contents: read
jobs:
  greet:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v5
      - run: echo "$GREETING from ${{ github.repository }}"
        env:
          GREETING: ${{ inputs.greeting }}
""")

# %% Exercise 2
# Exercise 2: a python matrix (3.11, 3.12) for the greet job of wf_dir / "hello.yml"
(wf_dir / "hello.yml").write_text("""\
name: hello
on:
  push:
  workflow_dispatch:
    inputs:
      greeting:
        type: string
        default: Hello
permissions:
  contents: read
jobs:
  greet:
    runs-on: ubuntu-24.04
    strategy:
      matrix:
        python: ["3.11", "3.12"]
    steps:
      - uses: actions/checkout@v5
      - uses: actions/setup-python@v6
        with:
          python-version: ${{ matrix.python }}
      - run: python --version
""")

# %% Exercise 3
# Exercise 3: rewrite wf_dir / "deploy.yml" until check_workflow finds nothing
(wf_dir / "deploy.yml").write_text("""\
name: deploy
on:
  push:
    branches: [main]
permissions:
  contents: read
jobs:
  test:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v5
      - run: bash .ci/test-all
  deploy:
    needs: test
    runs-on: ubuntu-24.04
    environment: production
    concurrency:
      group: deploy-production
      cancel-in-progress: false
    permissions:
      contents: read
      id-token: write
    steps:
      - uses: actions/checkout@v5
      - run: bash .ci/deploy
""")
