"""Benchmarks: capacity, overhead and overload of the app, measured against the fake upstream."""
