# `make test` is the one test command: README.md names it and .ci/run calls it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup tools test unit e2e lint demo demo-hub bench image clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# The harness (harness/) and the tests are not in the wheel: the venv finds them at the repo root.
	$(PY) -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "jupyternetes-dev-tree.pth").write_text(str(pathlib.Path.cwd()) + "\n")'
	touch $@

# Go-built harness binaries (kube-apiserver, kine, kwok, pulumi, provider), cached outside the repo.
tools:
	bash tools/harness/build.sh

lint: setup
	$(PY) -m ruff check jupyternetes harness tests benchmarks stacks tools

unit: setup
	$(PY) -m pytest -q tests/unit

e2e: setup tools
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=30 tests/e2e

test: setup tools lint
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations=30 tests

# The main job: a local cluster, the CRDs and seed template, the operator, the seed instance
# reaching Completed with its PVC and pod. DEMO_ARGS=--keep leaves it running.
demo: setup tools
	$(PY) -m harness.demo $(DEMO_ARGS)

# JupyterHub + configurable-http-proxy spawning through jupyternetes on a local cluster; pods on
# the loopback node run as local processes. DEMO_ARGS=--keep leaves it up with a login URL.
demo-hub: setup tools
	$(PY) -m harness.demo_hub $(DEMO_ARGS)

# Figures, not assertions: each script prints one JSON object (see benchmarks/README.md).
bench: setup tools
	$(PY) benchmarks/latency.py
	$(PY) benchmarks/noop_resync.py
	$(PY) benchmarks/burst.py

# The operator image (Containerfile), with buildah and a Debian root filesystem from mmdebstrap; not
# part of `make test` (a cold build takes several minutes). Writes build/image/*.oci.tar.
IMAGE ?=
image: setup
	bash tools/image/build.sh $(IMAGE)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
