"""Week 8: the Lambda handler under the real runtime interface emulator (aws-lambda-rie, from the aws-sam-cli
wheel) as a host process and, in its image, under podman; one contract with the week-5 service; deploys,
versions, the alias, the Function URL and rollbacks against a moto server process on loopback."""
import base64
import json
import os
import subprocess
import sys
from urllib.parse import parse_qsl
import pytest
from conftest import BIN, GITHUB_REPO, ROOT, aws_cfg, job_venv, podman_env

REPO = GITHUB_REPO


config = aws_cfg


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "mlops-basics-lambda"), *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))




def test_the_handler_imports_no_training_stack_and_no_web_framework(bundle):
    code = (f"import sys, json; from mlops_basics.lambda_events import url_event; from mlops_basics.serverless import LambdaApp, ServeSettings\n"
            f"app = LambdaApp(ServeSettings(bundle={str(bundle)!r}))\n"
            f"out = app(url_event('POST', '/predict', {{'sentences': ['The cat sat.']}}))\n"
            f"print(json.dumps([out['statusCode'], sorted(m for m in ('torch', 'lightning', 'transformers', 'fastapi', 'starlette', 'boto3', 'mlops_basics.serve') if m in sys.modules)]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    status, loaded = json.loads(r.stdout.strip().splitlines()[-1])
    assert status == 200 and loaded == [], loaded


CASES = [  # method, path, body (bytes or None)
    ("POST", "/predict", b'{"sentences": ["The cat sat on the mat.", "Mat the on sat cat."]}'),
    ("POST", "/predict", b"{bad"), ("POST", "/predict", b""), ("POST", "/predict", b"[1, 2]"), ("POST", "/predict", b"{}"),
    ("POST", "/predict", b'{"sentences": []}'), ("POST", "/predict", b'{"sentences": "one string"}'),
    ("POST", "/predict", b'{"sentences": ["  "]}'), ("POST", "/predict", b'{"sentences": [1]}'),
    ("POST", "/predict", json.dumps({"sentences": ["a"] * 65}).encode()),
    ("POST", "/predict", json.dumps({"sentences": ["word " * 900]}).encode()),
    ("POST", "/predict", b'{"sentences": ["\\ud800"]}'), ("POST", "/predict", b'{"sentences": ["\xff"]}'),
    ("GET", "/predict?text=The+cat+sat.", None), ("GET", "/predict", None), ("GET", "/predict?text=", None),
    ("GET", "/predict?text=" + "a" * 1001, None), ("GET", "/health", None),
    ("GET", "/nope", None), ("DELETE", "/predict", None), ("PUT", "/health", None)]


def test_one_contract_the_lambda_answers_as_the_service_does(bundle):
    "The same request to the FastAPI service and to the Lambda handler: the same status, error, fix and answer."
    from fastapi.testclient import TestClient
    from mlops_basics.contract import ServeSettings
    from mlops_basics.serve import create_app
    from mlops_basics.serverless import LambdaApp
    s = ServeSettings(bundle=str(bundle), max_body_bytes=4000)
    app = LambdaApp(s)
    with TestClient(create_app(s)) as c:
        for method, path, body in CASES:
            r = c.request(method, path, content=body, headers={"content-type": "application/json", "x-request-id": "same"})
            p, _, q = path.partition("?")
            event = {"httpMethod": method, "path": p, "queryStringParameters": dict(parse_qsl(q, keep_blank_values=True)) or None,
                     "headers": {"X-Request-ID": "same"}, "body": base64.b64encode(body or b"").decode(), "isBase64Encoded": True,
                     "requestContext": {"requestId": "gateway"}}
            out = app(event)
            want, got = r.json(), json.loads(out["body"])
            assert out["statusCode"] == r.status_code, (method, path, body, want, got)
            assert got.get("error") == want.get("error"), (method, path, body, want, got)
            if r.status_code not in (404, 405):  # the routes' fixes name each one's own endpoints
                assert got.get("fix") == want.get("fix"), (method, path, body, want, got)
            if r.status_code == 200 and "predictions" in want:
                assert got == want, (got, want)  # same request id, same model version, same labels and scores
            assert out["headers"]["x-request-id"] == "same"


def invocations(events: dict, url: str) -> dict:
    from mlops_basics.lambda_emulator import rie_invoker
    invoke = rie_invoker(url)
    return {name: invoke(e) for name, e in events.items()}


def test_every_event_shape_and_every_bad_one_under_the_emulator(bundle):
    from mlops_basics.lambda_emulator import local_lambda
    from mlops_basics.lambda_events import url_event
    good = {"rest": {"httpMethod": "POST", "path": "/predict", "headers": {"Content-Type": "application/json"},
                     "body": json.dumps({"sentences": ["The cat sat."]}), "isBase64Encoded": False,
                     "requestContext": {"requestId": "rest-1"}, "resource": "/predict"},
            "rest_get": {"httpMethod": "GET", "path": "/predict", "queryStringParameters": {"text": "The cat sat."},
                         "requestContext": {"requestId": "rest-2"}},
            "http_api_stage": url_event("POST", "/prod/predict", {"sentences": ["The cat sat."]})
            | {"requestContext": {"http": {"method": "POST", "path": "/prod/predict"}, "stage": "prod", "requestId": "h"}},
            "function_url_b64": url_event("POST", "/predict", {"sentences": ["The cat sat.", "Sat cat the."]}, b64=True),
            "direct": {"sentences": ["The cat sat."]}, "direct_2021": {"sentence": "The cat sat."}}
    bad = {"malformed": url_event("POST", "/predict", "{not json"), "missing": url_event("POST", "/predict", {"text": "x"}),
           "blank": url_event("POST", "/predict", {"sentences": [" "]}), "too_many": url_event("POST", "/predict", {"sentences": ["a"] * 65}),
           "oversized": url_event("POST", "/predict", {"sentences": ["word " * 20000]}), "route": url_event("GET", "/admin"),
           "method": url_event("DELETE", "/predict"), "bad_base64": url_event("POST", "/predict", "%%%") | {"isBase64Encoded": True},
           "direct_missing": {"text": "x"}, "direct_blank": {"sentence": ""}, "s3_event": {"Records": [{"s3": {}}]}}
    with local_lambda(bundle) as fn:
        got = invocations({**good, **bad, "ready1": url_event("GET", "/ready"), "ready2": url_event("GET", "/ready")}, fn.url)
        log = fn.log()
    for name in good:
        out = got[name]
        body = json.loads(out["body"]) if "statusCode" in out else out
        assert out.get("statusCode", 200) == 200 and body["predictions"], (name, out)
        assert body["model_version"] and len(body["predictions"]) == (2 if name == "function_url_b64" else 1)
    assert json.loads(got["rest"]["body"])["request_id"] == "rest-1"  # API Gateway's id, in the answer and the log
    for name in bad:
        out = got[name]
        status, body = (out["statusCode"], json.loads(out["body"])) if "statusCode" in out else (out["status"], out)
        assert 400 <= status < 500, (name, out)
        assert body["error"] and body.get("fix") and "Traceback" not in json.dumps(body), (name, body)
    assert got["oversized"]["statusCode"] == 413 and got["route"]["statusCode"] == 404
    r1, r2 = (json.loads(got[k]["body"]) for k in ("ready1", "ready2"))
    assert r2["invocations"] == r1["invocations"] + 1 and r2["init_ms"] == r1["init_ms"]  # the warm path reuses the copy
    assert log.count('"event": "init"') == 1 and log.count("INIT REPORT") == 1, log[-2000:]
    events = [e for e in (json.loads(l) for l in log.splitlines() if l.startswith("{")) if e.get("event") == "prediction"]
    assert len(events) == 7 and {e["source"] for e in events} == {"lambda"}
    from mlops_basics.contract import EVENT_FIELDS, EVENT_SCHEMA
    assert set(events[0]) == set(EVENT_FIELDS) - {"text"} and events[0]["schema"] == EVENT_SCHEMA  # the service's schema
    assert "rest-1" in {e["request_id"] for e in events} and "The cat sat" not in log.split("INIT REPORT")[1]  # no text in logs


def test_sentences_are_logged_only_when_sampled(bundle, caplog, monkeypatch):
    import logging
    from mlops_basics.contract import ServeSettings
    from mlops_basics.core import ConfigError
    from mlops_basics.lambda_events import url_event
    from mlops_basics.serverless import LambdaApp
    sentences = [f"The cat number {i} sat." for i in range(40)]
    for rate, want in ((0.0, 0), (1.0, 40)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="mlops_basics.serve.predictions"):
            LambdaApp(ServeSettings(bundle=str(bundle), log_text_rate=rate))({"sentences": sentences})
        logged = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mlops_basics.serve.predictions"]
        assert len(logged) == 40 and sum("text" in e for e in logged) == want
    monkeypatch.setenv("MLOPS_BASICS_SERVE_LOG_TEXT_RATE", "0.25")
    app = LambdaApp(ServeSettings.from_env(bundle=str(bundle)))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="mlops_basics.serve.predictions"):
        for _ in range(10):
            app(url_event("POST", "/predict", {"sentences": sentences}))
    sampled = sum("text" in json.loads(r.getMessage()) for r in caplog.records if r.name == "mlops_basics.serve.predictions")
    assert 40 < sampled < 160, sampled  # about a quarter of 400 (binomial: outside this range about once in 10^8 runs)
    monkeypatch.setenv("MLOPS_BASICS_SERVE_LOG_TEXT_RATE", "2")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        ServeSettings.from_env()


def test_a_bundle_that_does_not_load_leaves_the_function_alive_but_not_ready(tmp_path):
    from mlops_basics.lambda_emulator import local_lambda
    from mlops_basics.lambda_events import url_event
    with local_lambda(tmp_path / "no-bundle") as fn:
        got = invocations({"health": url_event("GET", "/health"), "ready": url_event("GET", "/ready"),
                           "predict": url_event("POST", "/predict", {"sentences": ["x"]})}, fn.url)
    assert got["health"]["statusCode"] == 200
    for k in ("ready", "predict"):
        assert got[k]["statusCode"] == 503 and "not" in json.loads(got[k]["body"])["error"], got[k]


def test_the_deploy_role_the_execution_role_and_the_pull_policy_allow_only_what_they_must():
    from mlops_basics.lambda_deploy import execution_policy, execution_trust, pull_policy
    from mlops_basics.registries import allows, deploy_policy
    cfg, acct = config("region=eu-west-1"), "123456789012"
    fn = f"arn:aws:lambda:eu-west-1:{acct}:function:mlops-basics-api"
    role = f"arn:aws:iam::{acct}:role/mlops-basics-lambda"
    pol = deploy_policy(cfg, acct)
    for action in ("CreateFunction", "UpdateFunctionCode", "PublishVersion", "UpdateAlias", "CreateFunctionUrlConfig",
                   "PutFunctionConcurrency", "InvokeFunction"):
        assert allows(pol, f"lambda:{action}", fn) and allows(pol, f"lambda:{action}", fn + ":live"), action
        assert not allows(pol, f"lambda:{action}", fn + "-other"), action
    assert not allows(pol, "lambda:DeleteFunction", fn) and not allows(pol, "lambda:UpdateFunctionCode", "*")
    assert allows(pol, "iam:PassRole", role) and not allows(pol, "iam:PassRole", role.replace("lambda", "admin"))
    pass_role = next(s for s in pol["Statement"] if s["Action"] == "iam:PassRole")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}
    assert execution_trust()["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    ex = execution_policy(cfg, acct)
    assert {a for s in ex["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])} == {
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert allows(ex, "logs:PutLogEvents", f"arn:aws:logs:eu-west-1:{acct}:log-group:/aws/lambda/mlops-basics-api:log-stream:x")
    assert not allows(ex, "logs:PutLogEvents", f"arn:aws:logs:eu-west-1:{acct}:log-group:/aws/lambda/other:log-stream:x")
    pull = pull_policy(cfg, acct)["Statement"][0]
    assert pull["Principal"] == {"Service": "lambda.amazonaws.com"} and set(pull["Action"]) == {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}


def test_deploys_publish_versions_move_the_alias_and_roll_back(aws, bundle):
    from mlops_basics.aws import account_id, client, record_image, stand_in_manifest
    from mlops_basics.core import MlopsBasicsError
    from mlops_basics.lambda_deploy import deploy, ecr_image_uri, provision_function, rollback, smoke, status
    from mlops_basics.lambda_emulator import local_lambda, rie_invoker
    cfg = config()
    plan = provision_function(cfg, dry_run=True)
    assert any("execution role" in c.what for c in plan) and any("let Lambda pull" in c.what for c in plan)
    assert provision_function(cfg) and provision_function(cfg) == []  # applied, then nothing to change
    acct = account_id(cfg)
    images = [ecr_image_uri(cfg, acct, record_image(cfg, f"c{n}-v-lambda", stand_in_manifest(n))) for n in (1, 2, 3)]
    with pytest.raises(Exception, match="ImageNotFound"):  # Lambda refuses an image its ECR does not have
        deploy(cfg, ecr_image_uri(cfg, acct, "sha256:" + "0" * 64))
    with local_lambda(bundle) as fn:  # the smoke test runs the real handler under the emulator
        ok = lambda version: smoke(rie_invoker(fn.url))
        first, second = deploy(cfg, images[0], ok), deploy(cfg, images[1], ok)
    assert (first["version"], first["previous"], second["version"], second["previous"]) == ("1", None, "2", "1")
    lam = client("lambda", cfg)
    live = lam.get_function_configuration(FunctionName="mlops-basics-api", Qualifier="live")
    assert live["Version"] == "2" and live["MemorySize"] == 1024 and live["Timeout"] == 15 and live["PackageType"] == "Image"
    assert live["Environment"]["Variables"]["MLOPS_BASICS_SERVE_PRECISION"] == "fp32"
    assert lam.get_function_concurrency(FunctionName="mlops-basics-api")["ReservedConcurrentExecutions"] == 5
    url = lam.get_function_url_config(FunctionName="mlops-basics-api", Qualifier="live")
    assert url["AuthType"] == "NONE" and url["FunctionUrl"] == second["url"]
    assert "lambda:InvokeFunctionUrl" in lam.get_policy(FunctionName="mlops-basics-api", Qualifier="live")["Policy"]

    def broken(version):
        raise MlopsBasicsError("/ready answered 503")
    with pytest.raises(MlopsBasicsError, match="smoke test of version 3 failed.*back on 2"):
        deploy(cfg, images[2], broken)
    s = status(cfg)
    # each version's release note names its image (moto's versions share one code record, so Code.ImageUri
    # shows the newest image for every version; AWS keeps each version's own)
    assert (s["version"], s["previous"]) == ("2", "1") and s["release"].endswith(images[1].split("@")[1])
    assert s["versions"] == ["1", "2", "3"]
    assert rollback(cfg) == {"function": "mlops-basics-api", "alias": "live", "from": "2", "to": "1"}  # never to 3
    assert status(cfg)["release"].endswith(images[0].split("@")[1])
    assert rollback(cfg, "3")["to"] == "3" and status(cfg)["version"] == "3"
    r = cli("status", f"github.repository={REPO}")
    assert r.returncode == 0 and json.loads(r.stdout)["version"] == "3"
    r = cli("rollback", "--to", "99", f"github.repository={REPO}")
    assert r.returncode == 2 and r.stderr.startswith("mlops-basics-lambda: error:") and "no version 99" in r.stderr, r.stderr
    assert "pick a published one: 1, 2, 3" in r.stderr and "Traceback" not in r.stderr
    r = cli("deploy", "--smoke", "none", "sha256:" + "f" * 64, f"github.repository={REPO}")
    assert r.returncode == 2 and "AWS said no" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("status", f"github.repository={REPO}", "lambda_function=never-deployed")
    assert r.returncode == 2 and "not deployed" in r.stderr and "Fix:" in r.stderr, r.stderr


@pytest.mark.containers
@pytest.mark.timeout(1200)
def test_the_lambda_image_runs_under_the_emulator_and_the_deploy_job_ships_it(aws, bundle, tmp_path, monkeypatch):
    "docker/build-image --lambda, run in podman under the emulator; then .ci/deploy-lambda against moto and a real registry."
    from mlops_basics.aws import client, local_registry
    from mlops_basics.lambda_deploy import provision_function
    from mlops_basics.lambda_emulator import local_lambda, rie_invoker
    from mlops_basics.lambda_events import url_event
    env = podman_env(registry=True)
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")  # this test's logins only
    (tmp_path / "auth.json").write_text('{"auths": {}}')
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    image = f"localhost/mlops-basics-lambda:test-{os.getpid()}"
    r = subprocess.run(["bash", str(ROOT / "docker/build-image"), "--lambda", str(bundle), image], capture_output=True,
                       text=True, env={**env, "PYTHON": str(BIN / "python")}, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    try:
        info = json.loads(subprocess.run(["podman", "image", "inspect", image], capture_output=True, text=True, env=env).stdout)[0]
        assert info["Config"]["Entrypoint"] == ["/opt/venv/bin/python", "-m", "awslambdaric"]
        assert info["Config"]["Cmd"] == ["mlops_basics.serverless.handler"]
        assert not any(k.startswith(("AWS_", "MLOPS_BASICS_AWS")) for k in (e.split("=")[0] for e in info["Config"]["Env"]))
        probe = subprocess.run(["podman", "run", "--rm", "--entrypoint", "/opt/venv/bin/python", image, "-c",
                                "import importlib.util as u, os; print([m for m in ('torch', 'fastapi', 'uvicorn', 'transformers', "
                                "'huggingface_hub', 'boto3') if u.find_spec(m)], sorted(os.listdir('/var/task/bundle')))"],
                               capture_output=True, text=True, env=env)
        assert probe.stdout.strip() == "[] ['manifest.json', 'model.onnx', 'tokenizer.json']", probe.stdout + probe.stderr
        with local_lambda(image=image) as fn:
            invoke = rie_invoker(fn.url, timeout=120)
            ready = invoke(url_event("GET", "/ready"))
            answer = invoke(url_event("POST", "/predict", {"sentences": ["The cat sat."]}, b64=True))
            bad = invoke(url_event("POST", "/predict", "{nope"))
            direct = invoke({"sentence": "The cat sat."})
            log = fn.log()
        assert ready["statusCode"] == 200 and json.loads(ready["body"])["precision"] == "fp32", ready
        assert answer["statusCode"] == 200 and bad["statusCode"] == 422 and direct["predictions"], (answer, bad, direct)
        assert "INIT REPORT" in log and '"source": "lambda"' in log
        # the deploy job's Lambda step: build, push to the registry (ECR's API told), deploy to moto's Lambda
        cfg = config()
        provision_function(cfg)  # week 7's resources and the function's role (a no-op after the test above)
        user, password = base64.b64decode(client("ecr", cfg).get_authorization_token()["authorizationData"][0]
                                          ["authorizationToken"]).decode().split(":", 1)
        with local_registry(user, password, tmp_path / "registry") as host:
            r = subprocess.run(["bash", str(ROOT / ".ci/deploy-lambda"), str(bundle)], capture_output=True, text=True, timeout=900,
                               env={**env, "MLOPS_BASICS_REGISTRY": host, "MLOPS_BASICS_GITHUB_REPOSITORY": REPO,
                                    "MLOPS_BASICS_LAMBDA_SMOKE": "none", "MLOPS_BASICS_VENV": str(job_venv(tmp_path))})
        assert r.returncode == 0 and "-lambda" in r.stdout and "deployed mlops-basics-api version" in r.stdout, r.stdout + r.stderr
        assert "manifest application/vnd.docker.distribution.manifest.v2+json" in r.stdout  # one platform: Lambda refuses indexes
        digest = next(l.split()[1] for l in r.stdout.splitlines() if l.startswith("digest "))
        live = client("lambda", cfg).get_function(FunctionName="mlops-basics-api", Qualifier="live")["Code"]["ImageUri"]
        assert live.endswith(f"@{digest}"), (live, digest)
        assert password not in r.stdout + r.stderr
    finally:
        refs = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}"], capture_output=True, text=True,
                              env=env).stdout.split()
        mine = [x for x in refs if x.startswith("127.0.0.1:") and x.endswith("-lambda")]
        subprocess.run(["podman", "rmi", "-f", image, *mine], capture_output=True, env=env)
