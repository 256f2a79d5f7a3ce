#!/usr/bin/env python3
"""Turns the RESULT/RSS lines of one scripts/bench.sh run into the markdown table of BENCHMARKS.md.

    summarize.py RAW_FILE HEADER_FILE > table.md

RAW_FILE holds the driver's lines `RESULT label=<workload>|<round>|<system> key=value ...` (also
for warp runs, which the driver runs and reports) and the script's `RSS label=... kb=N` and
`FAIL label=... reason=...` lines. Medians are over rounds; the ratio column is jets3's figure
divided by the row's system's figure in the same round (drift between rounds cancels out), shown
as the median and the per-round values.
"""
import re
import shlex
import statistics
import sys
from collections import OrderedDict, defaultdict

SYSTEM_NAMES = OrderedDict(
    [
        ("jets3", "jets3"),
        ("jets3-base", "jets3 baseline (JETS3_BENCH_BASELINE_BIN)"),
        ("nats-s3", "nats-s3"),
        ("raw", "raw NATS (Direct Get)"),
        ("raw-get", "raw NATS (`ObjectStore::get`)"),
    ]
)

# workload -> (what it is, the metric the ratio uses, True if higher is better)
WORKLOADS = OrderedDict(
    [
        ("put-4k-c1", ("PUT 4 KiB, 1 client", "ops_s", True)),
        ("put-4k-c16", ("PUT 4 KiB, 16 clients", "ops_s", True)),
        ("put-4k-over-c16", ("PUT 4 KiB over existing keys, 16 clients", "ops_s", True)),
        ("put-256k-c1", ("PUT 256 KiB, 1 client", "ops_s", True)),
        ("get-4k-c1", ("GET 4 KiB, 1 client", "ops_s", True)),
        ("get-4k-c16", ("GET 4 KiB, 16 clients", "ops_s", True)),
        ("put-16m-c16", ("PUT 16 MiB, 16 clients", "mb_s", True)),
        ("get-16m-c16", ("GET 16 MiB, 16 clients", "mb_s", True)),
        ("mixed", ("mixed 1 MiB, 16 clients (45% GET, 30% HEAD, 15% PUT, 10% DELETE)", "ops_s", True)),
        ("list-1k", ("ListObjectsV2 page of 1000, 1k objects", "p50_ms", False)),
        ("list-10k", ("ListObjectsV2 page of 1000, 10k objects", "p50_ms", False)),
        ("list-100k", ("ListObjectsV2 page of 1000, 100k objects", "p50_ms", False)),
        ("range-start", ("Range GET 1 MiB at offset 0 of 1 GiB: time to first byte", "p50_ms", False)),
        ("range-end", ("Range GET last 1 MiB of 1 GiB: time to first byte", "p50_ms", False)),
        ("complete-1g", ("CompleteMultipartUpload, 1 GiB in 100 parts", "p50_ms", False)),
        ("rss-get-256m-c32", ("32 concurrent GETs of a 256 MiB object: peak gateway RSS", "rss_mib", False)),
    ]
)

# The raw-NATS path per workload family (what the "raw" row did).
RAW_NAMES = {
    "put": "raw NATS (`ObjectStore::put`)",
    "mixed": "raw NATS (put, Direct Get, delete)",
    "list": "raw NATS (`ObjectStore::list`)",
}

UNITS = {"ops_s": "ops/s, higher is better", "mb_s": "MB/s, higher is better",
         "p50_ms": "p50 ms, lower is better", "rss_mib": "peak RSS, lower is better"}

NOTES = {
    ("raw", "list-1k"): "no paged listing in NATS: whole bucket enumerated and sorted",
    ("raw", "list-10k"): "no paged listing in NATS: whole bucket enumerated and sorted",
    ("raw", "list-100k"): "no paged listing in NATS: whole bucket enumerated and sorted",
    ("raw", "range-start"): "meta + first chunk + chunk by sequence",
    ("raw", "range-end"): "meta + first chunk + chunk by sequence",
}


def parse(path):
    runs = defaultdict(lambda: defaultdict(dict))  # workload -> system -> round -> fields
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.strip()
        if not (line.startswith("RESULT ") or line.startswith("RSS ") or line.startswith("FAIL ")):
            continue
        kind, rest = line.split(" ", 1)
        try:
            fields = dict(kv.split("=", 1) for kv in shlex.split(rest) if "=" in kv)
        except ValueError:
            continue
        label = fields.get("label", "")
        parts = label.split("|")
        if len(parts) != 3:
            continue
        workload, rnd, system = parts
        rec = runs[workload][system].setdefault(rnd, {})
        if kind == "RSS":
            rec["rss_mib"] = float(fields.get("kb", "0")) / 1024.0
        elif kind == "FAIL":
            rec["fail"] = fields.get("reason", "driver failed")
        else:
            rec.update(fields)
    return runs


def num(rec, key):
    try:
        return float(rec[key])
    except (KeyError, ValueError):
        return None


def fmt(v, digits=None):
    if v is None:
        return "—"
    if digits is None:
        digits = 0 if abs(v) >= 100 else (1 if abs(v) >= 10 else 2)
    return f"{v:,.{digits}f}"


def short(text, n=90):
    text = str(text).replace("\\n", " ").replace('\\"', '"')
    # An S3 error document: keep its code and message.
    m = re.search(r"^(.*?)<\?xml.*?<Code>(.*?)</Code>(?:<Message>(.*?)</Message>)?", text, re.S)
    if m:
        text = f"{m.group(1).strip()} {m.group(2)}: {m.group(3) or ''}"
    text = " ".join(text.split()).replace("|", "/")
    return (text[: n - 1] + "…") if len(text) > n else text


def problem(rec):
    """Why this round's figures must not be compared, or None."""
    if "fail" in rec:
        return "failed: " + short(rec["fail"])
    if rec.get("incorrect"):
        return "incorrect: " + short(rec["incorrect"])
    ops = num(rec, "ops") or 0
    errors = num(rec, "errors") or 0
    # More than one request in ten failing: the figures would compare unlike things.
    if errors and errors > 0.1 * (ops + errors):
        return (f"fails: {int(errors)} of {int(ops + errors)} requests failed "
                f"({short(rec.get('first_error', ''), 70)})")
    return None


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def main():
    raw, header = sys.argv[1], sys.argv[2]
    runs = parse(raw)
    out = [open(header, encoding="utf-8").read().rstrip(), ""]
    out.append(
        "| workload | system | ops/s | MB/s | p50 ms | p99 ms | peak RSS MiB | CPU ms per op: gateway / nats-server / client | jets3 ÷ system, metric in brackets: median (per round) | notes |"
    )
    out.append("|---|---|--:|--:|--:|--:|--:|--:|---|---|")
    names = list(WORKLOADS) + [w for w in runs if w not in WORKLOADS]
    for workload in names:
        if workload not in runs:
            continue
        title, metric, higher = WORKLOADS.get(workload, (workload, "ops_s", True))
        systems = runs[workload]
        jets3 = systems.get("jets3", {})
        for system in list(SYSTEM_NAMES) + [s for s in systems if s not in SYSTEM_NAMES]:
            if system not in systems:
                continue
            rounds = systems[system]
            order = sorted(rounds, key=lambda r: int(r) if r.isdigit() else 0)
            problems = [p for p in (problem(rounds[r]) for r in order) if p]
            good = [rounds[r] for r in order if not problem(rounds[r])]
            notes = []
            if NOTES.get((system, workload)):
                notes.append(NOTES[(system, workload)])
            if workload == "mixed" and any(rounds[r].get("system") == "warp" for r in order):
                notes.append("p50 / p99 of its GETs (warp times each operation type apart)")
            errs = sum(int(num(rounds[r], "errors") or 0) for r in order)
            if errs and not problems:
                first = next((rounds[r].get("first_error") for r in order if rounds[r].get("first_error")), "")
                notes.append(f"{errs} failed requests: {short(first, 80)}")
            label = SYSTEM_NAMES.get(system, system)
            if system == "raw":
                label = RAW_NAMES.get(workload.split("-")[0], label)
            title_cell = f"{title} [{UNITS.get(metric, metric)}]"
            if problems and not good:
                cell = problems[0]
                took = median([num(rounds[r], "p50_ms") for r in order if rounds[r].get("incorrect")])
                if took:
                    notes.append(f"its answer took {fmt(took)} ms (p50)")
                ok = [rounds[r] for r in order if (num(rounds[r], "ops") or 0) > 0 and not rounds[r].get("incorrect")]
                if ok:
                    n_ok = sum(int(num(r, "ops")) for r in ok)
                    notes.append(f"{n_ok} requests succeeded in all (p50 {fmt(median([num(r, 'p50_ms') for r in ok]))} ms)")
                out.append(f"| {title_cell} | {label} | {cell} | | | | | | | {'; '.join(notes)} |")
                continue
            if problems:
                notes.append(f"{len(problems)} of {len(order)} rounds: {problems[0]}")
            ops = median([num(r, "ops_s") for r in good])
            mbs = median([num(r, "mb_s") for r in good])
            p50 = median([num(r, "p50_ms") for r in good])
            p99 = median([num(r, "p99_ms") for r in good])
            rss = median([num(r, "rss_mib") for r in good])
            if workload.startswith("rss-"):
                ops = None
            if workload.startswith(("list-", "range-", "complete-")):
                ops, mbs = ops if workload.startswith("list-") else None, None
            if workload.startswith("complete-"):
                up = median([num(r, "upload_mb_s") for r in good])
                if up is not None:
                    notes.append(f"parts uploaded at {fmt(up)} MB/s (4 at a time)")
            def per_op(key):
                vals = []
                for r in good:
                    c, n = num(r, key), num(r, "ops")
                    if c is not None and n:
                        vals.append(1000.0 * c / n)
                return median(vals)

            cpu = ""
            if not workload.startswith(("rss-", "complete-", "range-")):
                cpu = " / ".join(fmt(per_op(k), 3 if (per_op(k) or 0) < 1 else None)
                                 for k in ("gw_cpu_s", "nats_cpu_s", "client_cpu_s"))
            ratio = ""
            if system != "jets3" and jets3:
                per = []
                for r in order:
                    a, b = jets3.get(r), rounds.get(r)
                    if not a or not b or problem(a) or problem(b):
                        continue
                    x, y = num(a, metric), num(b, metric)
                    if x is not None and y:
                        per.append(x / y)
                if per:
                    ratio = f"**{statistics.median(per):.3g}** ({', '.join(f'{p:.3g}' for p in per)})"
                elif problems:
                    ratio = "not comparable"
            out.append(
                f"| {title_cell} | {label} | {fmt(ops)} | {fmt(mbs)} | {fmt(p50)} | {fmt(p99)} | {fmt(rss, 0)} | {cpu} | {ratio} | {'; '.join(notes)} |"
            )
    print("\n".join(out))


if __name__ == "__main__":
    main()
