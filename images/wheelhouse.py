"""Repacks the distributions an image needs, as installed on this machine, into wheels.

    python3 images/wheelhouse.py DIR EXTRA [EXTRA...]

The engine image installs torch's CUDA build (about 5 GB with its nvidia-* and triton
wheels). Where the machine already has them installed (the bed's machines, CI after
`make install`), downloading them again for every fresh image store is waste: this writes
each installed distribution of the requirement closure back into a wheel (the files its
RECORD lists, with its own WHEEL tags, stored uncompressed), and `make images` mounts DIR
into the build, where pip installs from it with --no-index. Wheels already in DIR are kept.
Without a wheelhouse the Containerfiles install from PyPI as anyone else's build would.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

sys.path.insert(0, str(Path(__file__).resolve().parent))
from requirements import requirements_for  # noqa: E402

SKIP = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(reqs: list[str]) -> list[metadata.Distribution]:
    """Every installed distribution the requirements pull in, transitively."""
    env = default_environment()
    todo = [(Requirement(r), "") for r in reqs]
    seen: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({**env, "extra": extra}):
            continue
        key = canonical(req.name)
        for ex in [""] + sorted(req.extras):
            if (key, ex) in done:
                continue
            done.add((key, ex))
            try:
                dist = seen.setdefault(key, metadata.distribution(req.name))
            except metadata.PackageNotFoundError:
                raise SystemExit(f"wheelhouse: {req.name} is not installed here") from None
            todo += [(Requirement(r), ex) for r in dist.requires or []]
    return list(seen.values())


def wheel_name(dist: metadata.Distribution) -> str:
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    if not tags:
        raise SystemExit(f"wheelhouse: {dist.metadata['Name']} has no WHEEL tags (not installed from a wheel)")
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    tag = "-".join(".".join(p) for p in parts)
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    return f"{name}-{dist.version}-{tag}.whl"


def repack(dist: metadata.Distribution, out: Path) -> None:
    site = Path(dist.locate_file(""))
    rows = list(csv.reader(io.StringIO(dist.read_text("RECORD") or "")))
    info = next(Path(r[0]).parts[0] for r in rows if r and r[0].endswith(".dist-info/METADATA"))
    record = []
    tmp = out.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for row in rows:
            path = row[0] if row else ""
            parts = Path(path).parts
            # Scripts and data live outside site-packages: pip writes console scripts anew.
            if not path or parts[0] == ".." or "__pycache__" in parts:
                continue
            if parts[0] == info and parts[-1] in SKIP:
                continue
            file = site / path
            if not file.is_file():
                continue
            z.write(file, path)
            digest = row[1] if len(row) > 1 and row[1] else None
            if digest is None:
                raw = hashlib.sha256(file.read_bytes()).digest()
                digest = "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            record.append((path, digest, str(file.stat().st_size)))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerows(record)
        w.writerow((f"{info}/RECORD", "", ""))
        z.writestr(f"{info}/RECORD", buf.getvalue())
    tmp.rename(out)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    out, extras = Path(argv[1]), argv[2:]
    out.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parent.parent
    with open(root / "pyproject.toml", "rb") as f:
        reqs = requirements_for(tomllib.load(f), extras)
    made = kept = 0
    for dist in sorted(closure(reqs), key=lambda d: canonical(d.metadata["Name"])):
        target = out / wheel_name(dist)
        if target.exists():
            kept += 1
            continue
        repack(dist, target)
        made += 1
    print(f"wheelhouse: {out}: {made} wheels written, {kept} kept ({' '.join(extras)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
