"""The canary's verdict, pure: pod counters at the window's start and now in, figures and a
verdict out. The state machine (state.py) records both in status.canary."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from chatservice_operator.identity import Track
from chatservice_operator.resource import (
    Canary,
    CanaryFigures,
    CanaryVerdict,
    PodSample,
)

QUANTILE = 0.95
# A figure exactly at its limit passes; float arithmetic must not make it fail (1 - 0.99 > 0.01).
EPSILON = 1e-9


def _beyond(value: float, limit: float) -> bool:
    return value - limit > EPSILON


def _fields(sample: PodSample) -> list[float]:
    return [
        sample.requests,
        sample.errors,
        sample.streams,
        sample.completed_streams,
        *sample.time_to_first_token.values(),
        *sample.added_latency.values(),
    ]


def _minus(now: dict[str, float], then: dict[str, float]) -> dict[str, float]:
    return {le: count - then.get(le, 0.0) for le, count in now.items()}


def pod_delta(now: PodSample, then: PodSample | None) -> PodSample:
    """What the pod did since `then`; a pod that restarted (a counter went down) or was not
    there at the start counts from zero, as Prometheus' increase() does."""
    if then is None or any(n < t for n, t in zip(_fields(now), _fields(then), strict=False)):
        return now
    if then.time_to_first_token.keys() - now.time_to_first_token.keys():
        return now
    if then.added_latency.keys() - now.added_latency.keys():
        return now
    return now.model_copy(
        update={
            "requests": now.requests - then.requests,
            "errors": now.errors - then.errors,
            "streams": now.streams - then.streams,
            "completed_streams": now.completed_streams - then.completed_streams,
            "time_to_first_token": _minus(now.time_to_first_token, then.time_to_first_token),
            "added_latency": _minus(now.added_latency, then.added_latency),
        }
    )


def _add(into: dict[str, float], buckets: dict[str, float]) -> None:
    for le, count in buckets.items():
        into[le] = into.get(le, 0.0) + count


def quantile(q: float, buckets: dict[str, float]) -> float | None:
    """histogram_quantile() as Prometheus computes it from cumulative buckets; None: empty."""
    ordered = sorted((float(le), count) for le, count in buckets.items())
    if not ordered or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in ordered:
        if count >= rank:
            if upper == math.inf:
                return lower  # above the highest finite bucket: its bound is all we know
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def figures(deltas: Iterable[PodSample]) -> CanaryFigures:
    requests = errors = streams = completed = 0.0
    ttft: dict[str, float] = {}
    added: dict[str, float] = {}
    for delta in deltas:
        requests += delta.requests
        errors += delta.errors
        streams += delta.streams
        completed += delta.completed_streams
        _add(ttft, delta.time_to_first_token)
        _add(added, delta.added_latency)
    return CanaryFigures(
        requests=round(requests),
        error_ratio=errors / requests if requests else None,
        time_to_first_token_p95=quantile(QUANTILE, ttft),
        added_latency_p95=quantile(QUANTILE, added),
        stream_completion_ratio=completed / streams if streams else None,
    )


def _plus(total: PodSample | None, delta: PodSample) -> PodSample:
    if total is None:
        return delta
    ttft, added = dict(total.time_to_first_token), dict(total.added_latency)
    _add(ttft, delta.time_to_first_token)
    _add(added, delta.added_latency)
    return total.model_copy(
        update={
            "requests": total.requests + delta.requests,
            "errors": total.errors + delta.errors,
            "streams": total.streams + delta.streams,
            "completed_streams": total.completed_streams + delta.completed_streams,
            "time_to_first_token": ttft,
            "added_latency": added,
        }
    )


def advance(
    window: Iterable[PodSample], readings: Iterable[PodSample], now: Iterable[PodSample]
) -> tuple[tuple[PodSample, ...], tuple[PodSample, ...]]:
    """The window's per-pod totals and the pods' last readings after one more reading.

    Each pod adds what it did since its last reading, so what a pod did before it restarted or
    disappeared stays counted (as Prometheus' increase() keeps it across counter resets); a pod
    that could not be read this time keeps its last reading, so nothing is counted twice."""
    totals = {sample.pod: sample for sample in window}
    last = {sample.pod: sample for sample in readings}
    for sample in now:
        totals[sample.pod] = _plus(totals.get(sample.pod), pod_delta(sample, last.get(sample.pod)))
        last[sample.pod] = sample
    return tuple(totals.values()), tuple(last.values())


def measure(window: Iterable[PodSample]) -> dict[Track, CanaryFigures]:
    """Each track's figures from its pods' totals over the window."""
    deltas: dict[Track, list[PodSample]] = {Track.STABLE: [], Track.CANARY: []}
    for sample in window:
        if sample.track in deltas:
            deltas[Track(sample.track)].append(sample)
    return {track: figures(samples) for track, samples in deltas.items()}


@dataclass(frozen=True)
class Judgement:
    verdict: CanaryVerdict
    # Why it failed (each broken threshold with its figures), or why it waits.
    reasons: tuple[str, ...] = ()


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}s"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def broken_thresholds(
    canary: CanaryFigures, stable: CanaryFigures, spec: Canary
) -> tuple[str, ...]:
    """Each threshold the canary breaks, compared with the stable pods. Without stable
    traffic, ratios compare with a perfect baseline and latencies are not compared."""
    limits, broken = spec.thresholds, []
    if canary.error_ratio is not None:
        baseline = stable.error_ratio or 0.0
        if _beyond(canary.error_ratio - baseline, limits.error_ratio.max_increase):
            broken.append(
                f"error ratio {_ratio(canary.error_ratio)} vs stable {_ratio(baseline)} "
                f"(max increase {limits.error_ratio.max_increase})"
            )
    latencies = (
        ("p95 time to first token", canary.time_to_first_token_p95,
         stable.time_to_first_token_p95, limits.time_to_first_token_p95),
        ("p95 added latency", canary.added_latency_p95, stable.added_latency_p95,
         limits.added_latency_p95),
    )  # fmt: skip
    for name, mine, theirs, limit in latencies:
        if mine is None or theirs is None:
            continue
        if _beyond(mine, theirs * limit.max_ratio) and _beyond(mine - theirs, limit.slack_seconds):
            broken.append(
                f"{name} {_seconds(mine)} vs stable {_seconds(theirs)} "
                f"(max ratio {limit.max_ratio}, slack {limit.slack_seconds}s)"
            )
    if canary.stream_completion_ratio is not None:
        baseline = 1.0 if stable.stream_completion_ratio is None else stable.stream_completion_ratio
        decrease = baseline - canary.stream_completion_ratio
        if _beyond(decrease, limits.stream_completion_ratio.max_decrease):
            broken.append(
                f"stream completion ratio {_ratio(canary.stream_completion_ratio)} vs stable "
                f"{_ratio(baseline)} (max decrease {limits.stream_completion_ratio.max_decrease})"
            )
    return tuple(broken)


def judge(
    canary: CanaryFigures, stable: CanaryFigures, spec: Canary, *, window_over: bool
) -> Judgement:
    """Pending until the canary served minRequests (at least one); then Failed as soon as a
    threshold is broken, Passed when the window is over and none is. A window that ends with
    fewer than minRequests fails: an unjudged release is not promoted."""
    needed = max(spec.min_requests, 1)
    if canary.requests < needed:
        if window_over and spec.min_requests > 0:
            reason = f"only {canary.requests} requests reached the canary (minRequests {needed})"
            return Judgement(CanaryVerdict.FAILED, (reason,))
        if not window_over:
            return Judgement(CanaryVerdict.PENDING, (f"{canary.requests}/{needed} requests",))
        return Judgement(CanaryVerdict.PASSED)  # minRequests 0: the duration alone decides
    broken = broken_thresholds(canary, stable, spec)
    if broken:
        return Judgement(CanaryVerdict.FAILED, broken)
    return Judgement(CanaryVerdict.PASSED if window_over else CanaryVerdict.PENDING)


def summary(canary: CanaryFigures, stable: CanaryFigures) -> str:
    """The measured figures, for the condition message and the event."""
    return (
        f"requests {canary.requests} canary / {stable.requests} stable; "
        f"error ratio {_ratio(canary.error_ratio)} / {_ratio(stable.error_ratio)}; "
        f"p95 TTFT {_seconds(canary.time_to_first_token_p95)} / "
        f"{_seconds(stable.time_to_first_token_p95)}; "
        f"p95 added latency {_seconds(canary.added_latency_p95)} / "
        f"{_seconds(stable.added_latency_p95)}; "
        f"stream completion {_ratio(canary.stream_completion_ratio)} / "
        f"{_ratio(stable.stream_completion_ratio)}"
    )
