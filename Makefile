# socstack.wazuh_iris — the two commands a user needs:
#   make test          every check: ruff, ansible-lint, ansible-test sanity, pytest, molecule
#   make lab           builds the offline container lab and runs playbooks/site.yml in it
# Everything else here is a stage of those two.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# Ansible finds this working tree as socstack.wazuh_iris through a symlink tree, and the bundled
# collections (community.docker, …) in the venv's `ansible` package: nothing comes from Galaxy.
COLLECTIONS := $(CURDIR)/.cache/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS):$(CURDIR)/$(VENV)/lib/python3.11/site-packages
SCENARIOS ?= $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
SANITY_DIR := $(CURDIR)/.cache/sanity/ansible_collections/socstack/wazuh_iris
TIMINGS := $(CURDIR)/.cache/timings.txt
# `stage NAME COMMAND…` runs a command and records how long it took.
stage = start=$$(date +%s); echo "==> $(1)"; $(2); \
	echo "$(1): $$(( $$(date +%s) - start )) s" | tee -a $(TIMINGS)

.PHONY: help
help:
	@echo "make test         run every check (ruff, ansible-lint, sanity, pytest, molecule)"
	@echo "make lab          build the lab images and roll the stack out into containers"
	@echo "make lab-destroy  remove the lab"
	@echo "make build        build the collection tarball"
	@echo "stages: venv ruff lint sanity core-matrix unit molecule images (SCENARIOS='a b' to pick scenarios)"

# --- virtualenv: (re)created when missing or older than a requirements file ----------------
$(VENV)/.stamp: requirements/controller.txt requirements/dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "ERROR: $(PYTHON) not found (need Python 3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "ERROR: $(PYTHON) is not Python 3.11 (set PYTHON=python3.11)"; exit 1; }
	@# a venv whose interpreter is gone (moved machine, upgraded Python) is rebuilt; else updated
	$(BIN)/python -c 'import sys' 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/dev.txt
	@mkdir -p $$($(BIN)/python -c 'import sys,os;print(os.path.expanduser("~/.docker/cli-plugins"))')
	ln -sf $(BIN)/docker-compose $$HOME/.docker/cli-plugins/docker-compose
	touch $@

.PHONY: venv
venv: prereqs $(VENV)/.stamp collection-path

# Debian tools the checks use (shellcheck for ansible-test, openssl for the TLS tests, git).
# Installed when missing and we are root; otherwise a clear message says what to install.
PREREQ_PKGS := git shellcheck openssl
.PHONY: prereqs
prereqs:
	@missing=""; for p in $(PREREQ_PKGS); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then \
			echo "==> installing$$missing"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
		else echo "ERROR: missing tools:$$missing (install them, e.g. apt-get install$$missing)"; exit 1; fi; \
	fi

.PHONY: collection-path
collection-path:
	@mkdir -p $(COLLECTIONS)/ansible_collections/socstack
	@ln -sfn ../../../.. $(COLLECTIONS)/ansible_collections/socstack/wazuh_iris

# --- the test command ---------------------------------------------------------------------------
.PHONY: test
test: venv
	@mkdir -p .cache && : > $(TIMINGS)
	@$(call stage,ruff,$(MAKE) --no-print-directory ruff)
	@$(call stage,ansible-lint,$(MAKE) --no-print-directory lint)
	@$(call stage,ansible-test sanity,$(MAKE) --no-print-directory sanity)
	@$(call stage,ansible-core $(CORE_OLDEST) and $(CORE_NEWEST),$(MAKE) --no-print-directory core-matrix)
	@$(call stage,pytest,$(MAKE) --no-print-directory unit)
	@$(call stage,molecule,$(MAKE) --no-print-directory molecule)
	@echo "==> stage timings"; cat $(TIMINGS)

.PHONY: ruff
ruff: venv
	$(BIN)/ruff check .

.PHONY: lint
lint: venv
	$(BIN)/ansible-lint --profile production --offline

# ansible-test wants the collection at ansible_collections/<ns>/<name>; it runs on a copy of the
# files git knows about (tracked, or untracked and not ignored). Its per-test virtualenvs
# bootstrap pip through lab/ansible-test-get-pip.py instead of a download.
.PHONY: sanity
sanity: venv
	rm -rf $(SANITY_DIR) && mkdir -p $(SANITY_DIR)
	git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -P {} $(SANITY_DIR)/ 2>/dev/null || true
	cd $(SANITY_DIR) && git init -q . && git add -A  # its own repo: the outer one ignores .cache
	lab/ansible-test-offline.sh
	cd $(SANITY_DIR) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no

# --- every ansible-core the collection claims (meta/runtime.yml): the oldest and the newest --------
# Sanity, the module tests and ansible-doc with each, in virtualenvs of their own (lab/core-matrix.sh).
# The newest needs Python 3.12 or later: PYTHON_NEWEST names it, else the first found of python3.13,
# python3.12 (Debian 13 has python3.13) and pyenv's 3.13/3.12. None found stops the run.
CORE_OLDEST := 2.16
CORE_NEWEST := 2.21
PYTHON_NEWEST ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3.13 \
	$$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

.PHONY: core-matrix
core-matrix: venv
	@[ -n "$(PYTHON_NEWEST)" ] || { echo "ERROR: ansible-core $(CORE_NEWEST) needs Python 3.12 or newer and none was" \
		"found (looked for python3.13, python3.12, pyenv 3.13/3.12). Install one (Debian 13: apt-get install" \
		"python3.13-venv; Debian 12: pyenv install 3.13) or set PYTHON_NEWEST=/path/to/python3.12+"; exit 1; }
	lab/core-matrix.sh $(CORE_OLDEST) $(PYTHON)
	lab/core-matrix.sh $(CORE_NEWEST) $(PYTHON_NEWEST)

.PHONY: unit
unit: venv
	$(BIN)/pytest -q

.PHONY: images
images:
	lab/build-images.sh

.PHONY: molecule
molecule: venv images
	@for s in $(SCENARIOS); do \
		start=$$(date +%s); echo "==> molecule test -s $$s"; \
		$(BIN)/molecule test -s $$s; \
		echo "molecule $$s: $$(( $$(date +%s) - start )) s" | tee -a $(TIMINGS); \
	done

# --- the main job: the stack in the local lab -----------------------------------------------------
.PHONY: lab
lab: venv images
	$(BIN)/molecule converge -s stack
	$(BIN)/molecule verify -s stack
	@lab/lab-info.sh

.PHONY: lab-destroy
lab-destroy: venv
	$(BIN)/molecule destroy -s stack

# --- packaging -------------------------------------------------------------------------------------
.PHONY: build
build: venv
	$(BIN)/ansible-galaxy collection build --force --output-path .cache/dist .
