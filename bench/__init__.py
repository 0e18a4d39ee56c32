"""Benchmarks and the no-account demo (`make bench`, `make demo`). Not imported by the bridge."""
