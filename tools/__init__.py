"""Developer scripts that are not tests: generators, benchmarks, the kind deployment."""
