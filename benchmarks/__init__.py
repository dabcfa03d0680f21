"""Benchmarks: numbers to report, never pass/fail tests. Run with `make bench`."""
