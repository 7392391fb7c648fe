"""Week 9 (first part): prediction events read back from real logs (a uvicorn service process, the Lambda handler
under the runtime interface emulator) into DuckDB, idempotently and resumably, and the dashboard's queries."""
import json
import os
import subprocess
import time
import httpx
import pytest
from conftest import BIN, ROOT, free_port, wait_ready

def events(rid: str, n: int, version: str = "v1", source: str = "service", ms: float = 5.0, truncated: bool = False,
           ts: str | None = None) -> list[dict]:
    from mlops_basics.contract import prediction_events
    preds = [{"tokens": 128 if truncated else 6, "label": "acceptable" if i % 2 == 0 else "unacceptable",
              "score": 0.8, "truncated": truncated} for i in range(n)]
    out = prediction_events(rid, version, [f"sentence {i}" for i in range(n)], preds, ms, source)
    return [e | {"ts": ts} for e in out] if ts else out


def write(path, evs, extra: str = "") -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(e) + "\n" for e in evs) + extra)


def test_an_event_is_read_only_when_it_is_one_of_this_schema():
    from mlops_basics.monitoring import parse_event
    e = events("r1", 1)[0]
    line = json.dumps(e)
    assert parse_event(line) == e | {"text": None} == parse_event("mlops_basics.serve.predictions: " + line)  # every column
    assert parse_event("START RequestId: 1 Version: $LATEST") is None and parse_event(line[:-5]) is None
    for bad in ({"schema": 99}, {"tokens": "6"}, {"score": None}, {"truncated": 1}, {"seq": True}, {"ts": "yesterday"},
                {"event": "init"}, {"text": 5}):
        assert parse_event(json.dumps(e | bad)) is None, bad
    assert parse_event(json.dumps(e | {"text": "sampled"}))["text"] == "sampled"


def test_error_events_are_read_stored_once_and_give_the_error_rate(tmp_path):
    from mlops_basics.contract import ERROR_FIELDS, error_event
    from mlops_basics.dashboard import error_kinds, error_rate, summary
    from mlops_basics.ingest import ingest_file
    from mlops_basics.monitoring import open_store, parse_event, parse_line
    failed = [error_event(f"e{i}", "v1", 503 if i else 422, 2.0, "service") for i in range(3)]
    assert set(failed[0]) == set(ERROR_FIELDS) and parse_event(json.dumps(failed[0])) is None
    assert parse_line(json.dumps(failed[0])) == ("error", failed[0])
    assert parse_line(json.dumps(failed[0] | {"status": "503"})) is None
    assert parse_line(json.dumps(error_event("e9", None, 503, 1.0, "service")))[1]["model_version"] is None  # no model loaded
    log = tmp_path / "service.log"
    write(log, events("ok1", 2) + events("ok2", 3) + failed + [error_event("x", None, 503, 1.0, "service")],
          extra='{"schema": 1, "event": "error", "status": 500}\n{"event": "init", "error": null}\n')
    con = open_store(":memory:")
    got = ingest_file(con, log)
    assert (got["added"], got["errors"], got["bad"]) == (5, 4, 1)  # the init line is not an event, and not a bad one
    assert ingest_file(con, log)["errors"] == 0  # once
    s = summary(con).iloc[0]
    assert (s.requests, s.rejected, s.errors, s.error_rate) == (2, 1, 2, 2 / 5)  # v1: 2 good requests, 1 refused (422), 2 failed (503)
    r = error_rate(con, every="1 hour")
    assert (r.requests.sum(), r.rejected.sum(), r.errors.sum()) == (6, 1, 3)  # the failure with no model counts here too
    k = error_kinds(con)
    assert k.iloc[0].to_dict() | {"last": None} == {"source": "service", "status": 503, "kind": "unavailable", "errors": 3, "last": None}


def test_ingestion_is_idempotent_resumes_and_counts_bad_lines(tmp_path):
    from mlops_basics.core import ConfigError
    from mlops_basics.ingest import ingest_file
    from mlops_basics.monitoring import open_store
    log, store = tmp_path / "service.log", tmp_path / "store.duckdb"
    first = events("a", 3)
    write(log, first + events("b", 2), extra="INFO: uvicorn said something\n")
    con = open_store(store)
    assert ingest_file(con, log)["added"] == 5
    assert ingest_file(con, log)["added"] == 0  # read twice: nothing new
    write(log, events("c", 2), extra='{"schema": 1, "event": "prediction", "ts": "cut off\n' + json.dumps(events("d", 1)[0])[:40])
    got = ingest_file(con, log)
    assert (got["added"], got["bad"]) == (2, 1)  # the half-written last line waits
    with open(log, "a") as f:
        f.write(json.dumps(events("d", 1)[0])[40:] + "\n")
    assert ingest_file(con, log)["added"] == 1
    con.close()
    con = open_store(store)  # a new process: the cursor and the bad-line count were kept
    assert ingest_file(con, log)["added"] == 0
    assert con.execute("SELECT count(*), count(DISTINCT request_id) FROM predictions").fetchone() == (8, 4)
    assert con.execute("SELECT position, bad_lines FROM cursors").fetchone() == (str(log.stat().st_size), 1)
    log.write_text("".join(json.dumps(e) + "\n" for e in first))  # rotated: shorter than the cursor, read again
    assert ingest_file(con, log) | {"origin": None} == {"origin": None, "lines": 3, "added": 0, "errors": 0, "repeats": 3, "bad": 0,
                                                      "offset": log.stat().st_size}
    with pytest.raises(ConfigError, match="no log file"):
        ingest_file(con, tmp_path / "missing.log")
    con.close()
    import duckdb
    old = duckdb.connect(str(tmp_path / "old.duckdb"))
    old.execute("CREATE TABLE cursors (origin VARCHAR PRIMARY KEY, offset_bytes BIGINT, bad_lines BIGINT)")
    old.close()
    with pytest.raises(ConfigError, match="another layout.*offset_bytes"):
        open_store(tmp_path / "old.duckdb")


def test_the_dashboard_queries_answer_per_version_source_and_window(tmp_path):
    from mlops_basics.core import ConfigError
    from mlops_basics.dashboard import score_histogram, summary
    from mlops_basics.monitoring import add_events, open_store, traffic
    con = open_store(":memory:")
    evs = []
    for i, ms in enumerate([1, 2, 3, 4, 100]):  # five requests of 2 sentences on v1, one request latency each
        evs += events(f"v1-{i}", 2, ms=ms, ts=f"2026-01-01T00:00:0{i}.000Z")
    evs += events("v2-0", 4, version="v2", source="lambda", truncated=True, ts="2026-01-01T00:01:00.000Z")
    assert add_events(con, evs) == 14 and add_events(con, evs) == 0
    s = summary(con).set_index(["model_version", "source"])
    v1 = s.loc[("v1", "service")]
    assert (v1.events, v1.requests, v1.latency_p50_ms, v1.truncated_share, v1.acceptable_share) == (10, 5, 3.0, 0.0, 0.5)
    assert s.loc[("v2", "lambda")].truncated_share == 1.0 and s.loc[("v2", "lambda")].mean_tokens == 128
    assert summary(con, since="2026-01-01T00:00:30").model_version.tolist() == ["v2"]
    assert summary(con, until="2026-01-01T00:00:02", model_version="v1").events.tolist() == [4]
    t = traffic(con, every="1 minute")
    assert t.events.sum() == 14 and len(t.bucket.unique()) == 2
    h = score_histogram(con, bins=10)
    assert h.events.sum() == 14 and h.bin_start.between(0.5, 1).all()
    with pytest.raises(ConfigError, match="interval"):
        traffic(con, every="1 minute'; DROP TABLE predictions; --")


def test_a_real_service_and_the_lambda_handler_log_events_the_store_reads(bundle, tmp_path, aws):
    "A uvicorn process (mlops-basics-serve, its stdout to a file) and the handler under the Lambda emulator (via CloudWatch too)."
    from mlops_basics.aws import aws_config
    from mlops_basics.cloudwatch import pull_cloudwatch, put_log_lines
    from mlops_basics.dashboard import summary
    from mlops_basics.ingest import ingest_file
    from mlops_basics.lambda_emulator import local_lambda, rie_invoker
    from mlops_basics.monitoring import open_store
    port, log = free_port(), tmp_path / "service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "mlops-basics-serve"), "--bundle", str(bundle), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc=proc, log=log)
            for i in range(10):
                r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"sentences": ["The cat sat.", "Sat the cat."]},
                               headers={"x-request-id": f"svc-{i}"})
                assert r.status_code == 200
            assert httpx.post(f"http://127.0.0.1:{port}/predict", json={"sentences": []}).status_code == 422  # an error event
            assert httpx.get(f"http://127.0.0.1:{port}/predict").status_code == 422
            assert httpx.get(f"http://127.0.0.1:{port}/nowhere").status_code == 404  # not /predict: no event
        finally:
            proc.terminate(); proc.wait(30)
    with local_lambda(bundle) as fn:
        invoke = rie_invoker(fn.url)
        for _ in range(5):
            invoke({"sentences": ["The cat sat."]})
        assert invoke({"sentences": ["The cat sat.", " "]})["status"] == 422
        (tmp_path / "lambda.log").write_text(fn.log())
    con = open_store(tmp_path / "store.duckdb")
    svc, lam = ingest_file(con, log), ingest_file(con, tmp_path / "lambda.log")
    assert (svc["added"], svc["errors"], lam["added"], lam["errors"]) == (20, 2, 5, 1)
    s = summary(con).set_index("source")
    assert (s.loc["service"].events, s.loc["service"].requests, s.loc["lambda"].events) == (20, 10, 5)
    assert (s.loc["service"].rejected, s.loc["service"].errors, s.loc["service"].error_rate, s.loc["lambda"].rejected) == (2, 0, 0, 1)  # 422s: refused, not failed
    kinds = con.execute("SELECT source, status, kind, model_version FROM errors ORDER BY source").fetchall()
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    assert kinds == [("lambda", 422, "invalid_input", version)] + [("service", 422, "invalid_input", version)] * 2
    assert con.execute("SELECT count(*) FROM predictions WHERE text IS NOT NULL").fetchone()[0] == 0  # no sentences by default
    cfg = aws_config(["github.repository=learner/mlops-basics", "lambda_function=real-traffic"])
    put_log_lines(cfg, (tmp_path / "lambda.log").read_text().splitlines(), "2026/11/25/[$LATEST]b")  # as Lambda would
    pulled = pull_cloudwatch(con, cfg)
    assert (pulled["added"], pulled["repeats"], pulled["bad"]) == (0, 6, 0)  # the same 5 events and the error, by another path


def test_cloudwatch_pulls_and_the_kinesis_stream_keep_each_event_once(aws):
    "moto stands in for CloudWatch Logs and Kinesis (it delivers real gzipped subscription records)."
    from mlops_basics.aws import aws_config, client
    from mlops_basics.cloudwatch import consume_kinesis, lambda_log_group, pull_cloudwatch, put_log_lines, subscription_changes
    from mlops_basics.monitoring import open_store
    from mlops_basics.registries import allows
    cfg = aws_config(["github.repository=learner/mlops-basics"])
    plan = subscription_changes(cfg)
    assert len(plan) == 6  # the stream, the role and its policy, the group and its retention, the filter
    for c in plan:
        c.apply()
    assert subscription_changes(cfg) == []  # a second run changes nothing
    iam, logs = client("iam", cfg), client("logs", cfg)
    logs.put_retention_policy(logGroupName=lambda_log_group(cfg), retentionInDays=3653)  # changed by hand (or Lambda made the group)
    assert [c.what for c in subscription_changes(cfg)] == ["keep 30 days of logs"]
    subscription_changes(cfg)[0].apply()
    policy = iam.get_role_policy(RoleName="mlops-basics-logs-to-kinesis", PolicyName="put-records")["PolicyDocument"]
    stream_arn = "arn:aws:kinesis:eu-west-1:123456789012:stream/mlops-basics-predictions"
    assert allows(policy, "kinesis:PutRecord", stream_arn) and not allows(policy, "kinesis:DeleteStream", stream_arn)
    assert not allows(policy, "kinesis:PutRecord", stream_arn + "-other")
    group = logs.describe_log_groups(logGroupNamePrefix=lambda_log_group(cfg))["logGroups"][0]
    assert group["retentionInDays"] == 30
    lines = ["START RequestId: 1 Version: $LATEST", *map(json.dumps, events("l1", 3, source="lambda")),
             '{"schema": 1, "event": "prediction", "ts": "cut', "REPORT RequestId: 1 Duration: 4.2 ms"]
    assert put_log_lines(cfg, lines, "2026/11/25/[$LATEST]a") == 6
    con = open_store(":memory:")
    first, again = pull_cloudwatch(con, cfg), pull_cloudwatch(con, cfg)
    assert (first["added"], first["bad"]) == (3, 1)
    assert (again["added"], again["repeats"], again["bad"]) == (0, 3, 0)  # the look-back re-read, nothing new, no new bad line
    late = int(again["position"]) - 60_000  # a log event that arrives after a later one was read
    logs.put_log_events(logGroupName=lambda_log_group(cfg), logStreamName="2026/11/25/[$LATEST]a",
                        logEvents=[{"timestamp": late, "message": json.dumps(events("late", 1, source="lambda")[0])}])
    assert pull_cloudwatch(con, cfg)["added"] == 1  # within the look-back: caught
    streamed = open_store(":memory:")
    got = consume_kinesis(streamed, cfg)
    assert got["records"] >= 2 and (got["added"], got["bad"]) == (4, 1)
    assert consume_kinesis(streamed, cfg)["records"] == 0  # after the last sequence number: nothing again
    both = consume_kinesis(con, cfg)  # the pulled store reads the stream too: the same events, one row each
    assert (both["added"], both["repeats"]) == (0, 4)
    assert con.execute("SELECT count(*) FROM predictions").fetchone()[0] == 4


def test_drift_is_flagged_for_a_shift_and_not_for_the_same_traffic():
    import random
    from mlops_basics.contract import prediction_events
    from mlops_basics.monitoring import add_events, drift_report, open_store, psi
    rng = random.Random(0)

    def traffic(n, length=60, p_acceptable=0.7, score=(5, 1)):
        texts = ["x" * max(1, int(rng.gauss(length, 15))) for _ in range(n)]
        preds = [{"tokens": len(t) // 4 + 2, "label": "acceptable" if rng.random() < p_acceptable else "unacceptable",
                  "score": 0.5 + 0.5 * rng.betavariate(*score), "truncated": False} for t in texts]
        return texts, preds
    texts, preds = traffic(1000)
    ref = {"events": 1000, "text_length": [len(t) for t in texts], "tokens": [p["tokens"] for p in preds],
           "score": [p["score"] for p in preds], "labels": {l: sum(p["label"] == l for p in preds) for l in ("unacceptable", "acceptable")}}
    assert psi(ref["score"], ref["score"]) < 0.01 and psi(ref["text_length"], [x * 2 for x in ref["text_length"]]) > 0.25

    def verdict(n=300, **shift):
        con = open_store(":memory:")
        add_events(con, prediction_events(f"w{rng.random()}", "v1", *traffic(n, **shift), 1.0, "service"))
        return drift_report(con, ref)
    assert verdict(n=50)["verdict"] == "not enough data"
    same = [verdict()["verdict"] for _ in range(20)]
    assert same.count("drift") <= 1, same  # at the corrected 1% level: about one false alarm in 100 windows
    longer = verdict(length=120)
    assert longer["verdict"] == "drift" and {"text_length", "tokens"} <= set(longer["drifted"])
    mix = verdict(p_acceptable=0.3)
    assert mix["verdict"] == "drift" and "label_mix" in mix["drifted"] and mix["tests"]["label_mix"]["share"]["acceptable"] < 0.4
    unsure = verdict(score=(1, 1))  # scores spread towards 0.5
    assert unsure["verdict"] == "drift" and "score" in unsure["drifted"]


def test_the_reference_is_computed_once_per_bundle_version(bundle, tmp_path, cola_dir):
    from mlops_basics.monitor_cli import ensure_reference
    from mlops_basics.predict import read_manifest
    ref = ensure_reference(bundle, cola_dir, tmp_path)
    path = tmp_path / f"reference-{read_manifest(bundle)['version']}.json"
    assert path.is_file() and ref["events"] == len(ref["score"]) == len(ref["text_length"]) == 40  # the folder's 40 validation sentences
    assert sum(ref["labels"].values()) == 40
    path.write_text(json.dumps(ref | {"events": -1}))
    assert ensure_reference(bundle, cola_dir, tmp_path)["events"] == -1  # read back, not recomputed


@pytest.fixture(scope="module")
def prometheus_ready():
    "Prometheus, promtool and the Pushgateway (docker/setup-prometheus installs Debian's when missing)."
    r = subprocess.run(["bash", str(ROOT / "docker/setup-prometheus")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-1000:]


def test_the_alert_rules_are_checked_and_unit_tested_by_promtool(prometheus_ready, tmp_path):
    "The committed rule file is the generated one; promtool checks it and runs its unit tests (each alert silent, then firing)."
    from mlops_basics.alerts import alert_rules, promtool, write_alert_rules
    from mlops_basics.contract import ServeSettings
    from mlops_basics.core import MlopsBasicsError
    committed = ROOT / "docker/prometheus/alerts.yml"
    assert write_alert_rules(tmp_path / "alerts.yml").read_text() == committed.read_text(), \
        "docker/prometheus/alerts.yml is stale: write it again with alerts.write_alert_rules"
    assert "SUCCESS" in promtool("test", "rules", ROOT / "docker/prometheus/alerts.test.yml")
    rules = {r["alert"]: r for r in alert_rules(ServeSettings(queue_size=100))["groups"][0]["rules"]}
    assert set(rules) == {"PredictErrors", "PredictSlow", "QueueSaturated", "InputDrift"}
    assert rules["QueueSaturated"]["expr"].endswith("> 80")  # thresholds follow the settings
    (tmp_path / "bad.yml").write_text("groups: [{name: x, rules: [{alert: Broken, expr: 'sum(rate(x[5m]'}]}]\n")
    with pytest.raises(MlopsBasicsError, match="promtool check"):
        promtool("check", "rules", tmp_path / "bad.yml")
    r = subprocess.run([str(BIN / "docker-compose"), "-f", str(ROOT / "docker/compose.yaml"), "--profile", "monitoring", "config",
                        "--services"], capture_output=True, text=True)
    assert r.returncode == 0 and set(r.stdout.split()) == {"api", "prometheus"}, r.stderr


def test_a_real_prometheus_scrapes_the_service_and_fires_the_drift_alert(prometheus_ready, bundle, tmp_path):
    from mlops_basics.alerts import local_prometheus, prom_query, push_drift, write_alert_rules
    port, log = free_port(), tmp_path / "service.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(BIN / "mlops-basics-serve"), "--bundle", str(bundle), "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_ready(f"http://127.0.0.1:{port}", proc=proc, log=log)
            for _ in range(7):
                assert httpx.get(f"http://127.0.0.1:{port}/predict", params={"text": "The cat sat."}).status_code == 200
            rules = write_alert_rules(tmp_path / "alerts.yml")
            with local_prometheus([f"127.0.0.1:{port}"], rules, tmp_path / "prom") as (url, gateway):
                push_drift({"verdict": "drift", "tests": {"score": {"p": 1e-6, "psi": 0.4}}}, "v1", gateway)
                for _ in range(150):
                    alerts = httpx.get(f"{url}/api/v1/alerts").json()["data"]["alerts"]
                    requests = prom_query(url, 'sum(mlops_requests_total{endpoint="/predict"})')
                    if alerts and requests and requests[0][1] == 7:
                        break
                    time.sleep(0.2)
                assert sorted(v for _, v in prom_query(url, "up")) == [1.0, 1.0]  # the service and the gateway
                assert requests and requests[0][1] == 7
                assert [(a["labels"]["alertname"], a["labels"]["model_version"], a["state"]) for a in alerts] == [("InputDrift", "v1", "firing")]
                assert prom_query(url, 'mlops_drift_psi{test="score"}')[0][1] == 0.4
        finally:
            proc.terminate(); proc.wait(30)


@pytest.mark.browser
def test_the_dashboard_page_renders_every_panel_with_data_in_chromium(chromium_ready, tmp_path):
    from mlops_basics.core import rendered_html, screenshot
    from mlops_basics.dashboard import write_dashboard
    from mlops_basics.monitoring import add_events, open_store
    con = open_store(":memory:")
    evs = []
    for i in range(30):
        evs += events(f"r{i}", 3, version="v1" if i < 20 else "v2", source="service" if i % 3 else "lambda", ms=2.0 + i,
                      ts=f"2026-01-01T00:{i:02d}:00.000Z")
    add_events(con, evs)
    con.execute("INSERT INTO cursors VALUES ('service.log', '123', 2)")
    from mlops_basics.contract import error_event
    add_events(con, [error_event(f"f{i}", "v1", 503, 1.0, "service") | {"ts": f"2026-01-01T00:{i:02d}:30.000Z"} for i in range(0, 30, 3)],
               "errors")
    report = {"verdict": "drift", "events": 90, "tests": {"score": {"p": 1e-5, "psi": 0.31}, "label_mix": {"p": 0.2}}}
    page = write_dashboard(tmp_path / "dashboard.html", con, report, every="10 minutes")
    html = rendered_html(f"file://{page}")
    text = page.read_text()
    assert "<script" not in text and "<link" not in text and 'src="http' not in text and "@import" not in text  # nothing fetched
    for panel in ("traffic", "label-mix", "latency", "scores", "errors", "versions", "drift", "ingestion"):
        assert f'id="{panel}"' in html, panel
    sections = {p: html.split(f'id="{p}"')[1].split("</section>")[0] for p in ("traffic", "label-mix", "scores", "latency", "drift",
                                                                                "errors", "ingestion")}
    for chart in ("traffic", "label-mix", "scores", "errors"):  # drawn, with data: filled areas, bars or lines, not an empty frame
        assert "<svg" in sections[chart] and sections[chart].count("<path") > 8, chart
    assert "v2" in sections["latency"] and "lambda" in sections["latency"]
    assert "drift (90 events)" in sections["drift"] and "0.31" in sections["drift"]
    assert "service.log" in sections["ingestion"] and ">2<" in sections["ingestion"]
    assert "unavailable" in sections["errors"] and ">10<" in sections["errors"]  # the errors by kind: 10 failed requests
    png = screenshot(f"file://{page}", tmp_path / "dashboard.png", width=1200, height=1000)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 30_000


def test_the_elasticsearch_export_is_complete_and_idempotent_in_structure(tmp_path):
    "Not run against Elasticsearch or Kibana (none can run here): the files' structure is what is checked."
    from mlops_basics.contract import EVENT_FIELDS
    from mlops_basics.elasticsearch import es_mapping, export_elasticsearch
    from mlops_basics.monitoring import add_events, open_store
    con = open_store(":memory:")
    add_events(con, events("a", 3) + [e | {"text": "a sampled sentence"} for e in events("b", 1)])
    got = export_elasticsearch(con, tmp_path)
    mapping = json.loads((tmp_path / "mapping.json").read_text())
    assert mapping == es_mapping() and set(mapping["mappings"]["properties"]) == set(EVENT_FIELDS)
    assert mapping["mappings"]["properties"]["ts"]["type"] == "date" and mapping["mappings"]["dynamic"] == "strict"
    lines = (tmp_path / "bulk.ndjson").read_text().splitlines()
    actions, docs = [json.loads(l) for l in lines[::2]], [json.loads(l) for l in lines[1::2]]
    assert got["documents"] == len(docs) == 4 and all(set(a) == {"index"} for a in actions)
    assert len({a["index"]["_id"] for a in actions}) == 4  # one id per stored event
    assert all(set(d) <= set(EVENT_FIELDS) for d in docs) and sum("text" in d for d in docs) == 1
    export_elasticsearch(con, tmp_path / "again")
    again = [json.loads(l) for l in (tmp_path / "again" / "bulk.ndjson").read_text().splitlines()[::2]]
    assert actions == again  # the same ids: sending it twice indexes nothing new
    objects = [json.loads(l) for l in (tmp_path / "kibana.ndjson").read_text().splitlines()]
    ids = {(o["type"], o["id"]) for o in objects}
    fields = set(mapping["mappings"]["properties"])
    for o in objects:  # every reference resolves, every aggregation is on a mapped field
        assert all((r["type"], r["id"]) in ids for r in o["references"]), o["id"]
        if o["type"] == "visualization":
            used = {a["params"]["field"] for a in json.loads(o["attributes"]["visState"])["aggs"] if "field" in a["params"]}
            assert used and used <= fields, (o["id"], used)
    assert sum(o["type"] == "dashboard" for o in objects) == 1


def test_the_command_line_ingests_reports_and_errs_in_one_line(bundle, cola_dir, tmp_path, prometheus_ready):
    def run(*args) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "mlops-basics-monitor"), "--store", str(tmp_path / "store.duckdb"), *map(str, args)],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "MLOPS_BASICS_HOME": str(tmp_path / "home")})
    log = tmp_path / "service.log"
    write(log, events("a", 4) + events("b", 2, version="v2"))
    first, again = run("ingest", log), run("ingest", log)
    assert first.returncode == 0 and "6 predictions and 0 errors added, 0 already stored, 0 bad lines" in first.stdout, first.stderr
    assert "0 predictions and 0 errors added" in again.stdout
    s = run("summary", "--version", "v2")
    assert s.returncode == 0 and "v2" in s.stdout and "v1" not in s.stdout.split("\n", 1)[1]
    assert "v1" in run("summary", "--last", "1").stdout and run("summary", "--since", "2999-01-01T00:00:00").stdout == "no events in this window\n"
    d = run("drift", "--bundle", bundle, "--data-dir", cola_dir)
    assert d.returncode == 0 and d.stdout.startswith("not enough data (6 events)")
    assert run("dashboard", tmp_path / "d.html").returncode == 0 and (tmp_path / "d.html").read_text().startswith("<!doctype html>")
    assert run("export-es", tmp_path / "es").returncode == 0 and (tmp_path / "es" / "bulk.ndjson").read_text().count("\n") == 12
    r = run("rules", tmp_path / "alerts.yml")
    assert r.returncode == 0 and "4 rules found" in r.stdout, r.stdout + r.stderr
    for bad, says in ((("ingest", tmp_path / "missing.log"), "no log file"), (("drift",), "--bundle")):
        r = run(*bad)
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert run("--help").returncode == 0 and "examples:" in run("--help").stdout


def test_the_reference_is_the_pipeline_stage_s_file_beside_the_bundle(bundle, tmp_path):
    import shutil
    from conftest import run_cli
    from mlops_basics.monitor_cli import ensure_reference
    art = tmp_path / "artifacts"
    shutil.copytree(bundle, art / "bundle")
    from conftest import write_cola
    data = write_cola(tmp_path / "cola", n_val=30)
    r = run_cli("mlops-basics-monitor", "reference", str(art / "bundle"), str(art / "reference.json"), "--data-dir", str(data),
                home=tmp_path / "home")
    assert r.returncode == 0 and "30 validation sentences" in r.stdout, r.stderr
    version = json.loads((bundle / "manifest.json").read_text())["version"]
    ref = ensure_reference(art / "bundle", folder=tmp_path / "cache")
    assert ref["model_version"] == version and ref["events"] == 30 and not (tmp_path / "cache").exists()  # read, not computed
    (art / "reference.json").write_text(json.dumps(ref | {"model_version": "another"}))  # a stale file: not used
    again = ensure_reference(art / "bundle", data_dir=data, folder=tmp_path / "cache")
    assert again["model_version"] == version and (tmp_path / "cache" / f"reference-{version}.json").is_file()
    bad = run_cli("mlops-basics-monitor", "reference", str(tmp_path / "nowhere"), str(tmp_path / "r.json"), home=tmp_path / "home")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "Fix:" in bad.stderr and not (tmp_path / "r.json").exists()


def test_the_monitoring_role_is_read_only_and_provisioned_once(aws, tmp_path):
    from conftest import aws_cfg, run_cli
    from mlops_basics.aws import client
    from mlops_basics.cloudwatch import lambda_log_group, monitor_policy, monitoring_changes
    from mlops_basics.registries import GITHUB_OIDC, allows, trust_policy, trusts
    over = ["lambda_function=prov-fn", "monitoring.stream=prov-stream", "monitoring.role_name=prov-logs", "monitoring.job_role=prov-monitor"]
    cfg = aws_cfg(*over)
    plan = monitoring_changes(cfg, dry_run=True)
    assert [c.resource for c in plan][-2:] == ["iam:role/prov-monitor"] * 2
    assert "prov-monitor" not in [r["RoleName"] for r in client("iam", cfg).list_roles()["Roles"]]  # a plan changes nothing
    assert "monitoring environment" in str(plan[-2])
    assert len(monitoring_changes(cfg)) == len(plan) and monitoring_changes(cfg, dry_run=True) == []  # once
    iam, account = client("iam", cfg), "123456789012"
    role = iam.get_role(RoleName="prov-monitor")["Role"]
    assert role["AssumeRolePolicyDocument"] == trust_policy(cfg, account, "monitoring")
    policy = iam.get_role_policy(RoleName="prov-monitor", PolicyName="monitor")["PolicyDocument"]
    assert policy == monitor_policy(cfg, account)
    group = f"arn:aws:logs:eu-west-1:{account}:log-group:{lambda_log_group(cfg)}:*"
    bundle_key = f"arn:aws:s3:::{cfg.bucket}/models/abc/model.onnx"
    assert allows(policy, "logs:FilterLogEvents", group) and allows(policy, "s3:GetObject", bundle_key)
    for action, resource in (("s3:PutObject", bundle_key), ("s3:GetObject", f"arn:aws:s3:::{cfg.bucket}/dvc/ab/cd"),
                             ("logs:FilterLogEvents", group.replace("prov-fn", "other")), ("logs:DeleteLogGroup", group),
                             ("lambda:UpdateFunctionCode", f"arn:aws:lambda:eu-west-1:{account}:function:prov-fn"),
                             ("ecr:PutImage", f"arn:aws:ecr:eu-west-1:{account}:repository/mlops-basics-api")):
        assert not allows(policy, action, resource), (action, resource)
    tok = lambda sub: {"iss": GITHUB_OIDC, "aud": "sts.amazonaws.com", "sub": sub}
    trust = role["AssumeRolePolicyDocument"]
    assert trusts(trust, tok("repo:learner/mlops-basics:environment:monitoring"))
    for sub in ("repo:learner/mlops-basics:environment:production", "repo:other/mlops-basics:environment:monitoring",
                "repo:learner/mlops-basics:ref:refs/heads/main"):
        assert not trusts(trust, tok(sub)), sub
    r = run_cli("mlops-basics-monitor", "provision", "--dry-run", "github.repository=learner/mlops-basics", *over, home=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "up to date: nothing to change", r.stdout + r.stderr


def test_the_scheduled_drift_check_job_runs_against_the_stand_ins(bundle, aws, tmp_path):
    ".ci/monitor as monitor.yml runs it: the bundle from S3, the log group pulled, drift checked, the report written; twice."
    import random
    from conftest import aws_cfg, has_torch, job_venv, real_cola_dir
    from mlops_basics.cloudwatch import put_log_lines
    from mlops_basics.contract import prediction_events
    from mlops_basics.core import read_cola_tsv
    from mlops_basics.predict import Predictor
    from mlops_basics.registries import publish_bundle
    cola = real_cola_dir()
    if cola is None:
        pytest.skip("needs the CoLA folder (the reference is CoLA's validation set)")
    cfg = aws_cfg()
    if not client_has_bucket(cfg):
        from mlops_basics.registries import provision
        provision(cfg)
    publish_bundle(bundle, cfg)
    p, rng = Predictor(bundle), random.Random(0)
    val = list(read_cola_tsv(cola / "validation.tsv")["sentence"])

    def log(sentences, tag):
        preds = [pr for i in range(0, len(sentences), 100) for pr in p.predict(sentences[i:i + 100])]
        lines = [json.dumps(e) for i, (s, pr) in enumerate(zip(sentences, preds))
                 for e in prediction_events(f"{tag}-{i}", p.version, [s], [pr], 3.0, "lambda")]
        put_log_lines(cfg, lines, f"2026/11/30/[$LATEST]{tag}")
    log(rng.sample(val, 400), "ordinary")
    env = {**os.environ, "GITHUB_REPOSITORY": "learner/mlops-basics", "MLOPS_BASICS_MONITOR_STORE": str(tmp_path / "store.duckdb"),
           "MLOPS_BASICS_HOME": str(tmp_path / "home"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
           "MLOPS_BASICS_VENV": str(job_venv(tmp_path))}  # the job's own venv: the extras .ci/monitor installs
    job = lambda out: subprocess.run(["bash", str(ROOT / ".ci/monitor"), str(tmp_path / out)], capture_output=True, text=True,
                                     env=env, timeout=600)
    first = job("report1")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert not has_torch(job_venv(tmp_path)), "the monitor job installed torch"
    assert "no drift (400 events)" in first.stdout and "predictions and 0 errors added" in first.stdout, first.stdout  # (the group has other tests' events too)
    report = tmp_path / "report1"
    assert {f.name for f in report.iterdir()} == {"dashboard.html", "drift.txt", "summary.txt"}  # no copy of the bundle
    assert "no drift" in (tmp_path / "summary.md").read_text() and p.version in (tmp_path / "summary.md").read_text()
    log([" ".join(rng.sample(val, 3)) for _ in range(400)], "runtogether")  # a client that sends paragraphs
    second = job("report2")
    assert second.returncode == 1, second.stdout[-2000:] + second.stderr[-2000:]
    assert "drift (800 events)" in second.stdout and ": 400 predictions and 0 errors added" in second.stdout, second.stdout  # only what is new


def client_has_bucket(cfg) -> bool:
    from mlops_basics.aws import client
    return any(b["Name"] == cfg.bucket for b in client("s3", cfg).list_buckets()["Buckets"])


def test_the_label_test_when_the_reference_never_gave_a_label():
    "A model that said only 'acceptable' on the validation set: the same is no drift (not NaN), a new label is drift."
    from mlops_basics.contract import prediction_events
    from mlops_basics.monitoring import add_events, drift_report, open_store
    n = 300
    ref = {"events": n, "text_length": [40 + i % 20 for i in range(n)], "tokens": [10 + i % 5 for i in range(n)],
           "score": [0.7 + (i % 10) / 40 for i in range(n)], "labels": {"unacceptable": 0, "acceptable": n}}

    def window(label_of):
        con = open_store(":memory:")
        preds = [{"tokens": 10 + i % 5, "label": label_of(i), "score": 0.7 + (i % 10) / 40, "truncated": False} for i in range(n)]
        add_events(con, prediction_events("w", "v1", ["x" * (40 + i % 20) for i in range(n)], preds, 1.0, "service"))
        return drift_report(con, ref)
    same = window(lambda i: "acceptable")
    assert same["verdict"] == "no drift" and same["tests"]["label_mix"]["p"] == 1.0
    new = window(lambda i: "unacceptable" if i % 3 == 0 else "acceptable")
    assert new["verdict"] == "drift" and new["drifted"] == ["label_mix"] and new["tests"]["label_mix"]["p"] == 0.0
