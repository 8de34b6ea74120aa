# llmfleet — every target installs what it needs first.
PY ?= python3
STAMP := .make/install.stamp
export PIP_DISABLE_PIP_VERSION_CHECK=1

.PHONY: install test unit e2e demo bench crds lint cluster-up cluster-down

install: $(STAMP)

# pip skips what is already installed (torch is a few GB: installed once per machine).
$(STAMP): pyproject.toml
	$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p .make && touch $@

## test: unit and integration tests, then the end-to-end suite on the local control plane
test: install
	$(PY) -m pytest tests -q -p no:cacheprovider
	@if [ -f e2e/Makefile.inc ]; then $(MAKE) --no-print-directory e2e; fi

unit: install
	$(PY) -m pytest tests -q -p no:cacheprovider

demo: install
	$(PY) -m llmfleet.engine.demo

bench: install
	$(PY) -m llmfleet.engine.bench

lint: install
	$(PY) -m ruff check engine operator tests e2e
	$(PY) -m mypy engine operator

-include e2e/Makefile.inc
-include operator/Makefile.inc
-include manifests/Makefile.inc
