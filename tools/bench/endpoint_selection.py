"""The cost of choosing an endpoint: `pick` + `release` per request, one endpoint against four
(weighted power of two choices), in microseconds. This is all routing adds to a request; the
stream relay is untouched. `make bench` measures the whole gateway over HTTP.

    python -m tools.bench.endpoint_selection
"""

from __future__ import annotations

import timeit

from chatservice.config import ModelRoute, Settings, UpstreamEndpoint
from chatservice.inference.endpoint_pool import EndpointPool

ROUNDS = 200_000


def per_request_us(route: ModelRoute) -> float:
    pool = EndpointPool(route, Settings(models=[route]))

    def one() -> None:
        endpoint = pool.pick(set())
        assert endpoint is not None
        pool.succeeded(endpoint)
        pool.release(endpoint)

    best = min(timeit.repeat(one, number=ROUNDS, repeat=5))
    return best / ROUNDS * 1e6


def main() -> None:
    single = ModelRoute(name="one", backend="openai", base_url="http://127.0.0.1:9100/v1")
    four = ModelRoute(
        name="four",
        backend="openai",
        endpoints=tuple(
            UpstreamEndpoint(base_url=f"http://127.0.0.1:{9100 + i}/v1", weight=1 + i)
            for i in range(4)
        ),
    )
    print(f"endpoint selection, 1 endpoint : {per_request_us(single):.2f} µs per request")
    print(f"endpoint selection, 4 endpoints: {per_request_us(four):.2f} µs per request")


if __name__ == "__main__":
    main()
