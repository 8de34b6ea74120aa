"""Development helpers that are not part of the installed llmfleet packages.

Small checkpoints for tests and benchmarks (`tinymodel`), the demo's trained model
(`demo_model`) and the engine-only demo (`demo_engine`). They import dev-only packages
(transformers) and are run from the repository root: `python -m tools.tinymodel OUT_DIR`.
"""
