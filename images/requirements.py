"""Prints the requirement lines one image installs: pyproject's dependencies plus extras.

    python3 images/requirements.py pyproject.toml EXTRA [EXTRA...]
    (the engine image: engine; the operator image: operator router)

Runs inside the image build (only the standard library), so the dependency layer's cache
key is pyproject.toml alone: a code change never reinstalls torch.
"""

from __future__ import annotations

import sys
import tomllib

#: Used while pyproject.toml has no such extra yet: what each component imports (the
#: operator image also runs llmfleet-router).
FALLBACK = {
    "operator": [
        "uvicorn>=0.29",
        "pydantic>=2.7",
        "httpx>=0.27",
        "prometheus-client>=0.20",
        "pyyaml>=6.0",
        "kopf>=1.37",
        "kubernetes>=29.0",
        "tzdata>=2024.1",
    ],
}


def requirements(pyproject: dict, extra: str) -> list[str]:
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    if extra in extras:
        return list(project.get("dependencies", [])) + list(extras[extra])
    if extra in FALLBACK:
        return list(FALLBACK[extra])
    if extra == "engine":  # the engine needs everything the undivided dependency list has
        return list(project.get("dependencies", []))
    raise SystemExit(f"requirements.py: no extra {extra!r} in pyproject.toml (have: {sorted(extras)})")


def requirements_for(pyproject: dict, extras: list[str]) -> list[str]:
    """Several extras, each requirement once (first spelling kept)."""
    out: list[str] = []
    for extra in extras:
        out += [r for r in requirements(pyproject, extra) if r not in out]
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    with open(argv[1], "rb") as f:
        print("\n".join(requirements_for(tomllib.load(f), argv[2:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
