"""Gunicorn settings EditLoop is served and measured with:

    gunicorn -c python:editloop.gunicorn_conf

Flags on the command line still win (``--workers``, ``--bind`` ...). Measured choices
(docs/benchmarks.md): threaded workers, two per core, and a keep-alive longer than an
annotator's pause between opening a task and submitting it.
"""

from __future__ import annotations

import gc
import multiprocessing
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gunicorn.workers.base import Worker

wsgi_app = "editloop.wsgi"
worker_class = "gthread"
workers = 2 * multiprocessing.cpu_count()
threads = 2
keepalive = 30
backlog = 2048


def post_worker_init(worker: Worker) -> None:
    """Freeze what start-up loaded (Django, DRF, the URLconf: ~115k objects) so the cyclic
    garbage collector stops walking it: a full collection over it is a 20-50 ms pause in
    the middle of somebody's request."""
    gc.collect()
    gc.freeze()
