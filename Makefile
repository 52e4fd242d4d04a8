# socstack.wazuh_iris — the two commands a user needs:
#   make test          every check: ruff, ansible-lint, ansible-test sanity, pytest, molecule
#   make lab           builds the offline container lab and runs playbooks/site.yml in it
# Everything else here is a stage of those two. No target writes into the user's own configuration
# (~/.ansible, ~/.docker): Ansible's files and the Docker CLI's plugins live under .cache/.
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
# Ansible's local temp files and Galaxy cache go here instead of ~/.ansible.
export ANSIBLE_HOME := $(CURDIR)/.cache/ansible
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
	@echo "stages: venv molecule-venv ruff lint sanity core-matrix unit molecule images (SCENARIOS='a b' to pick scenarios)"

# --- the development virtualenv (ruff, ansible-lint, sanity, pytest): Python 3.11, ansible-core 2.19 --
# (re)created when missing or older than a requirements file.
$(VENV)/.stamp: requirements/controller.txt requirements/dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "ERROR: $(PYTHON) not found: the development virtualenv" \
		"needs Python 3.11 (Debian 12: apt-get install python3.11-venv; elsewhere pyenv install 3.11," \
		"then make PYTHON=python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "ERROR: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())')," \
		"the development virtualenv needs 3.11 (its pins are tested there): install python3.11 (Debian 12:" \
		"apt-get install python3.11-venv; Debian 13: pyenv install 3.11) and run make PYTHON=python3.11"; exit 1; }
	@# a venv whose interpreter is gone (moved machine, upgraded Python) is rebuilt; else updated
	$(BIN)/python -c 'import sys' 2>/dev/null || { rm -rf $(VENV); $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --disable-pip-version-check -r requirements/dev.txt
	touch $@

.PHONY: venv
venv: prereqs $(VENV)/.stamp collection-path
	@# earlier versions of this target linked docker-compose into ~/.docker/cli-plugins: remove that
	@# link, and only when it points into this repository's virtualenv (then it was ours)
	@link=$$HOME/.docker/cli-plugins/docker-compose; \
	if [ -L "$$link" ] && [ "$$(readlink "$$link")" = "$(BIN)/docker-compose" ]; then \
		rm -f "$$link"; echo "removed $$link (made by an earlier make venv; the lab uses $(DOCKER_CONFIG_DIR))"; fi

# --- the molecule virtualenv: the newest ansible-core (requirements/molecule.txt), Python >= 3.12 ----
# Molecule, ansible-playbook and testinfra's pytest all run from it; Ansible finds the collections the
# `ansible` package bundles on its own sys.path, so ANSIBLE_COLLECTIONS_PATH names only this working
# tree. The Docker CLI (testinfra, the docker connection) reads the repository's own DOCKER_CONFIG,
# where Compose v2 is a CLI plugin: nothing is added to ~/.docker.
MOLECULE_VENV := $(CURDIR)/.cache/venvs/molecule
MBIN := $(MOLECULE_VENV)/bin
DOCKER_CONFIG_DIR := $(CURDIR)/.cache/docker
MOLECULE_ENV = PATH=$(MBIN):$$PATH VIRTUAL_ENV=$(MOLECULE_VENV) ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS) \
	DOCKER_CONFIG=$(DOCKER_CONFIG_DIR)
NEED_NEWEST = echo "ERROR: ansible-core $(CORE_NEWEST) (molecule, the newest of the core matrix) needs Python 3.12" \
	"or newer and none was found (looked for python3.13, python3.12, pyenv 3.13/3.12). Install one" \
	"(Debian 13: apt-get install python3.13-venv; Debian 12: pyenv install 3.13) or set" \
	"PYTHON_NEWEST=/path/to/python3.12+"; exit 1

$(MOLECULE_VENV)/.stamp: requirements/molecule.txt
	@[ -n "$(PYTHON_NEWEST)" ] || { $(NEED_NEWEST); }
	@# rebuilt when its interpreter is gone or older than 3.12; else updated
	$(MBIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
		|| { rm -rf $(MOLECULE_VENV); $(PYTHON_NEWEST) -m venv $(MOLECULE_VENV); }
	$(MBIN)/pip install -q --disable-pip-version-check -r requirements/molecule.txt
	mkdir -p $(DOCKER_CONFIG_DIR)/cli-plugins
	ln -sfn $(MBIN)/docker-compose $(DOCKER_CONFIG_DIR)/cli-plugins/docker-compose
	touch $@

.PHONY: molecule-venv
molecule-venv: prereqs $(MOLECULE_VENV)/.stamp collection-path

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
# Sanity, the module tests and ansible-doc with each (lab/core-matrix.sh): the oldest in a virtualenv
# of its own, the newest in the molecule virtualenv (requirements/molecule.txt pins it).
# The newest needs Python 3.12 or later: PYTHON_NEWEST names it, else the first found of python3.13,
# python3.12 (Debian 13 has python3.13) and pyenv's 3.13/3.12. None found stops the run.
CORE_OLDEST := 2.16
CORE_NEWEST := 2.21
PYTHON_NEWEST ?= $(shell for p in python3.13 python3.12 $$HOME/.pyenv/versions/3.13*/bin/python3.13 \
	$$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && { command -v "$$p"; break; }; done)

.PHONY: core-matrix
core-matrix: venv molecule-venv
	lab/core-matrix.sh $(CORE_OLDEST) $(PYTHON)
	CORE_VENV=$(MOLECULE_VENV) lab/core-matrix.sh $(CORE_NEWEST) $(PYTHON_NEWEST)

# --- pytest in parallel (pytest-xdist) -------------------------------------------------------------
# PYTEST_WORKERS processes (default: one more than the cores, at least 2, at most 4: many tests wait on
# subprocesses and sockets). --dist loadgroup keeps the tests of one xdist_group on one worker (a role
# validation table, a module whose tests share one emulator). The report (.cache/pytest.xml) gives the
# slowest tests to `make test`'s summary.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); n=$$((n + 1)); echo $$(( n < 2 ? 2 : n > 4 ? 4 : n )))
PYTEST_XML := $(CURDIR)/.cache/pytest.xml

.PHONY: unit
unit: venv
	@mkdir -p .cache
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --junitxml=$(PYTEST_XML)

.PHONY: images
images:
	DOCKER_CONFIG=$(DOCKER_CONFIG_DIR) lab/build-images.sh

.PHONY: molecule
molecule: molecule-venv images
	@mkdir -p .cache
	@$(MBIN)/python -c 'import importlib.metadata as m, platform; print("==> molecule %s, ansible %s, ansible-core %s," \
		" Python %s" % (m.version("molecule"), m.version("ansible"), m.version("ansible-core"), platform.python_version()))'
	@for s in $(SCENARIOS); do \
		start=$$(date +%s); echo "==> molecule test -s $$s"; \
		$(MOLECULE_ENV) $(MBIN)/molecule test -s $$s; \
		echo "molecule $$s: $$(( $$(date +%s) - start )) s" | tee -a $(TIMINGS); \
	done

# --- the main job: the stack in the local lab -----------------------------------------------------
.PHONY: lab
lab: molecule-venv images
	$(MOLECULE_ENV) $(MBIN)/molecule converge -s stack
	$(MOLECULE_ENV) $(MBIN)/molecule verify -s stack
	@DOCKER_CONFIG=$(DOCKER_CONFIG_DIR) lab/lab-info.sh

.PHONY: lab-destroy
lab-destroy: molecule-venv
	$(MOLECULE_ENV) $(MBIN)/molecule destroy -s stack

# --- packaging: only ansible-galaxy (any ansible-core >= 2.16) is needed, no virtualenv ----------------
# The development virtualenv's ansible-galaxy when it exists (it is first on PATH), else the one on PATH.
.PHONY: build
build:
	@command -v ansible-galaxy >/dev/null || { echo "ERROR: ansible-galaxy not found: install ansible-core 2.16" \
		"or later (pip install 'ansible-core>=2.16', or apt-get install ansible-core) or run make venv"; exit 1; }
	@v=$$(ansible-galaxy --version | sed -n '1s/.*core \([0-9][0-9.]*\).*/\1/p'); \
	[ "$$(printf '2.16\n%s\n' "$$v" | sort -V | head -n 1)" = 2.16 ] \
		|| { echo "ERROR: $$(command -v ansible-galaxy) is ansible-core $${v:-of unknown version}; the collection" \
		"needs 2.16 or later (pip install 'ansible-core>=2.16')"; exit 1; }
	ansible-galaxy collection build --force --output-path .cache/dist .
