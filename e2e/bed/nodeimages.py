"""The real nodes' images: the pause sandbox image and the images `make images` built.

podman (the store `make images` fills) saves an image once per image ID to a transit
archive, `ctr images import` loads it into each node's containerd, and a label on the
node's image records the ID, so an unchanged image is never imported twice (each node
keeps its containerd root in $LLMFLEET_CACHE across `down`).
"""

from __future__ import annotations

import json
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

    A node's containerd keeps a label with the podman image ID it imported. For the nodes
    that lack it, podman saves the image once to a transit archive; once a node has
    unpacked it, its layer blobs go (only the unpacked snapshots are used): the engine
    image then takes 6 GB per node, not 12. Returns seconds spent per step.
    """
    times: dict[str, float] = {}
    archives = CACHE / "image-archives"
    archives.mkdir(parents=True, exist_ok=True)
    for ref in refs:
        iid = image_id(ref)
        if iid is None:
            log(f"real nodes: image {ref} is not in the local store (run `make images`); not imported")
            continue
        label = f"llmfleet.dev/image-id={iid}"
        lacking = [n for n in REAL_NODES if label not in ctr(state_dir, n, "images", "ls", f"name=={ref}").stdout]
        if not lacking:
            continue
        archive = archives / f"{iid[:16]}.tar"
        for old in archives.glob("*.tar"):  # what a killed run left
            if old != archive:
                old.unlink()
        if not archive.exists():
            t = time.monotonic()
            part = archive.with_suffix(".part")
            done = podman("save", "--format", "docker-archive", "-o", str(part), ref)
            if done.returncode != 0:
                raise RuntimeError(f"podman save {ref} failed: {done.stderr}")
            part.rename(archive)
            times[f"save {ref}"] = time.monotonic() - t
        for node in lacking:
            t = time.monotonic()
            # Unpacked for overlayfs; layers whose snapshot the older version left are not
            # unpacked again, and the name moves to the new image, so the garbage collector
            # frees what only the older version used.
            done = ctr(state_dir, node, "images", "import", str(archive))
            if done.returncode != 0:
                raise RuntimeError(f"ctr import of {ref} into {node.name} failed: {done.stderr}")
            discard_layer_blobs(state_dir, node, ref)
            ctr(state_dir, node, "images", "label", ref, label)
            times[f"import {ref} -> {node.name}"] = time.monotonic() - t
        # The archive is only a transit copy (6 GB for the engine); a later import saves it again.
        archive.unlink(missing_ok=True)
    return times


def discard_layer_blobs(state_dir: Path, node, ref: str) -> None:
    """Drop an unpacked image's compressed/uncompressed layer blobs from a node's content store.

    containerd starts containers from the unpacked snapshots and reads only the manifest
    and config blobs (kept); the layer blobs matter only to unpack or export again, and
    neither happens on a bed node (what `ctr images pull --discard-unpacked-layers` does).
    """
    listed = ctr(state_dir, node, "images", "ls", f"name=={ref}").stdout.splitlines()[1:]
    if not listed:
        return
    digest = listed[0].split()[2]
    manifest = json.loads(ctr(state_dir, node, "content", "get", digest).stdout or "{}")
    for layer in manifest.get("layers", []):
        ctr(state_dir, node, "content", "rm", layer["digest"])
