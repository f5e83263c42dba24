# QBO Invoice Processor. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKOV_VENV := .tools/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
JOB ?= create
ENV ?= sandbox
ARGS ?=
PYTEST_ARGS ?=
# ALLOW_DIRTY=1: build/push/plan/deploy from a work tree with uncommitted changes (throwaway builds).
DEPLOY_FLAGS := $(if $(filter 1 true yes,$(ALLOW_DIRTY)),--allow-dirty,)

.PHONY: help install lint test run-local sandbox-up sandbox-down sandbox-reset sandbox-show bench \
        image-test build push plan deploy adopt clean doctor qbo-auth

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt libs/integrations/pyproject.toml jobs/create_invoices/pyproject.toml jobs/send_invoices/pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt \
	    -e libs/integrations -e jobs/create_invoices -e jobs/send_invoices
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the three packages (editable) and the dev tools (idempotent)

$(CHECKOV):
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==3.2.*'

lint: $(STAMP) ## ruff (lint + format check) and hadolint on the Dockerfile
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

test: lint $(CHECKOV) ## Lint, then every test (unit, contract, end-to-end, Terraform on moto, checkov)
	CHECKOV=$(CURDIR)/$(CHECKOV) $(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

run-local: $(STAMP) ## Run a job locally: JOB=create|send ENV=sandbox|aws ARGS="--dry-run --period 2026-10"
	$(PY) -m sandbox.run_local --job $(JOB) --env $(ENV) -- $(ARGS)

doctor: $(STAMP) ## Read-only preflight of a deployment, one row per check: ENV=sandbox|aws (exit 0/1/2)
	$(PY) -m sandbox.run_local --job check --env $(ENV)

qbo-auth: $(STAMP) ## Connect QuickBooks and store the refresh token: ENV=sandbox|aws ARGS="--redirect-uri ..."
	$(PY) -m sandbox.run_local --job qbo-auth --env $(ENV) -- $(ARGS)

sandbox-up: $(STAMP) ## Start the local sandbox (moto + stand-ins of QBO, Graph, ClickUp, Robocorp)
	$(PY) -m sandbox up

sandbox-down: $(STAMP) ## Stop the local sandbox (its state stays in .sandbox/)
	$(PY) -m sandbox down

sandbox-reset: $(STAMP) ## Wipe the sandbox state and seed a scenario (SANDBOX_SCENARIO=file, default scenario otherwise)
	$(PY) -m sandbox reset $(if $(SANDBOX_SCENARIO),--scenario $(SANDBOX_SCENARIO),)

sandbox-show: $(STAMP) ## Print the sandbox state: invoices, mails, SharePoint files, ledger, secret versions
	$(PY) -m sandbox show

bench: $(STAMP) ## Benchmark both jobs against the sandbox at scale (CLIENTS=200)
	$(PY) -m sandbox.bench --clients $(or $(CLIENTS),200)

image-test: $(STAMP) ## Build the image without a Docker engine (buildah) and run both jobs in it against the sandbox
	bash scripts/image-test.sh

build: $(STAMP) ## Build the container image for the task's cpu_architecture (docker, tagged with the git commit)
	$(PY) -m deploy build $(DEPLOY_FLAGS)

push: $(STAMP) ## Push the image to ECR, tagged with the git commit
	$(PY) -m deploy push $(DEPLOY_FLAGS)

plan: $(STAMP) ## terraform plan of terraform/envs/prod for the current image
	$(PY) -m deploy plan $(DEPLOY_FLAGS)

deploy: $(STAMP) ## Build, push, plan to a file, ask, apply exactly that plan (ALLOW_DIRTY=1 for a dirty tree)
	$(PY) -m deploy deploy $(DEPLOY_FLAGS)

adopt: $(STAMP) ## Adopt the seed guide's hand-made AWS setup: import, remove the old rules/policy, say what to delete
	$(PY) -m deploy adopt

clean: ## Remove the virtualenvs, caches and sandbox state
	-$(PY) -m sandbox down 2>/dev/null
	rm -rf $(VENV) .tools .sandbox .pytest_cache .ruff_cache .image-build
