"""crds/ and docs/crd-reference.md are exactly what `make crds` writes from the models."""

from __future__ import annotations

import difflib
from pathlib import Path

from llmfleet.operator.api.crd import generated_files

ROOT = Path(__file__).resolve().parents[2]


def test_generated_files_match_the_checked_in_ones():
    stale = []
    for rel, expected in generated_files().items():
        path = ROOT / rel
        actual = path.read_text() if path.exists() else ""
        if actual != expected:
            diff = difflib.unified_diff(actual.splitlines(), expected.splitlines(), rel, "generated", lineterm="", n=2)
            stale.append("\n".join(list(diff)[:40]))
    assert not stale, "run `make crds`; drifted:\n" + "\n\n".join(stale)


def test_no_crd_file_without_a_model():
    expected = {rel for rel in generated_files() if rel.startswith("crds/")}
    on_disk = {f"crds/{p.name}" for p in (ROOT / "crds").glob("*.yaml")}
    assert on_disk - expected == set(), "remove CRDs whose model is gone (or run `make crds`)"


def test_the_reference_lives_in_docs_and_the_readme_links_to_it():
    reference = (ROOT / "docs" / "crd-reference.md").read_text()
    assert "## LLMService" in reference and "`autoscalePolicyRef`" in reference
    readme = (ROOT / "README.md").read_text()
    assert "docs/crd-reference.md" in readme
    assert "`autoscalePolicyRef` |" not in readme, "the generated tables belong in docs/crd-reference.md only"
