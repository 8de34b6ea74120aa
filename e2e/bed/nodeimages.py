"""The real nodes' images: the pause sandbox image and the images `make images` built.

podman (the store `make images` fills) saves an image once per image ID to a transit
archive, `ctr images import` loads it into each node's containerd, and a label on the
node's image records the ID, so an unchanged image is never imported twice (each node
keeps its containerd root in $LLMFLEET_CACHE across `down`).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from controlplane import CACHE
from realnodes import REAL_NODES, ctr, node_binaries, pause_image


def podman(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(Path(__file__).resolve().parents[2] / "images" / "containers.conf"),
    }
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)


def ensure_pause_image() -> str:
    """The sandbox image in podman's store (made from the pause binary: a one-file image)."""
    ref = pause_image()
    if podman("image", "exists", ref).returncode == 0:
        return ref
    with tempfile.TemporaryDirectory() as tmp:
        tar_path = Path(tmp) / "pause.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(node_binaries()["pause"], arcname="pause")
        done = podman("import", "--change", 'ENTRYPOINT ["/pause"]', str(tar_path), ref)
        if done.returncode != 0:
            raise RuntimeError(f"podman import of the pause image failed: {done.stderr}")
    return ref


def image_id(ref: str) -> str | None:
    done = podman("image", "inspect", "--format", "{{.Id}}", ref)
    return done.stdout.strip() if done.returncode == 0 else None


def import_images(state_dir: Path, refs: list[str], log=print) -> dict[str, float]:
    """Each image into each node's containerd, unless that node has this very image already.

    podman saves an image once per image ID into $LLMFLEET_CACHE/image-archives; a node's
    containerd keeps a label with the ID it imported. Returns seconds spent per step.
    """
    times: dict[str, float] = {}
    archives = CACHE / "image-archives"
    archives.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        iid = image_id(ref)
        if iid is None:
            log(f"real nodes: image {ref} is not in the local store (run `make images`); not imported")
            continue
        archive = archives / f"{iid[:16]}.tar"
        if not archive.exists():
            t = time.monotonic()
            part = archive.with_suffix(".part")
            done = podman("save", "--format", "docker-archive", "-o", str(part), ref)
            if done.returncode != 0:
                raise RuntimeError(f"podman save {ref} failed: {done.stderr}")
            part.rename(archive)
            for old in archives.glob("*.tar"):  # one archive per image name is enough
                if old != archive and _archive_ref(old) == ref:
                    old.unlink()
                    old.with_suffix(".ref").unlink(missing_ok=True)
            times[f"save {ref}"] = time.monotonic() - t
        archive.with_suffix(".ref").write_text(ref)
        for node in REAL_NODES:
            listed = ctr(state_dir, node, "images", "ls", f"name=={ref}").stdout
            if f"llmfleet.dev/image-id={iid}" in listed:
                continue
            t = time.monotonic()
            done = ctr(state_dir, node, "images", "import", str(archive))  # unpacked for overlayfs
            if done.returncode != 0:
                raise RuntimeError(f"ctr import of {ref} into {node.name} failed: {done.stderr}")
            ctr(state_dir, node, "images", "label", ref, f"llmfleet.dev/image-id={iid}")
            times[f"import {ref} -> {node.name}"] = time.monotonic() - t
        # Every node has it now (and keeps it in its containerd root): the archive is only a
        # transit copy, 6 GB for the engine; a later import saves it again.
        archive.unlink(missing_ok=True)
        archive.with_suffix(".ref").unlink(missing_ok=True)
    return times


def _archive_ref(archive: Path) -> str | None:
    ref_file = archive.with_suffix(".ref")
    return ref_file.read_text() if ref_file.exists() else None
