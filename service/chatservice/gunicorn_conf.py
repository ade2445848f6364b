"""gunicorn configuration, used as `gunicorn -c python:chatservice.gunicorn_conf APP`.

Everything comes from the same `CHATSERVICE_*` settings as the app.
"""

from __future__ import annotations

import gc
import os
import shutil
from pathlib import Path
from typing import Any

from chatservice.config import Settings
from chatservice.observability.logs import logging_config, make_records_cheap

_settings = Settings()

bind = f"{_settings.host}:{_settings.port}"
workers = _settings.workers
# uvicorn-worker's worker with bounded request heads (see http_server.py).
worker_class = "chatservice.kit.http_server.ChatServiceWorker"
# Apps are built in each worker after the fork (engines, HTTP pools, tracer threads).
preload_app = False
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
logconfig_dict = logging_config(_settings.log_level, _settings.log_repeats_per_minute)
# Before the fork, so every worker's records are made without what no line shows.
make_records_cheap()
accesslog = None
# The control socket lives under $HOME, which a read-only container filesystem does not allow.
control_socket_disable = True


def on_starting(server: Any) -> None:
    # Metric files of a previous run would be summed into this one's counters.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        path = Path(directory)
        if path.exists():
            for child in path.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        path.mkdir(parents=True, exist_ok=True)


def post_worker_init(worker: Any) -> None:
    # The app is built: the objects alive now (modules, routes, schemas) live as long as the
    # worker. Freezing them spares every full garbage collection a scan of all of them (the
    # README's benchmark section has what it bought).
    gc.freeze()
    # Requests in flight hold thousands of young objects, so the default first threshold
    # (700) started a collection every few requests; nearly all of those objects die by
    # reference counting anyway. Cycles are still collected, later.
    gc.set_threshold(10_000, *gc.get_threshold()[1:])


def child_exit(server: Any, worker: Any) -> None:
    # Drop the dead worker's live gauges and exemplars; its counters stay and keep adding up.
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
        # exemplars.py's file name; not imported here, which would load OpenTelemetry into
        # the master.
        (Path(directory) / f"exemplars_{worker.pid}.json").unlink(missing_ok=True)
