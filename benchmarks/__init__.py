"""Benchmark scripts (``python -m dreamlab.benchmarks.<name>``) and their results (``benchmarks/results/``)."""
