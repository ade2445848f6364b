"""The canary's decision as a pure function: pod counters in, figures and a verdict out."""

from __future__ import annotations

from typing import Any

import pytest

from chatservice_operator.identity import Track
from chatservice_operator.resource import Canary, CanaryFigures, CanaryVerdict, PodSample
from chatservice_operator.scrape import ServingPod, parse_exposition
from chatservice_operator.verdict import advance, judge, measure, pod_delta, quantile
from tests.operator.operator_specs import chatservice

SPEC = chatservice(rollout={"canary": {"enabled": True, "minRequests": 100}}).spec.rollout.canary
HEALTHY = CanaryFigures(
    requests=1000,
    error_ratio=0.002,
    time_to_first_token_p95=0.4,
    added_latency_p95=0.0004,
    stream_completion_ratio=0.999,
)


def figures(**changes: Any) -> CanaryFigures:
    return HEALTHY.model_copy(update=changes)


def canary_spec(**changes: Any) -> Canary:
    return chatservice(rollout={"canary": {"enabled": True, **changes}}).spec.rollout.canary


def test_a_canary_as_good_as_the_stable_pods_passes_when_the_window_is_over() -> None:
    assert judge(HEALTHY, HEALTHY, SPEC, window_over=True).verdict == CanaryVerdict.PASSED
    assert judge(HEALTHY, HEALTHY, SPEC, window_over=False).verdict == CanaryVerdict.PENDING


@pytest.mark.parametrize(
    ("canary", "broken"),
    [
        # error ratio: 0.01 more than stable's 0.002 is allowed, 0.0121 is not
        (figures(error_ratio=0.012), None),
        (figures(error_ratio=0.0121), "error ratio 0.012 vs stable 0.002 (max increase 0.01)"),
        # p95 TTFT: up to 1.5 x 0.4 s = 0.6 s
        (figures(time_to_first_token_p95=0.6), None),
        (figures(time_to_first_token_p95=0.61), "p95 time to first token 0.610s vs stable 0.400s"),
        # p95 added latency: up to 2 x 0.4 ms, and a difference within 1 ms never fails
        (figures(added_latency_p95=0.0014), None),
        (figures(added_latency_p95=0.0015), "p95 added latency 0.002s vs stable 0.000s"),
        # stream completion: at most 0.01 below stable's 0.999
        (figures(stream_completion_ratio=0.989), None),
        (figures(stream_completion_ratio=0.988), "stream completion ratio 0.988 vs stable 0.999"),
    ],
)
def test_every_threshold_fails_the_canary_just_past_its_limit(
    canary: CanaryFigures, broken: str | None
) -> None:
    judgement = judge(canary, HEALTHY, SPEC, window_over=False)
    if broken is None:
        assert judgement.verdict == CanaryVerdict.PENDING
    else:
        assert judgement.verdict == CanaryVerdict.FAILED
        (reason,) = judgement.reasons
        assert reason.startswith(broken)


def test_a_latency_slack_keeps_a_tiny_difference_from_failing_however_large_the_ratio() -> None:
    stable = figures(time_to_first_token_p95=0.01)
    within = judge(figures(time_to_first_token_p95=0.06), stable, SPEC, window_over=True)
    assert within.verdict == CanaryVerdict.PASSED  # 6x, but only 50 ms slower
    beyond = judge(figures(time_to_first_token_p95=0.061), stable, SPEC, window_over=True)
    assert beyond.verdict == CanaryVerdict.FAILED


def test_thresholds_come_from_the_spec() -> None:
    strict = canary_spec(thresholds={"errorRatio": {"maxIncrease": 0}})
    worse = figures(error_ratio=0.003)
    assert judge(worse, HEALTHY, strict, window_over=True).verdict == CanaryVerdict.FAILED
    lax = canary_spec(thresholds={"timeToFirstTokenP95": {"maxRatio": 3, "slackSeconds": 0}})
    slow = figures(time_to_first_token_p95=1.2)
    assert judge(slow, HEALTHY, lax, window_over=True).verdict == CanaryVerdict.PASSED


def test_every_broken_threshold_is_reported() -> None:
    bad = figures(error_ratio=0.5, time_to_first_token_p95=5.0, stream_completion_ratio=0.5)
    judgement = judge(bad, HEALTHY, SPEC, window_over=False)
    assert judgement.verdict == CanaryVerdict.FAILED
    assert len(judgement.reasons) == 3


def test_no_verdict_before_min_requests_however_bad_the_canary_looks() -> None:
    bad = figures(requests=99, error_ratio=1.0)
    judgement = judge(bad, HEALTHY, SPEC, window_over=False)
    assert judgement.verdict == CanaryVerdict.PENDING
    assert judgement.reasons == ("99/100 requests",)
    assert (
        judge(figures(requests=100, error_ratio=1.0), HEALTHY, SPEC, window_over=False).verdict
        == CanaryVerdict.FAILED
    )


def test_a_window_that_ends_with_too_few_requests_fails() -> None:
    judgement = judge(figures(requests=99), HEALTHY, SPEC, window_over=True)
    assert judgement.verdict == CanaryVerdict.FAILED
    assert judgement.reasons == ("only 99 requests reached the canary (minRequests 100)",)


def test_min_requests_zero_lets_the_duration_alone_decide() -> None:
    spec = canary_spec(minRequests=0)
    idle = CanaryFigures()
    assert judge(idle, HEALTHY, spec, window_over=False).verdict == CanaryVerdict.PENDING
    assert judge(idle, HEALTHY, spec, window_over=True).verdict == CanaryVerdict.PASSED
    # ... but what it did serve is still judged.
    failing = figures(requests=3, error_ratio=1.0)
    assert judge(failing, HEALTHY, spec, window_over=True).verdict == CanaryVerdict.FAILED


def test_without_stable_traffic_ratios_compare_with_a_perfect_baseline() -> None:
    idle = CanaryFigures()
    assert judge(HEALTHY, idle, SPEC, window_over=True).verdict == CanaryVerdict.PASSED
    erring = figures(error_ratio=0.02)
    assert judge(erring, idle, SPEC, window_over=True).verdict == CanaryVerdict.FAILED
    cut = figures(stream_completion_ratio=0.98)
    assert judge(cut, idle, SPEC, window_over=True).verdict == CanaryVerdict.FAILED


BUCKETS = ("0.1", "0.25", "0.5", "1.0", "+Inf")


def cumulative(*counts: float) -> dict[str, float]:
    return dict(zip(BUCKETS, counts, strict=True))


def test_quantile_interpolates_within_a_bucket_as_prometheus_does() -> None:
    # 100 observations: 50 <= 0.1, 90 <= 0.25, 100 <= 0.5; rank 95 lies halfway in (0.25, 0.5].
    assert quantile(0.95, cumulative(50, 90, 100, 100, 100)) == pytest.approx(0.375)
    assert quantile(0.5, cumulative(100, 100, 100, 100, 100)) == pytest.approx(0.05)
    # Beyond the highest finite bucket, its bound is all that is known.
    assert quantile(0.95, cumulative(0, 0, 0, 0, 10)) == 1.0
    assert quantile(0.95, cumulative(0, 0, 0, 0, 0)) is None
    assert quantile(0.95, {}) is None


def sample(pod: str, track: Track = Track.CANARY, **fields: Any) -> PodSample:
    return PodSample(pod=pod, track=track, **fields)


def test_deltas_start_at_the_window_and_a_restarted_pod_counts_from_zero() -> None:
    then = sample("a", requests=100, errors=5, time_to_first_token=cumulative(1, 2, 3, 4, 5))
    now = sample("a", requests=150, errors=6, time_to_first_token=cumulative(2, 4, 6, 8, 10))
    assert pod_delta(now, then) == sample(
        "a", requests=50, errors=1, time_to_first_token=cumulative(1, 2, 3, 4, 5)
    )
    restarted = sample("a", requests=20, errors=0)
    assert pod_delta(restarted, then) == restarted
    assert pod_delta(now, None) == now


def test_measure_keeps_the_tracks_apart_and_adds_up_their_pods() -> None:
    baseline = [
        sample("stable-1", Track.STABLE, requests=1000, errors=10),
        sample("stable-2", Track.STABLE, requests=500, errors=0),
        sample("canary-1", requests=3),
    ]
    now = [
        sample("stable-1", Track.STABLE, requests=1100, errors=10, streams=10, completed_streams=9),
        sample("stable-2", Track.STABLE, requests=600, errors=2, streams=10, completed_streams=10),
        sample("canary-1", requests=103, errors=10, streams=20, completed_streams=15),
        sample("stable-3", Track.STABLE, requests=100, errors=0),  # started during the window
    ]
    window, _ = advance((), baseline, now)
    measured = measure(window)
    assert measured[Track.STABLE] == CanaryFigures(
        requests=300, error_ratio=2 / 300, stream_completion_ratio=19 / 20
    )
    assert measured[Track.CANARY] == CanaryFigures(
        requests=100, error_ratio=0.1, stream_completion_ratio=0.75
    )


def test_what_a_pod_did_before_it_restarted_or_went_stays_counted() -> None:
    start = [sample("canary-1", requests=0), sample("stable-1", Track.STABLE, requests=1000)]
    first = [
        sample("canary-1", requests=50, errors=10),
        sample("stable-1", Track.STABLE, requests=1050),
    ]
    window, readings = advance((), start, first)
    # The canary pod crashed and came back (its counters start again); the stable pod was
    # replaced by another one; a second canary pod could not be read this time.
    second = [
        sample("canary-1", requests=5, errors=1),
        sample("stable-2", Track.STABLE, requests=30),
    ]
    window, readings = advance(window, readings, second)
    measured = measure(window)
    assert measured[Track.CANARY] == CanaryFigures(requests=55, error_ratio=11 / 55)
    assert measured[Track.STABLE] == CanaryFigures(requests=80, error_ratio=0)
    # Read again unchanged, nothing is counted twice; the pod that went keeps its last reading.
    again, readings = advance(window, readings, second)
    assert measure(again) == measured
    assert {reading.pod for reading in readings} == {"canary-1", "stable-1", "stable-2"}


EXPOSITION = """\
# TYPE chatservice_chat_completions_total counter
chatservice_chat_completions_total{model="llama",outcome="success",stream="true"} 90.0
chatservice_chat_completions_total{model="llama",outcome="upstream_error",stream="true"} 6.0
chatservice_chat_completions_total{model="llama",outcome="cancelled",stream="true"} 4.0
chatservice_chat_completions_total{model="echo",outcome="success",stream="false"} 40.0
chatservice_chat_completions_total{model="-",outcome="unauthenticated",stream="-"} 10.0
chatservice_chat_completions_total{model="echo",outcome="timeout",stream="false"} 2.0
# TYPE chatservice_time_to_first_token_seconds histogram
chatservice_time_to_first_token_seconds_bucket{le="0.1",model="llama"} 50.0
chatservice_time_to_first_token_seconds_bucket{le="+Inf",model="llama"} 96.0
chatservice_time_to_first_token_seconds_bucket{le="0.1",model="echo"} 4.0
chatservice_time_to_first_token_seconds_bucket{le="+Inf",model="echo"} 4.0
chatservice_time_to_first_token_seconds_count{model="llama"} 96.0
chatservice_time_to_first_token_seconds_sum{model="llama"} 20.0
# TYPE chatservice_gateway_overhead_seconds histogram
chatservice_gateway_overhead_seconds_bucket{le="0.001",model="llama"} 130.0
chatservice_gateway_overhead_seconds_bucket{le="+Inf",model="llama"} 142.0
# TYPE chatservice_http_requests_total counter
chatservice_http_requests_total{method="POST",route="/api/v1/models",status_class="5xx"} 8.0
"""


def test_a_pods_exposition_becomes_one_sample_summed_over_models() -> None:
    pod = ServingPod("chat-canary-1", Track.CANARY, "10.0.0.1", 8000)
    assert parse_exposition(pod, EXPOSITION) == PodSample(
        pod="chat-canary-1",
        track="canary",
        requests=152,
        errors=8,  # upstream_error and timeout; unauthenticated is the client's
        streams=96,  # a cancelled stream says nothing about the release
        completed_streams=90,
        time_to_first_token={"0.1": 54, "+Inf": 100},
        added_latency={"0.001": 130, "+Inf": 142},
    )
