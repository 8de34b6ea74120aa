"""The real nodes' images: the pause sandbox image and the images `make images` built.

`podman save` streams an image (docker-archive) once; this module rewrites the stream on
the fly into an OCI layout per node and pipes it into that node's `ctr images import -`,
leaving out every layer the node has already unpacked (its snapshot, named by the layer's
chain ID, exists): after a code change only the changed top layers are written into a
node, and nothing of the 6 GB engine image is written to a transit file. A label on the
node's image records the podman image ID, so an unchanged image is not streamed at all
(each node keeps its containerd root in $LLMFLEET_CACHE across `down`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from controlplane import CACHE
from realnodes import REAL_NODES, containerd_root, ctr, node_binaries, pause_image


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


#: Disk the imports always leave free (a full disk broke a bed once).
DISK_MARGIN = 4 << 30


def import_images(state_dir: Path, refs: list[str], log=print) -> dict[str, float]:
    """Each image into each node's containerd, unless that node has this very image already.

    Nodes are fed together from one `podman save` when the disk holds what they all write
    (each writes a layer twice until its blobs are dropped: the blob, then the snapshot),
    else in turns; an import that would leave less than DISK_MARGIN free is refused.
    Returns seconds per step, naming the layer bytes sent.
    """
    times: dict[str, float] = {}
    current = {i for i in map(image_id, refs) if i}
    for node in REAL_NODES:  # first, so what a node no longer needs makes room
        drop_replaced(state_dir, node, current)
    for ref in refs:
        iid = image_id(ref)
        if iid is None:
            log(f"real nodes: image {ref} is not in the local store (run `make images`); not imported")
            continue
        label = f"llmfleet.dev/image-id={iid}"
        lacking = [
            n for n in REAL_NODES if label not in ctr(state_dir, n, "images", "ls", f"name=={ref}").stdout
        ]
        if not lacking:
            continue
        diff_ids: list[str] = json.loads(podman("image", "inspect", ref).stdout)[0]["RootFS"]["Layers"]
        sizes = layer_sizes()
        skips = {n.name: skipped_layers(diff_ids, unpacked(state_dir, n)) for n in lacking}
        needs = {name: 2 * sum(sizes[d] for d in diff_ids if d not in skip) for name, skip in skips.items()}
        done = 0
        while done < len(lacking):
            free = free_space(containerd_root(lacking[done]), needs[lacking[done].name], DISK_MARGIN)
            batch = import_batch([needs[n.name] for n in lacking[done:]], free, DISK_MARGIN)
            nodes = lacking[done : done + batch]
            t = time.monotonic()
            with kept_snapshots(state_dir, nodes, diff_ids, skips) as kept:
                sent = stream_import(state_dir, ref, diff_ids, kept)
            for node in nodes:
                discard_layer_blobs(state_dir, node, ref)
                ctr(state_dir, node, "images", "label", ref, label)
            mib = sum(sent.values()) / 2**20
            names = ", ".join(n.name for n in nodes)
            times[f"import {ref} -> {names} ({mib:.0f} MiB of layers sent)"] = time.monotonic() - t
            done += batch
    for node in REAL_NODES:  # the images whose tag moved to a new one here
        drop_replaced(state_dir, node, current)
    return times


def free_space(path: Path, need: int, margin: int, wait: float = 60.0) -> int:
    """Free bytes at path, waiting up to `wait` s for them to reach need + margin (containerd's
    garbage collector frees dropped blobs and snapshots in the background)."""
    deadline = time.monotonic() + wait
    while True:
        free = shutil.disk_usage(path).free
        if free - margin >= need or time.monotonic() > deadline:
            return free
        time.sleep(2)


def drop_replaced(state_dir: Path, node, current_ids: set[str]) -> None:
    """Forget the images a rebuild replaced, so containerd's garbage collector frees their layers.

    The CRI plugin keeps a second name for every image, its ID (`sha256:<config digest>`,
    the podman image ID); the tag moves to the new image, the ID name of the old one stays
    and would hold its 6 GB of snapshots for ever. Only such ID names of images no longer
    current are removed."""
    for line in ctr(state_dir, node, "images", "ls", "-q").stdout.split():
        if ID_NAME.fullmatch(line) and line.removeprefix("sha256:") not in current_ids:
            ctr(state_dir, node, "images", "rm", "--sync", line)


def import_batch(needs: list[int], free: int, margin: int) -> int:
    """How many of the next nodes (bytes each will write, in order) one stream may feed at once."""
    if needs[0] > free - margin:
        raise RuntimeError(
            f"importing an image needs {needs[0] / 2**30:.1f} GiB on the disk of the nodes' containerd roots "
            f"({CACHE / 'containerd'}); {free / 2**30:.1f} GiB are free and {margin / 2**30:.0f} GiB must stay "
            "free: free some space (`podman image prune` drops old image chains)"
        )
    count, total = 0, 0
    for need in needs:
        if total + need > free - margin:
            break
        count, total = count + 1, total + need
    return count


def layer_sizes() -> dict[str, int]:
    """Each layer's uncompressed size in podman's store (diff ID -> bytes)."""
    root = podman("info", "--format", "{{.Store.GraphRoot}}").stdout.strip()
    layers = json.loads((Path(root) / "overlay-layers" / "layers.json").read_text())
    return {layer["diff-digest"]: layer["diff-size"] for layer in layers if "diff-digest" in layer}


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The chain ID of each layer (the OCI image spec's definition): what containerd names the
    snapshot of a layer unpacked on top of the ones below it."""
    out: list[str] = []
    for diff_id in diff_ids:
        out.append(
            diff_id if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
        )
    return out


def unpacked(state_dir: Path, node) -> set[str]:
    """The committed snapshots (chain IDs) a node's containerd holds."""
    lines = ctr(state_dir, node, "snapshots", "ls", timeout=60).stdout.splitlines()[1:]
    return {line.split()[0] for line in lines if line.split() and line.split()[-1] == "Committed"}


def skipped_layers(diff_ids: list[str], have: set[str]) -> set[str]:
    """The layers (diff IDs) a node need not be sent: its snapshot and all below it exist."""
    skip: set[str] = set()
    for diff_id, chain in zip(diff_ids, chain_ids(diff_ids), strict=True):
        if chain not in have:
            break
        skip.add(diff_id)
    return skip


#: A snapshot (or content) with this label is a root for containerd's garbage collector.
GC_ROOT = "containerd.io/gc.root"


def top_skipped_chain(diff_ids: list[str], skip: set[str]) -> str | None:
    """The snapshot (chain ID) of the highest skipped layer: it references every snapshot below it,
    so keeping it keeps all a skipping import relies on. None when nothing is skipped."""
    kept = [c for d, c in zip(diff_ids, chain_ids(diff_ids), strict=True) if d in skip]
    return kept[-1] if kept else None


@contextlib.contextmanager
def kept_snapshots(
    state_dir: Path, nodes: list, diff_ids: list[str], skips: dict[str, set[str]]
) -> Iterator[dict[str, set[str]]]:
    """Keep the snapshots each node's import skips from containerd's garbage collector until the
    import has unpacked: yields the skips that hold (a node whose snapshot is already gone gets
    every layer).

    Only the image the new one replaces refers to those snapshots, and `ctr images import` moves
    the tag to the new image before it unpacks; the import's own lease ends in between, which
    starts a collection. That collection removed the shared snapshots while nothing referred to
    them, and the unpack then needed the blob of a layer that was never sent (`content digest
    ... not found`). A `containerd.io/gc.root` label on the top skipped snapshot (its parents
    are referenced by it) makes it a root for exactly as long as the import runs.
    """
    pinned: list[tuple] = []
    kept: dict[str, set[str]] = {}
    try:
        for node in nodes:
            top = top_skipped_chain(diff_ids, skips[node.name])
            if top is None:
                kept[node.name] = set()
                continue
            done = ctr(state_dir, node, "snapshots", "label", top, f"{GC_ROOT}=llmfleet-bed-import")
            if done.returncode == 0:
                pinned.append((node, top))
                kept[node.name] = skips[node.name]
            else:  # collected since it was listed: nothing below it can be relied on either
                kept[node.name] = set()
        yield kept
    finally:
        for node, top in pinned:
            ctr(state_dir, node, "snapshots", "label", top, f"{GC_ROOT}=")


def tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def tar_padding(size: int) -> bytes:
    return b"\0" * ((512 - size % 512) % 512)


class OCIStream:
    """An OCI image layout written as a tar stream into one `ctr images import -`."""

    def __init__(self, state_dir: Path, node, ref: str, skip: set[str]) -> None:
        from realnodes import containerd_socket  # noqa: PLC0415

        repo, tag = ref.rsplit(":", 1)
        self.ref, self.tag, self.skip, self.sent = ref, tag, skip, 0
        self.errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [
                str(node_binaries()["ctr"]),
                "--address",
                str(containerd_socket(state_dir, node)),
                "--namespace",
                "k8s.io",
                "images",
                "import",
                "--base-name",
                repo,
                "-",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=self.errors,
        )
        self.out: IO[bytes] = self.proc.stdin  # type: ignore[assignment]

    def blob(self, data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.out.write(tar_header(f"blobs/sha256/{digest[7:]}", len(data)) + data + tar_padding(len(data)))
        return {"digest": digest, "size": len(data)}

    def finish(self, config: bytes, layers: list[tuple[str, int]]) -> None:
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **self.blob(config)},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}
                for d, n in layers
            ],
        }
        desc = self.blob(json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **desc,
                    "annotations": {"org.opencontainers.image.ref.name": self.tag},
                }
            ],
        }
        for name, data in (
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            ("index.json", json.dumps(index).encode()),
        ):
            self.out.write(tar_header(name, len(data)) + data + tar_padding(len(data)))
        self.out.write(b"\0" * 1024)

    def close(self) -> str | None:
        """None when the import succeeded, else what ctr said."""
        try:
            self.out.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=900)
        self.errors.seek(0)
        err = self.errors.read().decode(errors="replace")
        self.errors.close()
        return None if self.proc.returncode == 0 else err or f"exit status {self.proc.returncode}"


#: The name the CRI plugin gives an image by its ID.
ID_NAME = re.compile(r"sha256:[0-9a-f]{64}")
#: How podman's docker-archive names a layer: its diff ID.
LAYER_FILE = re.compile(r"[0-9a-f]{64}\.tar")


def stream_import(
    state_dir: Path, ref: str, diff_ids: list[str], skips: dict[str, set[str]]
) -> dict[str, int]:
    """`podman save` once, each layer into the nodes (by name) that do not skip it; returns the
    layer bytes sent to each."""
    nodes = [n for n in REAL_NODES if n.name in skips]
    streams = [OCIStream(state_dir, n, ref, skips[n.name]) for n in nodes]
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(Path(__file__).resolve().parents[2] / "images" / "containers.conf"),
    }
    save = subprocess.Popen(
        ["podman", "save", "--format", "docker-archive", ref],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    sizes: dict[str, int] = {}  # layer file in the archive -> its size
    digests: dict[str, str] = {}  # layer file -> its diff ID (sha256 of the uncompressed tar)
    files: dict[str, bytes] = {}
    links: dict[str, str] = {}  # the legacy <id>/layer.tar entries point at the layers
    try:
        with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
            for member in archive:
                if member.issym():
                    links[member.name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(member.name), member.linkname)
                    )
                if not member.isfile():
                    continue
                src = archive.extractfile(member)
                assert src is not None
                if not LAYER_FILE.fullmatch(member.name):
                    files[member.name] = src.read()  # manifest.json, the config, small legacy files
                    continue
                # A layer: its diff ID is the hash of its bytes (podman names it by that hash too).
                named = "sha256:" + member.name.removesuffix(".tar")
                takers = [st for st in streams if named not in st.skip]
                header = tar_header(f"blobs/sha256/{named[7:]}", member.size)
                for st in takers:
                    st.out.write(header)
                h = hashlib.sha256()
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    for st in takers:
                        st.out.write(chunk)
                for st in takers:
                    st.out.write(tar_padding(member.size))
                    st.sent += member.size
                digest = "sha256:" + h.hexdigest()
                if digest != named:
                    raise RuntimeError(f"layer {member.name} of {ref} hashes to {digest}, not its name")
                sizes[member.name], digests[member.name] = member.size, digest
        if save.wait(timeout=900) != 0:
            raise RuntimeError(f"podman save {ref} failed: {save.stderr.read().decode(errors='replace')}")
        (entry,) = json.loads(files["manifest.json"])
        layers = [(digests[links.get(f, f)], sizes[links.get(f, f)]) for f in entry["Layers"]]
        if [d for d, _ in layers] != diff_ids:
            raise RuntimeError(f"podman save {ref}: layers {layers} are not the image's {diff_ids}")
        for st in streams:
            st.finish(files[entry["Config"]], layers)
    finally:
        if save.poll() is None:
            save.kill()
        errors = {node.name: st.close() for node, st in zip(nodes, streams, strict=True)}
    failed = {n: e for n, e in errors.items() if e}
    if failed:
        raise RuntimeError(f"ctr import of {ref} failed: {failed}")
    return {node.name: st.sent for node, st in zip(nodes, streams, strict=True)}


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
