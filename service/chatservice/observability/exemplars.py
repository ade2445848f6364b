"""Exemplars: the trace id of a recent request on each bucket of the latency histograms, in the
OpenMetrics exposition (what Prometheus asks for with `Accept: application/openmetrics-text`).

prometheus_client cannot carry them here: its multiprocess mode stores numbers only in each
worker's `.db` files, and its README says "Exemplars are not supported" in that mode
(client_python issues #648 and #826, open since 2022). So this module keeps, per worker and in
memory, the newest exemplar of each bucket it observed, and writes that small table to
`exemplars_<pid>.json` in `PROMETHEUS_MULTIPROC_DIR`, at most once a second, when it changed.
A scrape, whichever worker answers it, attaches to each bucket the newest exemplar that any
worker has for it. So an exemplar can be up to a second (or one request) older than the last
request of its bucket: it points at a real request of that bucket, which is what an exemplar
promises, not at the last one.

Only with tracing on (`enable()`, called when the app has a tracer provider): otherwise
`record` returns at its first line, and the histograms cost what they cost before.
"""

from __future__ import annotations

import bisect
import functools
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from opentelemetry import trace
from prometheus_client import Histogram, Metric
from prometheus_client.samples import Exemplar, Sample
from prometheus_client.utils import floatToGoString

FILE_PREFIX = "exemplars_"  # gunicorn_conf.child_exit removes a dead worker's file
WRITE_INTERVAL = 1.0  # seconds between two writes of a worker's table

# (histogram name, sorted label pairs without `le`, le) -> (trace id, span id, value, time)
Key = tuple[str, tuple[tuple[str, str], ...], str]
Entry = tuple[str, str, float, float]

_enabled = False
_latest: dict[Key, Entry] = {}
_written_at = 0.0


def enable() -> None:
    """Record exemplars from now on. Never turned off again in a process: a process either
    traces or does not, and an app built without tracing records none anyway (no valid span)."""
    global _enabled
    _enabled = True


def record(histogram: Histogram, labels: tuple[str, ...], value: float) -> None:
    """Remember the current trace as the exemplar of the bucket `value` falls in."""
    if not _enabled:
        return
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return
    name, label_pairs, bounds, les = _shape(histogram, labels)
    le = les[bisect.bisect_left(bounds, value)]  # the last bound is +Inf: always found
    now = time.time()
    entry = (format(context.trace_id, "032x"), format(context.span_id, "016x"), value, now)
    _latest[(name, label_pairs, le)] = entry
    _publish(now)


@functools.cache
def _shape(
    histogram: Histogram, labels: tuple[str, ...]
) -> tuple[str, tuple[tuple[str, str], ...], list[float], list[str]]:
    """The histogram's name, its label pairs, its buckets' upper bounds and their `le` strings
    as the exposition writes them (cached: labels are bounded)."""
    names: tuple[str, ...] = histogram._labelnames
    bounds: list[float] = list(histogram.labels(*labels)._upper_bounds)
    pairs = tuple(sorted(zip(names, labels, strict=True)))
    return histogram._name, pairs, bounds, [floatToGoString(b) for b in bounds]  # type: ignore[no-untyped-call]


def _publish(now: float) -> None:
    global _written_at
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or now - _written_at < WRITE_INTERVAL:
        return
    _written_at = now
    path = Path(directory) / f"{FILE_PREFIX}{os.getpid()}.json"
    temporary = path.with_suffix(".tmp")
    rows = [[n, [list(p) for p in pairs], le, *entry] for (n, pairs, le), entry in _latest.items()]
    temporary.write_text(json.dumps(rows))
    temporary.replace(path)  # a scrape never reads half a table


def _tables(directory: str | None) -> Iterator[Iterable[tuple[Key, Entry]]]:
    yield list(_latest.items())  # this worker's, fresher than its file
    if not directory:
        return
    own = f"{FILE_PREFIX}{os.getpid()}.json"
    for path in Path(directory).glob(f"{FILE_PREFIX}*.json"):
        if path.name == own:
            continue
        try:
            rows = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a worker's file vanished with it, or is being replaced
        yield [
            ((n, tuple(tuple(p) for p in pairs), le), tuple(rest)) for n, pairs, le, *rest in rows
        ]


def newest() -> dict[Key, Entry]:
    """Every worker's exemplars, the newest per bucket."""
    merged: dict[Key, Entry] = {}
    for table in _tables(os.environ.get("PROMETHEUS_MULTIPROC_DIR")):
        for key, entry in table:
            if key not in merged or entry[3] > merged[key][3]:
                merged[key] = entry
    return merged


def attach(families: Iterable[Metric], exemplars: dict[Key, Entry]) -> Iterator[Metric]:
    """The metric families with each histogram bucket's exemplar, where there is one."""
    for family in families:
        if family.type == "histogram" and exemplars:
            family.samples = [_with_exemplar(family.name, s, exemplars) for s in family.samples]
        yield family


def _with_exemplar(name: str, sample: Sample, exemplars: dict[Key, Entry]) -> Sample:
    if not sample.name.endswith("_bucket"):
        return sample
    labels = dict(sample.labels)
    le = labels.pop("le", "")
    entry = exemplars.get((name, tuple(sorted(labels.items())), le))
    if entry is None:
        return sample
    trace_id, span_id, value, timestamp = entry
    return sample._replace(
        exemplar=Exemplar({"trace_id": trace_id, "span_id": span_id}, value, timestamp)
    )
