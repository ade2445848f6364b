# ChatService developer commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PIP := $(PY) -m pip --disable-pip-version-check
UV := $(BIN)/uv
# Two stamps: `make run` needs only the runtime dependencies; tests, lint and type checks need
# the dev install (which also satisfies the runtime stamp).
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed
# checkov pins libraries the project's own environment does not share: a virtualenv of its own.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_REQUIREMENTS := tests/chart/checkov-requirements.txt
# The embedded default database for `make run`: a SQLite file under var/ (git-ignored).
RUN_DIR := var
export CHATSERVICE_DATABASE_URL ?= sqlite+aiosqlite:///$(CURDIR)/$(RUN_DIR)/chatservice.db

IMAGE_REPO ?= chatservice
IMAGE_TAG ?= dev
KIND_CLUSTER ?= chatservice

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# uv installs: several times faster than pip on a fresh machine. pip only bootstraps it.
$(UV):
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet 'uv>=0.5'

$(RUNTIME_STAMP): pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(PY) -e .
	touch $@

$(STAMP): pyproject.toml | $(UV)
	$(UV) pip install --quiet --python $(PY) -e '.[dev]'
	touch $@ $(RUNTIME_STAMP)

$(CHECKOV_STAMP): $(CHECKOV_REQUIREMENTS) | $(UV)
	test -x $(CHECKOV_VENV)/bin/python || python3 -m venv --without-pip $(CHECKOV_VENV)
	$(UV) pip install --quiet --python $(CHECKOV_VENV)/bin/python -r $<
	touch $@

.PHONY: install
install: $(STAMP) $(CHECKOV_STAMP) ## Create .venv (project, test and dev tools) and .venv-checkov

.PHONY: run
run: $(RUNTIME_STAMP) ## Run the service on 127.0.0.1:8000 (gunicorn, echo backend, embedded SQLite)
	mkdir -p $(RUN_DIR)
	$(BIN)/chatservice migrate
	$(BIN)/chatservice run

.PHONY: migrate
migrate: $(RUNTIME_STAMP) ## Apply the database migrations to CHATSERVICE_DATABASE_URL
	mkdir -p $(RUN_DIR)
	$(BIN)/chatservice migrate

.PHONY: create-key
create-key: $(RUNTIME_STAMP) ## Store a new API key for `make run`'s database and print it once (NAME=..., ADMIN=1)
	$(BIN)/chatservice create-key --name '$(or $(NAME),local)' $(if $(ADMIN),--admin)

.PHONY: test
test: install ## Run the whole test suite (brings its own PostgreSQL and Redis)
	$(BIN)/pytest

.PHONY: lint
lint: $(STAMP) ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: fmt
fmt: $(STAMP) ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: typecheck
typecheck: $(STAMP) ## mypy --strict on both packages, the tools and the tests
	$(BIN)/mypy

.PHONY: generate
generate: $(STAMP) ## Write every generated copy from its source: RBAC rules, the chart's CRD and README
	$(PY) -m tools.generate

.PHONY: check
check: lint typecheck test ## What CI runs (.ci/run without its machine packages): lint, typecheck, test

.PHONY: bench
bench: $(STAMP) ## Benchmark added latency and throughput against a loopback stub upstream
	@command -v wrk >/dev/null || { echo "make bench needs wrk: install it (Debian/Ubuntu: apt-get install wrk, macOS: brew install wrk)" >&2; exit 1; }
	$(PY) -m tools.bench.gateway_overhead
	$(PY) -m tools.bench.endpoint_selection
	$(PY) -m tools.bench.gateway_configurations
	$(PY) -m tools.bench.rate_limit_store
	$(PY) -m tools.bench.ledger_ids

.PHONY: run-operator
run-operator: $(STAMP) ## Run the operator against the current kubeconfig (NAMESPACE=..., default: the context's; ALL=1 for every namespace)
	kubectl apply -f k8s/base/crd.yaml
	$(BIN)/chatservice-operator --verbose $(if $(ALL),--all-namespaces,--namespace $(or $(NAMESPACE),$(shell kubectl config view --minify -o jsonpath='{..namespace}'),default))

# --- Kubernetes: images, a kind cluster, the chart (docs/deploy.md walks through these) ---
OPERATOR_IMAGE_REPO ?= chatservice-operator
K8S_NAMESPACE ?= chatservice
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REVISION := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
IMAGE_BUILD_ARGS := --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) \
	--build-arg CREATED=$(shell date -u +%Y-%m-%dT%H:%M:%SZ)

# The image installs from these locks with --require-hashes. The Python version is the base
# image's; existing pins are kept unless UPGRADE=1.
LOCK_PYTHON := 3.11
LOCK := $(UV) pip compile --quiet --universal --python-version $(LOCK_PYTHON) --generate-hashes \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

.PHONY: lock
lock: $(STAMP) ## Regenerate requirements.lock (runtime) and requirements-build.lock (hatchling), hashed; UPGRADE=1 to move pins
	$(LOCK) pyproject.toml -o requirements.lock
	$(PY) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))" \
		| $(LOCK) - -o requirements-build.lock

# The base image's tag, read from the Dockerfile's `ARG PYTHON_IMAGE=<tag>@sha256:<digest>`.
PYTHON_TAG = $(shell sed -n 's/^ARG PYTHON_IMAGE=\([^@]*\)@.*/\1/p' Dockerfile)

.PHONY: pin-base-image
pin-base-image: ## Pin the Dockerfile's base image to its tag's current digest (needs docker buildx and a registry)
	digest=$$(docker buildx imagetools inspect --format '{{json .Manifest}}' '$(PYTHON_TAG)' \
		| python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])') \
	&& sed -i "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$(PYTHON_TAG)@$$digest|" Dockerfile \
	&& grep '^ARG PYTHON_IMAGE=' Dockerfile

.PHONY: image
image: ## Build the service and operator images (Dockerfile targets `service`, `operator`)
	docker build --target service $(IMAGE_BUILD_ARGS) -t $(IMAGE_REPO):$(IMAGE_TAG) .
	docker build --target operator $(IMAGE_BUILD_ARGS) -t $(OPERATOR_IMAGE_REPO):$(IMAGE_TAG) .

.PHONY: kind-up
kind-up: ## Create the kind cluster (KIND_CLUSTER, default chatservice) unless it exists
	kind get clusters | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name $(KIND_CLUSTER) --wait 180s

.PHONY: deploy
deploy: $(STAMP) image ## Load the images into kind, helm upgrade --install, wait for the ChatService to be Ready
	$(PY) -m tools.cluster deploy --cluster $(KIND_CLUSTER) --namespace $(K8S_NAMESPACE) \
		--image-repository $(IMAGE_REPO) --operator-repository $(OPERATOR_IMAGE_REPO) --tag $(IMAGE_TAG)

.PHONY: e2e
e2e: $(STAMP) kind-up ## End-to-end tests on kind (needs Docker, kind, kubectl; builds the images itself)
	KIND_CLUSTER=$(KIND_CLUSTER) K8S_NAMESPACE=$(K8S_NAMESPACE) IMAGE_TAG=$(IMAGE_TAG) \
		$(BIN)/pytest -m e2e --timeout=1800 tests/e2e

.PHONY: kind-down
kind-down: ## Delete the kind cluster
	kind delete cluster --name $(KIND_CLUSTER)
