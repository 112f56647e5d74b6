"""Shared fixtures: personas and a small project whose images are real PNG files."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from PIL import Image as PILImage
from playwright.sync_api import Browser, Page, sync_playwright
from rest_framework.test import APIClient

from annotation.importers import import_directory
from annotation.models import Membership, Project

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _media_and_cache(settings, tmp_path_factory):
    """Files in a fresh folder; cache keys (login throttling) under a prefix of this test's
    own, so tests never see each other's counters and nothing is flushed from the Redis
    that the demo's broker may share."""
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    settings.MODEL_ROOT = tmp_path_factory.mktemp("models")
    settings.REWARD_MODEL_ROOT = settings.MODEL_ROOT / "rewards"
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


def make_user(username: str, *, is_staff: bool = False) -> User:
    return User.objects.create_user(username=username, password=PASSWORD, is_staff=is_staff)


@pytest.fixture
def staff(db) -> User:
    return make_user("staff", is_staff=True)


@pytest.fixture
def manager(db) -> User:
    return make_user("manager")


@pytest.fixture
def annotator(db) -> User:
    return make_user("annotator")


@pytest.fixture
def other_annotator(db) -> User:
    return make_user("other_annotator")


@pytest.fixture
def outsider(db) -> User:
    return make_user("outsider")


def png_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (32, 24)) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def task_line(index: int, variants: int = 4, **extra) -> dict:
    return {
        "source": f"img/src{index}.png",
        "instruction": f"make photo {index} warmer",
        "category": "global",
        "external_id": f"t-{index}",
        "variants": [
            {"image": f"img/t{index}_v{v}.png", "generator": "test", "seed": v}
            for v in range(variants)
        ],
        **extra,
    }


def task_files(index: int, variants: int = 4) -> dict[str, bytes]:
    files = {f"img/src{index}.png": png_bytes((index * 7 % 256, 10, 10))}
    for v in range(variants):
        files[f"img/t{index}_v{v}.png"] = png_bytes((index * 7 % 256, 20 + v * 30, 10 + v))
    return files


def write_manifest_dir(root: Path, lines: list[dict], files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    manifest = root / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return manifest


def zip_archive(
    lines: list[dict], files: dict[str, bytes], manifest_text: str | None = None
) -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        text = (
            manifest_text if manifest_text is not None else "\n".join(json.dumps(x) for x in lines)
        )
        archive.writestr("manifest.jsonl", text)
        for name, data in files.items():
            archive.writestr(name, data)
    buffer.seek(0)
    buffer.name = "tasks.zip"
    return buffer


def add_tasks(project: Project, root: Path, count: int, variants: int = 4, **extra) -> None:
    lines, files = [], {}
    for index in range(count):
        lines.append(task_line(index, variants, **extra))
        files.update(task_files(index, variants))
    import_directory(project, write_manifest_dir(root, lines, files))


@pytest.fixture
def project(db, manager, annotator, other_annotator, tmp_path) -> Project:
    project = Project.objects.create(name="Warm edits", overlap=2)
    Membership.objects.create(project=project, user=manager, role=Membership.Role.MANAGER)
    Membership.objects.create(project=project, user=annotator)
    Membership.objects.create(project=project, user=other_annotator)
    add_tasks(project, tmp_path / "import", count=3)
    return project


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def full_judgement(lease: dict, *, client_id: str = "6f1c2b1e-8a43-4a57-9a43-0d1f3f1c2a10") -> dict:
    """A valid judgement for a lease: display order as the ranking, every aspect scored."""
    ids = [variant["id"] for variant in lease["assignment"]["task"]["variants"]]
    return {
        "client_id": client_id,
        "ranking": [[ids[0]], ids[1:3], ids[3:]] if len(ids) == 4 else [[i] for i in ids],
        "unsure": False,
        "scores": {
            str(i): {"following": n % 6, "preserving": 5, "quality": 0} for n, i in enumerate(ids)
        },
        "notes": {str(ids[-1]): {"following": "did nothing"}},
        "timings_ms": {"ranking": 5400, "scoring": 9100, "total": 16000},
    }


@pytest.fixture
def procedural_project(db, manager, tmp_path_factory):
    """Factory: a project of procedural edits (known truth per variant) whose val and test
    splits each hold at least one photo."""
    from annotation.management.commands.seed_demo import split_fractions_with_every_split
    from training.procedural import build_demo_manifest

    def make(tasks: int = 8, overlap: int = 3, seed: int = 0, name: str = "Procedural") -> Project:
        manifest = build_demo_manifest(tmp_path_factory.mktemp("procedural"), tasks, seed)
        val, test = split_fractions_with_every_split(manifest)
        project = Project.objects.create(
            name=name, overlap=overlap, val_fraction=val, test_fraction=test
        )
        Membership.objects.create(project=project, user=manager, role=Membership.Role.MANAGER)
        import_directory(project, manifest)
        return project

    return make


def wait_for(condition, timeout: float = 180, every: float = 0.25):
    """Poll ``condition`` until it returns something truthy (a worker's result)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"still waiting after {timeout} s")


def database_url_of_this_test() -> str:
    from django.db import connection

    settings = connection.settings_dict
    host = settings["HOST"]
    where = f"?host={host}" if host.startswith("/") else ""
    netloc = "" if where else f"{host}:{settings['PORT'] or 5432}"
    credentials = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    return f"postgresql://{credentials}@{netloc}/{settings['NAME']}{where}"


@dataclass
class Worker:
    queue: str
    process: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost machine would."""
        self.process.kill()
        self.process.wait(timeout=30)


def _reroute(app) -> None:
    """Celery caches the prepared routes and the router built from them: rebuild both."""
    app.amqp.flush_routes()
    app.amqp.router = app.amqp.Router()


@pytest.fixture
def celery_worker(transactional_db, settings):
    """Factory: a real Celery worker process on a queue of its own, over the embedded Redis,
    reading and writing this test's database and files. Tasks routed by the app's
    configuration go to that queue for the test's duration."""
    from editloop.celery import app

    started: list[Worker] = []
    queue = f"test-{uuid.uuid4().hex[:8]}"
    routes, default = app.conf.task_routes, app.conf.task_default_queue
    app.conf.task_routes, app.conf.task_default_queue = {"*": {"queue": queue}}, queue
    _reroute(app)

    def start(**env: str) -> Worker:
        environment = {
            **os.environ,
            "DATABASE_URL": database_url_of_this_test(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "MODEL_ROOT": str(settings.MODEL_ROOT),
            "CELERY_DEFAULT_QUEUE": queue,
            "CELERY_GPU_QUEUE": queue,
            **env,
        }
        command = [sys.executable, "-m", "celery", "-A", "editloop", "worker", "-Q", queue]
        command += ["--pool", "solo", "--without-gossip", "--without-mingle", "-l", "WARNING"]
        worker = Worker(queue, subprocess.Popen(command, cwd=ROOT, env=environment))
        started.append(worker)
        return worker

    yield start
    app.conf.task_routes, app.conf.task_default_queue = routes, default
    _reroute(app)
    for worker in started:
        if worker.process.poll() is None:
            worker.process.terminate()
            worker.process.wait(timeout=30)


# --- the browser (Debian's Chromium through Playwright; never a downloaded browser) ---------

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
]
LAPTOP = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop in this thread; Django would then refuse
    # database calls from the test body as "async context".
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Browser, live_server) -> Iterator[Page]:
    context = browser.new_context(viewport=LAPTOP, base_url=live_server.url)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def log_in_as(page, username: str, next_path: str) -> None:
    """Log in through the real form and wait until ``next_path`` is shown."""
    from urllib.parse import urlparse

    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_function(f"location.pathname === {next_path!r}")
    assert urlparse(page.url).path == next_path
