"""Export throughput and memory: judgement pairs to JSONL and Parquet beside a raw COPY.

For each size (default 100k and 1M judgement pairs, seeded by ``manage.py seed_pairs`` into
projects of their own) it measures, in this order:

- ``COPY (<the exporter's pairs SELECT>) TO STDOUT`` through psycopg into a file: the rows
  exactly as the export selects them, with nothing done to them (the baseline);
- ``manage.py export_dataset <project> --kind pairs --format jsonl --images files``;
- the same with ``--format parquet``;
- the COPY again, so that a change of machine load during the run shows.

Each export runs in a subprocess of its own; its peak RSS is that child's ``ru_maxrss``
(``os.wait4``). Throughput is rows / the export job's own time (started → finished on the
ExportRun row: query, tables, archive); the subprocess wall time (with Python and Django
start-up) is reported beside it. The ratio compares an export with the mean of the two COPY
runs around it.

Everything runs against an embedded Postgres, media and model folder under
``var/bench-exports`` (or the DATABASE_URL you give), so no other data is touched.

    .venv/bin/python benchmarks/exports.py                      # 100k and 1M (~10 minutes)
    .venv/bin/python benchmarks/exports.py --sizes 100000       # quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDITLOOP_VAR_DIR", str(ROOT / "var" / "bench-exports"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "editloop.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from annotation.models import EditTask, Judgement, Project  # noqa: E402
from exports.queries import overall_pairs_sql  # noqa: E402
from exports.request import parse_request  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MANAGE = [sys.executable, str(ROOT / "manage.py")]
TARGET_RATIO = 2.0
TARGET_RSS_MB = 400


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["jsonl", "parquet"])
    parser.add_argument("--output", default="exports", help="results/<output>.json and .png")
    parser.add_argument("--keep-archives", action="store_true")
    return parser.parse_args()


def project_name(size: int) -> str:
    return f"bench-pairs-{size}"


def ensure_seeded(size: int) -> dict:
    """The project of ``size`` pairs, seeded once (later runs reuse it)."""
    name = project_name(size)
    project = Project.objects.filter(name=name).first()
    have = Judgement.objects.filter(assignment__task__project=project).count() if project else 0
    if have == size:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        return {"seeded_now": False}
    if have:
        raise SystemExit(f"{name} holds {have} judgements, not {size}: delete it and rerun")
    started = time.monotonic()
    subprocess.run([*MANAGE, "seed_pairs", str(size), "--project", name, "--no-scores"],
                   check=True, cwd=ROOT)
    seconds = time.monotonic() - started
    with connection.cursor() as cursor:  # fresh statistics: the planner sizes the joins
        cursor.execute("VACUUM ANALYZE")
    return {"seeded_now": True, "seed_seconds": round(seconds, 1)}


def pairs_sql(project: Project) -> tuple[str, dict]:
    request = parse_request({"kind": "pairs", "format": "jsonl"})
    return overall_pairs_sql(request, project.pk)


def copy_rows(project: Project, folder: Path) -> dict:
    """The baseline: COPY (SELECT ...) TO STDOUT of the export's own query, into a file."""
    sql, params = pairs_sql(project)
    own = connection.get_new_connection(connection.get_connection_params())
    own.autocommit = True
    target = folder / "copy.tsv"
    load = os.getloadavg()[0]
    started = time.monotonic()
    size = 0
    try:
        with own.cursor() as cursor, open(target, "wb") as out:
            with cursor.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
                for chunk in copy:
                    out.write(chunk)
                    size += len(chunk)
    finally:
        own.close()
    seconds = time.monotonic() - started
    with open(target, "rb") as handle:
        rows = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    target.unlink()
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds),
            "bytes": size, "load_1min_before": round(load, 2)}


def export_rows(project: Project, fmt: str, keep: bool) -> dict:
    """``manage.py export_dataset`` in a child process; its own peak RSS from wait4."""
    command = [*MANAGE, "export_dataset", project.name, "--kind", "pairs", "--format", fmt,
               "--images", "files", "--json"]
    load = os.getloadavg()[0]
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{shlex.join(command)} failed")
    result = json.loads(out.strip().splitlines()[-1])
    if not keep:
        Path(result["path"]).unlink()
    seconds = result["seconds"]
    return {
        "command": shlex.join(["python", "manage.py", *command[2:]]),
        "rows": result["rows"],
        "seconds": round(seconds, 3),
        "rows_per_s": round(result["rows"] / seconds),
        "phases_s": result["manifest"]["seconds"],
        "wall_with_startup_s": round(wall, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
        "archive_bytes": result["size_bytes"],
        "table_bytes": sum(f["bytes"] for f in result["manifest"]["files"]),
        "load_1min_before": round(load, 2),
    }


def run_size(size: int, formats: list[str], keep: bool) -> dict:
    seeded = ensure_seeded(size)
    project = Project.objects.get(name=project_name(size))
    tasks = EditTask.objects.filter(project=project).count()
    with tempfile.TemporaryDirectory() as folder:
        before = copy_rows(project, Path(folder))
        print(f"{size:>9,} COPY        {before['seconds']:7.2f} s "
              f"{before['rows_per_s']:>9,} rows/s")
        exports = {}
        for fmt in formats:
            exports[fmt] = export_rows(project, fmt, keep)
            found = exports[fmt]
            print(f"{size:>9,} {fmt:<11} {found['seconds']:7.2f} s {found['rows_per_s']:>9,} "
                  f"rows/s  peak RSS {found['peak_rss_mb']:6.1f} MB")
        after = copy_rows(project, Path(folder))
        print(f"{size:>9,} COPY again  {after['seconds']:7.2f} s {after['rows_per_s']:>9,} rows/s")
    copy_seconds = statistics.fmean([before["seconds"], after["seconds"]])
    for found in exports.values():
        assert found["rows"] == before["rows"] == size, (found["rows"], before["rows"], size)
        found["ratio_to_copy"] = round(found["seconds"] / copy_seconds, 2)
    return {"size": size, "tasks": tasks, **seeded, "copy": [before, after],
            "exports": exports}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    sizes = [f"{run['size']:,}" for run in runs]
    formats = list(runs[0]["exports"])
    figure, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / (len(formats) + 1)
    for n, label in enumerate(["COPY", *formats]):
        values = [
            statistics.fmean(c["rows_per_s"] for c in run["copy"]) if label == "COPY"
            else run["exports"][label]["rows_per_s"]
            for run in runs
        ]
        positions = [i + (n - len(formats) / 2) * width for i in range(len(runs))]
        speed.bar(positions, values, width, label=label)
    speed.set_xticks(range(len(runs)), sizes)
    speed.set_xlabel("judgement pairs")
    speed.set_ylabel("rows / s")
    speed.set_title("pairs export vs COPY of the same rows")
    speed.legend()
    for fmt in formats:
        memory.plot(sizes, [run["exports"][fmt]["peak_rss_mb"] for run in runs], marker="o",
                    label=fmt)
    memory.axhline(TARGET_RSS_MB, linestyle="--", color="grey", label=f"{TARGET_RSS_MB} MB")
    memory.set_ylim(0, TARGET_RSS_MB * 1.2)
    memory.set_xlabel("judgement pairs")
    memory.set_ylabel("peak RSS of the export process (MB)")
    memory.set_title("memory")
    memory.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    args = parse_args()
    subprocess.run([*MANAGE, "migrate", "-v", "0"], check=True, cwd=ROOT)
    started = datetime.now(UTC)
    runs = [run_size(size, args.formats, args.keep_archives) for size in args.sizes]
    results = {
        "benchmark": "exports",
        "command": shlex.join(["python", "benchmarks/exports.py", *sys.argv[1:]]),
        "started_at": started.isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "targets": {"ratio_to_copy": TARGET_RATIO, "peak_rss_mb": TARGET_RSS_MB},
        "runs": runs,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.output}.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / f"{args.output}.png")
    print(f"results: {RESULTS / args.output}.json and .png")


if __name__ == "__main__":
    main()
