"""Benchmark: the monitoring store at scale: ingest N synthetic prediction events from a log file, then the dashboard's queries.

The events follow the schema the service and the Lambda handler write (mlops_basics.contract.EVENT_FIELDS), spread
over 24 hours, two model versions and both sources, with realistic label, score, token and latency mixes; one line
in 10,000 is cut short (counted as bad). Ingestion is timed from the log file to committed rows in a fresh DuckDB file (parse, check,
insert with the idempotency key); each query is run --repeat times (median). Memory: the peak resident size of
this process. Target: >= 50,000 events/s ingested; every dashboard query <= 1 s at 1M events.

    python bench/monitoring.py [--events 1000000] [--repeat 5]
"""
import argparse
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from machine import machine  # bench/machine.py: cores, CPU model and features

def synth(path: Path, n: int, seed: int = 0) -> None:
    "Write `n` prediction events (and a little garbage) as JSON lines."
    from mlops_basics.contract import EVENT_SCHEMA
    rng = random.Random(seed)
    t0 = datetime(2026, 11, 24, tzinfo=timezone.utc)
    with open(path, "w") as f:
        i = 0
        while i < n:
            size = min(rng.choice((1, 1, 1, 2, 4, 8)), n - i)
            ts = (t0 + timedelta(seconds=86400 * i / n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            source, version = rng.choice(("service", "lambda")), ("v1" if i < n * 0.6 else "v2")
            ms = round(rng.lognormvariate(1.5, 0.5), 2)
            for seq in range(size):
                tokens = min(int(rng.lognormvariate(2.4, 0.4)), 128)
                score = round(0.5 + 0.5 * rng.betavariate(5, 1), 4)
                f.write(json.dumps({"schema": EVENT_SCHEMA, "event": "prediction", "ts": ts, "source": source,
                                    "request_id": f"r{i}", "seq": seq, "model_version": version, "text_length": tokens * 4,
                                    "tokens": tokens, "label": "acceptable" if rng.random() < 0.7 else "unacceptable",
                                    "score": score, "truncated": tokens == 128, "latency_ms": ms}) + "\n")
                if rng.random() < 1e-4:  # a line cut short, as a crash mid-write leaves it
                    f.write('{"schema": 1, "event": "prediction", "ts": "2026-11-\n')
            i += size


def timed(fn, repeat: int) -> float:
    "Median seconds of `repeat` calls."
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 4)


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="bench/monitoring.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    from mlops_basics.dashboard import score_histogram, summary
    from mlops_basics.ingest import ingest_file
    from mlops_basics.monitoring import open_store, traffic
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    try:
        log = tmp / "events.log"
        synth(log, a.events)
        con = open_store(tmp / "store.duckdb")
        t = time.perf_counter()
        got = ingest_file(con, log)
        ingest_s = time.perf_counter() - t
        con.execute("CHECKPOINT")  # the rows into the database file (out of the write-ahead log) before it is measured
        again = timed(lambda: ingest_file(con, log), 1)  # nothing new: the cursor
        queries = {
            "summary (all)": lambda: summary(con),
            "summary (1 hour, one version)": lambda: summary(con, since="2026-11-24T12:00:00", until="2026-11-24T13:00:00", model_version="v1"),
            "traffic per minute": lambda: traffic(con, every="1 minute"),
            "traffic per hour, lambda only": lambda: traffic(con, every="1 hour", source="lambda"),
            "score histogram": lambda: score_histogram(con, bins=20),
        }
        q = {name: timed(fn, a.repeat) for name, fn in queries.items()}
        res = {"benchmark": "monitoring", **machine(), "events": got["added"],
               "bad_lines": got["bad"], "log_mb": round(log.stat().st_size / 1e6, 1),
               "store_mb": round((tmp / "store.duckdb").stat().st_size / 1e6, 1), "ingest_s": round(ingest_s, 2),
               "events_per_s": int(got["added"] / ingest_s), "reingest_nothing_new_s": again, "query_s": q,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}
        res["target"] = {"events_per_s_min": 50_000, "query_s_max": 1.0}
        res["meets_target"] = res["events_per_s"] >= 50_000 and max(q.values()) <= 1.0
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), indent=1))
