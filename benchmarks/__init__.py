"""Benchmark drivers, run from the repository root (`make bench` = `python -m benchmarks.bench`).

Not part of the installed llmfleet packages: they need dev-only packages (transformers, and
llama-cpp-python for the llama.cpp baseline). The operator's benchmark lives with its test bed
in e2e/bench_operator.py.
"""
