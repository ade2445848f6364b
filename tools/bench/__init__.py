"""Benchmarks (`make bench`): they measure and report, they assert nothing."""
