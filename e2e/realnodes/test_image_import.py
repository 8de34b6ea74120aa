"""Images into a node that already has their lower layers (e2e/bed/nodeimages.py), while
containerd's garbage collector runs.

A node is sent only the layers it has not unpacked. Those snapshots belong to the image the
import replaces, and `ctr images import` moves the tag off that image before it unpacks the
new one: a collection in between (the import's own lease ending starts one) removed them once,
and the unpack then needed a layer that was never sent (`content digest ... not found`).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import nodeimages
import pytest
import realnodes
from bedkit import E2ECluster


def build(context: Path, containerfile: str, files: dict[str, bytes], tag: str) -> str:
    context.mkdir()
    for name, data in files.items():
        (context / name).write_bytes(data)
    (context / "Containerfile").write_text(containerfile)
    done = nodeimages.podman("build", "--pull=never", "-q", "-t", tag, "-f", str(context / "Containerfile"),
                             str(context), timeout=300)
    assert done.returncode == 0, done.stderr
    return tag


def diff_ids(ref: str) -> list[str]:
    return json.loads(nodeimages.podman("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]


@pytest.fixture
def images(tmp_path: Path):
    """A base layer no other image has, and two images on it that differ in their top layer."""
    repo = f"localhost/llmfleet-bed-import-test-{uuid.uuid4().hex[:8]}"
    base, old, new = f"{repo}:base", f"{repo}:old", f"{repo}:new"
    try:
        build(tmp_path / "base", "FROM scratch\nCOPY base /base\n", {"base": os.urandom(1 << 20)}, base)
        build(tmp_path / "old", f"FROM {base}\nCOPY top /top\n", {"top": b"old"}, old)
        build(tmp_path / "new", f"FROM {base}\nCOPY top /top\n", {"top": b"new"}, new)
        yield repo, old, new
    finally:
        nodeimages.podman("rmi", "-f", base, old, new, f"{repo}:latest")


def test_an_import_that_skips_unpacked_layers_survives_a_collection_of_the_replaced_image(
    cluster: E2ECluster, images: tuple[str, str, str]
) -> None:
    repo, old, new = images
    node, ref = realnodes.REAL_NODES[-1], f"{repo}:latest"
    state = cluster.dir
    try:
        # Given the node runs the old image under the tag...
        assert nodeimages.podman("tag", old, ref).returncode == 0
        nodeimages.stream_import(state, ref, diff_ids(ref), {node.name: set()})
        old_id_name = nodeimages.image_id(old)
        # ...and the tag now names the new image, whose base layer the node has unpacked.
        assert nodeimages.podman("tag", new, ref).returncode == 0
        layers = diff_ids(ref)
        skip = nodeimages.skipped_layers(layers, nodeimages.unpacked(state, node))
        assert skip == {layers[0]}

        with nodeimages.kept_snapshots(state, [node], layers, {node.name: skip}) as kept:
            assert kept == {node.name: skip}
            # When nothing refers to the old image any more and containerd collects garbage
            # (what happens inside `ctr images import` between moving the tag and unpacking)...
            for name in (ref, f"sha256:{old_id_name}"):
                realnodes.ctr(state, node, "images", "rm", "--sync", name)
            # ...the import that skips the base layer still unpacks.
            sent = nodeimages.stream_import(state, ref, layers, kept)

        # Then only the top layer was sent, the image is unpacked, and the label is gone again
        # (the new image's own references keep the base snapshot from now on).
        assert sent[node.name] < 1 << 16
        chains = nodeimages.chain_ids(layers)
        assert chains[-1] in nodeimages.unpacked(state, node)
        info = realnodes.ctr(state, node, "snapshots", "info", chains[0])
        assert info.returncode == 0, info.stderr
        assert nodeimages.GC_ROOT not in json.loads(info.stdout).get("Labels", {})
    finally:
        for line in realnodes.ctr(state, node, "images", "ls", "-q").stdout.split():
            if line == ref or line.startswith(repo):
                realnodes.ctr(state, node, "images", "rm", "--sync", line)
        for iid in (nodeimages.image_id(old), nodeimages.image_id(new)):
            if iid:
                realnodes.ctr(state, node, "images", "rm", "--sync", f"sha256:{iid}")
