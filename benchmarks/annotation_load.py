"""Load benchmark of the annotation API, served as in production.

gunicorn (several workers) in front of EditLoop on a real PostgreSQL; simulated
annotators loop ``next`` → ``judgement`` over HTTP with token auth.

- saturation: C clients with no pause (closed loop) for a fixed time, C in 8, 32, 64:
  cycles/s and p50/p95/p99 per endpoint;
- realistic: open-loop arrivals at a fixed rate (Poisson) from a large pool of annotators
  who each pause between tasks: p50/p95/p99 per endpoint;
- after each phase the database is checked: no task judged more than k times, no
  annotator twice on a task, and every judgement the clients saw accepted is in the table.

Everything runs against its own embedded Postgres and Redis under ``var/bench`` (or the
DATABASE_URL you give), so the demo data is untouched.

    .venv/bin/python benchmarks/annotation_load.py            # full run (~4 minutes)
    .venv/bin/python benchmarks/annotation_load.py --quick    # 10 s phases
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("EDITLOOP_VAR_DIR", str(ROOT / "var" / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "editloop.settings")

import aiohttp  # noqa: E402
import django  # noqa: E402
import psutil  # noqa: E402
import uvloop  # noqa: E402  (a lighter event loop: the load generator shares the 2 cores)

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from annotation.models import EditTask, Image, Membership, Project, Variant  # noqa: E402

ASPECTS = ("following", "preserving", "quality")
RESULTS = ROOT / "benchmarks" / "results"


# --- fixtures in the database ------------------------------------------------------------


def make_project(name: str, tasks: int, overlap: int, annotators: int) -> tuple[Project, list[str]]:
    """A project with ``tasks`` 4-variant tasks and one token per annotator."""
    project = Project.objects.create(name=name, overlap=overlap)
    images = _bench_images()
    task_rows = EditTask.objects.bulk_create(
        EditTask(
            project=project,
            source=images[0],
            instruction=f"benchmark edit {n}",
            category="global",
            split="train",
        )
        for n in range(tasks)
    )
    Variant.objects.bulk_create(
        Variant(task=task, image=image, generator="bench")
        for task in task_rows
        for image in images[1:]
    )
    tokens = []
    for n in range(annotators):
        user, _ = User.objects.get_or_create(username=f"{name}-a{n}")
        Membership.objects.create(project=project, user=user)
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return project, tokens


def _bench_images() -> list[Image]:
    """Five image rows (a source and four variants); the files are never fetched here."""
    return [
        Image.objects.get_or_create(
            sha256=f"{n:064x}",
            defaults={
                "file": f"bench/{n}.png",
                "width": 64,
                "height": 64,
                "format": "PNG",
                "size_bytes": 1,
            },
        )[0]
        for n in range(1, 6)
    ]


def reset_database() -> None:
    """Start every run from empty tables: results must not depend on earlier runs' rows
    (or on autovacuum catching up with them mid-phase). Only ever the bench database."""
    if "bench" not in str(connection.settings_dict["HOST"]) + connection.settings_dict["NAME"]:
        raise SystemExit("refusing to empty a database that is not the benchmark's (var/bench)")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE annotation_aspectscore, annotation_judgement, annotation_assignment, "
            "annotation_variant, annotation_edittask, annotation_membership, annotation_project, "
            "annotation_image, authtoken_token, auth_user CASCADE"
        )


def settle_database() -> None:
    """Fresh statistics for the planner and no checkpoint due in the middle of a phase."""
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        cursor.execute("CHECKPOINT")


def check_database(project: Project, accepted: set[int]) -> dict:
    """Over-assignment and lost judgements, counted in SQL after the run."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT
              (SELECT count(*) FROM (
                 SELECT a.task_id FROM annotation_assignment a
                 JOIN annotation_edittask t ON t.id = a.task_id
                 WHERE t.project_id = %(p)s AND a.status = 'submitted'
                 GROUP BY a.task_id HAVING count(*) > %(k)s) over),
              (SELECT count(*) FROM (
                 SELECT a.task_id, a.annotator_id FROM annotation_assignment a
                 JOIN annotation_edittask t ON t.id = a.task_id WHERE t.project_id = %(p)s
                 GROUP BY 1, 2 HAVING count(*) > 1) twice),
              (SELECT count(*) FROM annotation_edittask t WHERE t.project_id = %(p)s
                 AND t.judgement_count <> (SELECT count(*) FROM annotation_assignment a
                     WHERE a.task_id = t.id AND a.status = 'submitted'))
            """,
            {"p": project.pk, "k": project.overlap},
        )
        over_assigned, same_annotator_twice, miscounted = cursor.fetchone()
        cursor.execute(
            "SELECT j.id FROM annotation_judgement j "
            "JOIN annotation_assignment a ON a.id = j.assignment_id "
            "JOIN annotation_edittask t ON t.id = a.task_id WHERE t.project_id = %s",
            [project.pk],
        )
        stored = {row[0] for row in cursor.fetchall()}
    return {
        "tasks_over_k": over_assigned,
        "annotator_twice_on_a_task": same_annotator_twice,
        "judgement_count_mismatches": miscounted,
        "judgements_accepted_by_clients": len(accepted),
        "lost_judgements": len(accepted - stored),
    }


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(
    port: int, workers: int, worker_class: str, threads: int, keep_alive: int
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:editloop.gunicorn_conf",
        "editloop.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--threads",
        str(threads),
        "--keep-alive",
        str(keep_alive),
        "--backlog",
        "2048",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(), start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("gunicorn did not start listening within 30 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    server.wait(timeout=30)


# --- simulated annotators --------------------------------------------------------------------


@dataclass
class Recorder:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "judgement": []})
    accepted: set[int] = field(default_factory=set)
    cycles: int = 0
    empty: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def start_measuring(self) -> None:
        """End of warm-up: forget latencies and counts, keep the judgements to check."""
        self.latencies = {"next": [], "judgement": []}
        self.cycles = 0
        self.errors = {}


def judgement_for(lease: dict, rng: random.Random) -> dict:
    ids = [variant["id"] for variant in lease["assignment"]["task"]["variants"]]
    order = ids[:]
    rng.shuffle(order)
    return {
        "client_id": str(uuid.uuid4()),
        "ranking": [[order[0]], order[1:3], order[3:]],
        "unsure": False,
        "scores": {str(i): {aspect: rng.randint(0, 5) for aspect in ASPECTS} for i in ids},
        "notes": {},
        "timings_ms": {
            "ranking": rng.randint(2000, 9000),
            "scoring": rng.randint(3000, 12000),
            "total": rng.randint(6000, 20000),
        },
    }


async def one_cycle(
    session: aiohttp.ClientSession,
    base: str,
    project_id: int,
    token: str,
    recorder: Recorder,
    rng: random.Random,
    think: float = 0.0,
) -> bool:
    """next → (the annotator judges for ``think`` s) → judgement; False when no work is left."""
    headers = {"Authorization": f"Token {token}"}
    started = time.perf_counter()
    async with session.post(
        f"{base}/api/v1/projects/{project_id}/next/", headers=headers
    ) as response:
        body = await response.read()
        status = response.status
    recorder.latencies["next"].append(time.perf_counter() - started)
    if status == 204:
        recorder.empty += 1
        return False
    if status != 200:
        recorder.error(f"next {status}")
        return True
    lease = json.loads(body)
    payload = judgement_for(lease, rng)
    if think:
        await asyncio.sleep(think)
    started = time.perf_counter()
    async with session.post(
        f"{base}/api/v1/assignments/{lease['assignment']['id']}/judgement/",
        json=payload,
        headers=headers,
    ) as response:
        answer = await response.read()
        status = response.status
    recorder.latencies["judgement"].append(time.perf_counter() - started)
    if status == 201:
        recorder.accepted.add(json.loads(answer)["judgement"]["id"])
        recorder.cycles += 1
    else:
        recorder.error(f"judgement {status}")
    return True


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def saturate(
    base: str, project_id: int, tokens: list[str], seconds: float, warmup: float
) -> tuple[Recorder, float]:
    """Closed loop, no pause; the first ``warmup`` seconds (fresh workers, connections,
    statement preparation) are run but not measured."""
    recorder = Recorder()
    measure_from = time.perf_counter() + warmup
    deadline = measure_from + seconds

    async def client(token: str, seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            if not await one_cycle(session, base, project_id, token, recorder, rng):
                return

    async def end_warmup() -> None:
        await asyncio.sleep(warmup)
        recorder.start_measuring()

    async with _session() as session:
        await asyncio.gather(end_warmup(), *(client(t, n) for n, t in enumerate(tokens)))
        elapsed = time.perf_counter() - measure_from
    return recorder, elapsed


async def open_loop(
    base: str, project_id: int, tokens: list[str], rate: float, seconds: float, pause: float
) -> tuple[Recorder, float, int]:
    """Annotators start tasks as Poisson arrivals at ``rate`` per second: each takes a task
    (``next``), looks at it and judges for a while (exponential, mean ``pause`` s), submits
    (``judgement``) and is free for another arrival."""
    recorder = Recorder()
    idle = asyncio.Queue()
    for n, token in enumerate(tokens):
        idle.put_nowait((n, token))
    rng = random.Random(0)
    pending: set[asyncio.Task] = set()
    dropped = 0

    async def arrival(n: int, token: str, think: float) -> None:
        await one_cycle(session, base, project_id, token, recorder, random.Random(n), think=think)
        idle.put_nowait((n, token))

    async with _session() as session:
        started = time.perf_counter()
        next_arrival = started
        while next_arrival < started + seconds:
            await asyncio.sleep(max(0.0, next_arrival - time.perf_counter()))
            if idle.empty():
                dropped += 1  # no annotator free: the pool is too small for the rate
            else:
                think = rng.expovariate(1 / pause)
                task = asyncio.create_task(arrival(*idle.get_nowait(), think))
                pending.add(task)
                task.add_done_callback(pending.discard)
            next_arrival += rng.expovariate(rate)
        arrivals_ended = time.perf_counter()
        await asyncio.gather(*pending)  # judgements of the last arrivals come in
    return recorder, arrivals_ended - started, dropped


# --- where the CPU goes ----------------------------------------------------------------------


def cpu_seconds(server: subprocess.Popen) -> dict[str, float]:
    """CPU time (user + system) so far of the web server, Postgres and this load generator."""
    totals = {"server": 0.0, "postgres": 0.0, "load_generator": 0.0}
    master = psutil.Process(server.pid)
    for process in [master, *master.children(recursive=True)]:
        totals["server"] += _cpu(process)
    for process in psutil.process_iter(["name"]):
        if process.info["name"] == "postgres":
            totals["postgres"] += _cpu(process)
    totals["load_generator"] = _cpu(psutil.Process())
    return totals


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def cpu_share(before: dict[str, float], after: dict[str, float], elapsed: float) -> dict:
    """Cores used by each party during a phase (2.0 = both cores of this machine)."""
    return {name: round((after[name] - before[name]) / elapsed, 2) for name in before}


# --- reporting ---------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {
        "n": len(values),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def summarise(name: str, recorder: Recorder, elapsed: float, database: dict, **extra) -> dict:
    return {
        "phase": name,
        "seconds": round(elapsed, 1),
        "cycles": recorder.cycles,
        "cycles_per_s": round(recorder.cycles / elapsed, 1),
        "next": percentiles(recorder.latencies["next"]),
        "judgement": percentiles(recorder.latencies["judgement"]),
        "errors": recorder.errors,
        "database": database,
        **extra,
    }


def print_row(result: dict) -> None:
    n, j = result["next"], result["judgement"]
    print(
        f"{result['phase']:<28} {result['cycles_per_s']:>8} cycles/s | next p50/p95/p99 "
        f"{n.get('p50_ms')}/{n.get('p95_ms')}/{n.get('p99_ms')} ms | judgement "
        f"{j.get('p50_ms')}/{j.get('p95_ms')}/{j.get('p99_ms')} ms | errors {result['errors']} | "
        f"db {result['database']} | cores {result.get('cores_used')}",
        flush=True,
    )


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [r["phase"] for r in results]
    left.bar(labels, [r["cycles_per_s"] for r in results], color="#4a7bd0")
    left.set_ylabel("cycles/s (next + judgement)")
    left.set_title("Throughput")
    left.tick_params(axis="x", rotation=20)
    width = 0.12
    for offset, (endpoint, key) in enumerate(
        [(e, k) for e in ("next", "judgement") for k in ("p50_ms", "p95_ms", "p99_ms")]
    ):
        positions = [i + (offset - 2.5) * width for i in range(len(results))]
        right.bar(
            positions,
            [r[endpoint].get(key, 0) for r in results],
            width,
            label=f"{endpoint} {key[:3]}",
        )
    right.set_xticks(range(len(results)), labels, rotation=20)
    right.set_ylabel("latency (ms)")
    right.set_yscale("log")
    right.set_title("Latency per endpoint")
    right.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {system}, Python {platform.python_version()}"


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, nargs="*", default=[8, 32, 64])
    parser.add_argument("--seconds", type=float, default=30, help="length of each saturation phase")
    parser.add_argument("--warmup", type=float, default=5, help="unmeasured start of each phase")
    parser.add_argument("--rate", type=float, default=100, help="open-loop arrivals per second")
    parser.add_argument("--open-seconds", type=float, default=60)
    parser.add_argument(
        "--pause", type=float, default=4.0, help="mean pause between an annotator's tasks (s)"
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-alive", type=int, default=30, help="gunicorn keep-alive (s)")
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10 s phases, for a smoke run")
    parser.add_argument("--skip-open", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.open_seconds = 10, 10

    call_command("migrate", verbosity=0)
    reset_database()
    run_id = time.strftime("%Y%m%d-%H%M%S")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(port, args.workers, args.worker_class, args.threads, args.keep_alive)
    results = []
    try:
        for clients in args.clients:
            # Enough tasks that nobody runs dry within the phase, even at 300 cycles/s.
            tasks = int(400 * (args.seconds + args.warmup) / args.overlap) + 100
            project, tokens = make_project(
                f"bench-{run_id}-c{clients}", tasks, args.overlap, clients
            )
            settle_database()
            cpu_before, wall_before = cpu_seconds(server), time.perf_counter()
            recorder, elapsed = uvloop.run(
                saturate(base, project.pk, tokens, args.seconds, args.warmup)
            )
            cores = cpu_share(
                cpu_before, cpu_seconds(server), time.perf_counter() - wall_before
            )
            result = summarise(
                f"saturation {clients} clients",
                recorder,
                elapsed,
                check_database(project, recorder.accepted),
                clients=clients,
                cores_used=cores,
            )
            print_row(result)
            results.append(result)
        if not args.skip_open:
            pool = int(args.rate * (args.pause + 1) * 2)
            tasks = int(args.rate * args.open_seconds * 1.2 / args.overlap) + 100
            project, tokens = make_project(f"bench-{run_id}-open", tasks, args.overlap, pool)
            settle_database()
            cpu_before, wall_before = cpu_seconds(server), time.perf_counter()
            recorder, elapsed, dropped = uvloop.run(
                open_loop(base, project.pk, tokens, args.rate, args.open_seconds, args.pause)
            )
            cores = cpu_share(
                cpu_before, cpu_seconds(server), time.perf_counter() - wall_before
            )
            result = summarise(
                f"open loop {args.rate:g}/s",
                recorder,
                elapsed,
                check_database(project, recorder.accepted),
                annotators=pool,
                arrivals_without_free_annotator=dropped,
                cores_used=cores,
            )
            print_row(result)
            results.append(result)
    finally:
        stop_server(server)

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "run": run_id,
        "machine": machine(),
        "server": (
            f"gunicorn {args.workers} x {args.worker_class} workers, {args.threads} thread(s)"
        ),
        "command": "python " + " ".join(sys.argv),
        "results": results,
    }
    (RESULTS / "annotation_load.json").write_text(json.dumps(report, indent=2))
    plot(results, RESULTS / "annotation_load.png")
    print(f"wrote {RESULTS / 'annotation_load.json'} and annotation_load.png")


if __name__ == "__main__":
    main()
