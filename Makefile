# socstack.wazuh_iris — the commands a user needs:
#   make check         the inner loop (<= 5 min, no containers): ruff, ansible-lint, sanity, pytest
#   make test          every check: make check's stages, ansible-core 2.16 and 2.21, molecule
#   make lab           builds the offline container lab and runs playbooks/site.yml in it
# Everything else here is a stage of those two. No target writes into the user's own configuration
# (~/.ansible, ~/.docker): Ansible's files and the Docker CLI's plugins live under .cache/.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
HOST_PATH := $(PATH)
export PATH := $(BIN):$(PATH)
# Ansible finds this working tree as socstack.wazuh_iris through a symlink tree, and the bundled
# collections (community.docker, …) in the venv's `ansible` package: nothing comes from Galaxy.
COLLECTIONS := $(CURDIR)/.cache/collections
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)$(patsubst %,:%,$(firstword $(wildcard $(CURDIR)/$(VENV)/lib/python3*/site-packages)))
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
	@echo "make check        the inner loop, no containers (ruff, ansible-lint, sanity, pytest; <= 5 min)"
	@echo "make test         run every check (make check, ansible-core 2.16 and 2.21, molecule)"
	@echo "make lab          build the lab images and roll the stack out into containers"
	@echo "make lab-destroy  remove the lab"
	@echo "make build        build the collection tarball"
	@echo "stages: venv molecule-venv ruff lint sanity core-matrix unit real-iris programs molecule images wazuh (SCENARIOS='a b' to pick scenarios)"
	@echo "PYTHON=/path/to/python3.12+ picks the interpreter (default: 3.12 first, see make which-python)"

# --- interpreters and virtualenvs: uv ------------------------------------------------------------
# A fresh machine needs only its own Python 3 (with its venv module: Debian's python3-venv): it makes
# .cache/venvs/uv, which holds uv (requirements/uv.txt, from PyPI); uv makes every other virtualenv
# (in seconds) with ONE interpreter >= 3.12 for everything, which runs ansible-core 2.16, 2.19 and
# 2.21. That interpreter is PYTHON when given, else a 3.12 (PATH, pyenv's ~/.pyenv/versions, uv's
# .cache/python), else a newer one, else uv tries to download 3.12 (`uv python install`). Where that fails too (Debian 12 offline: it ships 3.11 only), .venv falls back
# to Python 3.11, which runs ansible-core 2.19 (make check); ansible-core 2.21 (make test's newest
# core, molecule, make lab) then stops with a message saying what to install.
# uv's cache and the interpreters it downloads stay under .cache, like everything else.
HOST_PYTHON ?= python3
UV_VENV := $(CURDIR)/.cache/venvs/uv
UV := $(UV_VENV)/bin/uv
export UV_CACHE_DIR := $(CURDIR)/.cache/uv
export UV_PYTHON_INSTALL_DIR := $(CURDIR)/.cache/python
export UV_NO_CONFIG := 1
PYTHON_MIN := 3.12
# `$(call find_python,LOW,HIGH)` prints the first interpreter 3.LOW <= version <= 3.HIGH, 3.12 first (it
# runs ansible-core 2.16, 2.19 and 2.21): PYTHON, python3.12, pyenv's and uv's 3.12 (.cache/python), then
# python3.13, python3.14, python3, python3.11, python3.10 and pyenv's and uv's others; empty when there is
# none. Not the virtualenvs' own: it looks on the PATH make was started with.
find_python = PATH='$(HOST_PATH)'; for p in $(PYTHON) python3.12 \
	$$(ls -d $$HOME/.pyenv/versions/3.12*/bin/python3 $(UV_PYTHON_INSTALL_DIR)/cpython-3.12*/bin/python3 2>/dev/null | sort -rV) \
	python3.13 python3.14 python3 python3.11 python3.10 \
	$$(ls -d $$HOME/.pyenv/versions/3.1*/bin/python3 $(UV_PYTHON_INSTALL_DIR)/cpython-3.1*/bin/python3 2>/dev/null | sort -rV); do \
	"$$p" -c 'import sys; sys.exit(not (3, $(1)) <= sys.version_info[:2] <= (3, $(2)))' >/dev/null 2>&1 \
	&& { command -v "$$p"; break; }; done; true
# `$(call python_at_least,VERSION,LOW,HIGH)`: py=find_python LOW HIGH, else after `uv python install VERSION`.
python_at_least = py=$$($(call find_python,$(2),$(3))); \
	if [ -z "$$py" ]; then \
		echo "==> no Python 3.$(2) to 3.$(3) on this machine: trying uv python install $(1)" >&2; \
		$(UV) python install $(1) >&2 && py=$$($(call find_python,$(2),$(3))); fi
NEED_PYTHON = echo "ERROR: no Python >= $(PYTHON_MIN) found (looked for PYTHON, python3.14 .. python3.12, python3," \
	"pyenv's ~/.pyenv/versions/3.12+, .cache/python) and uv could not download one. Install one (Debian 13:" \
	"apt-get install python3; Ubuntu 24.04: apt-get install python3; Debian 12: pyenv install 3.13) or set" \
	"PYTHON=/path/to/python3.12+" >&2; exit 1

$(UV_VENV)/.stamp: requirements/uv.txt
	@command -v $(HOST_PYTHON) >/dev/null || { echo "ERROR: $(HOST_PYTHON) not found: install Python 3" \
		"(Debian/Ubuntu: apt-get install python3 python3-venv) or make HOST_PYTHON=/path/to/python3"; exit 1; }
	rm -rf $(UV_VENV)
	$(HOST_PYTHON) -m venv $(UV_VENV) || { echo "ERROR: $(HOST_PYTHON) cannot make a virtualenv" \
		"(Debian/Ubuntu: apt-get install python3-venv)"; rm -rf $(UV_VENV); exit 1; }
	$(UV_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/uv.txt
	touch $@

.PHONY: uv
uv: $(UV_VENV)/.stamp

.PHONY: which-python
which-python:  # the interpreter the virtualenvs are made with (none: an empty line)
	@$(call find_python,12,99)

# --- the development virtualenv (ruff, ansible-lint, sanity, pytest): ansible-core 2.19 ----------------
# (re)made when missing, older than a requirements file, or on an interpreter older than the one found.
$(VENV)/.stamp: requirements/controller.txt requirements/dev.txt $(UV_VENV)/.stamp
	@$(call python_at_least,3.12,12,99); \
	if [ -z "$$py" ]; then py=$$($(call find_python,11,11)); \
		[ -n "$$py" ] || { $(NEED_PYTHON); }; \
		echo "==> WARNING: no Python >= $(PYTHON_MIN): $(VENV) uses $$py (Python 3.11 runs make check;" \
			"make test and make lab need 3.12 or later for ansible-core $(CORE_NEWEST))"; fi; \
	want=$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	have=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true); \
	if [ "$$have" != "$$want" ]; then echo "==> $(VENV) on $$py (Python $$want)"; rm -rf $(VENV); \
		$(UV) venv -q --seed --python "$$py" $(VENV); fi
	$(UV) pip install -q --python $(BIN)/python -r requirements/dev.txt
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

$(MOLECULE_VENV)/.stamp: requirements/molecule.txt $(UV_VENV)/.stamp
	@# made with the interpreter of .venv (>= 3.12); rebuilt when its own is gone or another version
	@$(call python_at_least,3.12,12,99); [ -n "$$py" ] || { $(NEED_PYTHON); }; \
	want=$$("$$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	have=$$($(MBIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true); \
	if [ "$$have" != "$$want" ]; then echo "==> $(MOLECULE_VENV) on $$py (Python $$want)"; \
		rm -rf $(MOLECULE_VENV); $(UV) venv -q --seed --python "$$py" $(MOLECULE_VENV); fi
	$(UV) pip install -q --python $(MBIN)/python -r requirements/molecule.txt
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

# --- the two test commands ----------------------------------------------------------------------
# make check: the inner loop, no containers, <= 5 min. make test: check's stages, then the ansible-core
# matrix and molecule. Both write each stage's time to .cache/timings.txt and end with the stage times
# and the slowest five tests and molecule scenarios (tests/timings_report.py).
# The generated-fault suites read SOCSTACK_FAULT_EXAMPLES (Hypothesis examples per property): make check
# runs them at CHECK_FAULT_EXAMPLES; make test at the suites' own default (unless you set it).
CHECK_FAULT_EXAMPLES ?= 10
CHECK_STAGES = \
	$(call stage,ruff,$(MAKE) --no-print-directory ruff); \
	$(call stage,ansible-lint,$(MAKE) --no-print-directory lint); \
	$(call stage,ansible-test sanity,$(MAKE) --no-print-directory sanity); \
	$(call stage,pytest,$(MAKE) --no-print-directory unit)
TIMINGS_REPORT = $(BIN)/python tests/timings_report.py --timings $(TIMINGS) --junit $(PYTEST_XML)

.PHONY: check
check: export SOCSTACK_FAULT_EXAMPLES ?= $(CHECK_FAULT_EXAMPLES)
check: venv
	@mkdir -p .cache && : > $(TIMINGS) && rm -f $(PYTEST_XML)
	@$(CHECK_STAGES)
	@$(TIMINGS_REPORT)

.PHONY: test
test: venv
	@mkdir -p .cache && : > $(TIMINGS) && rm -f $(PYTEST_XML)
	@$(CHECK_STAGES)
	@$(call stage,ansible-core $(CORE_OLDEST) and $(CORE_NEWEST),$(MAKE) --no-print-directory core-matrix)
	@$(call stage,pytest real IRIS,$(MAKE) --no-print-directory real-iris)
	@$(call stage,host programs on Python $(MANAGER_PYTHONS),$(MAKE) --no-print-directory programs)
	@$(call stage,molecule,$(MAKE) --no-print-directory molecule)
	@$(TIMINGS_REPORT)

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
	cd $(SANITY_DIR) && $(BIN)/ansible-test sanity --venv --color no \
		--python $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')

# --- every ansible-core the collection claims (meta/runtime.yml): the oldest and the newest --------
# Sanity, the module tests and ansible-doc with each (lab/core-matrix.sh): the oldest in a virtualenv
# of its own (made by uv), the newest in the molecule virtualenv (requirements/molecule.txt pins it).
# 2.16 runs on Python 3.10 to 3.12: the first of those found (3.12 first: then it is the one Python of
# the virtualenvs), else one uv downloads; 2.21 on the molecule virtualenv's.
CORE_OLDEST := 2.16
CORE_NEWEST := 2.21

.PHONY: core-matrix
core-matrix: venv molecule-venv
	@$(call python_at_least,3.12,10,12); [ -n "$$py" ] || { echo "ERROR: ansible-core $(CORE_OLDEST) needs Python" \
		"3.10 to 3.12 and none was found (Debian 13 ships 3.13 only: pyenv install 3.12, or PYTHON=/path/to/python3.12)"; exit 1; }; \
	echo "UV=$(UV) lab/core-matrix.sh $(CORE_OLDEST) $$py"; UV=$(UV) lab/core-matrix.sh $(CORE_OLDEST) "$$py"
	CORE_VENV=$(MOLECULE_VENV) lab/core-matrix.sh $(CORE_NEWEST) $(MBIN)/python

# --- pytest in parallel (pytest-xdist) -------------------------------------------------------------
# PYTEST_WORKERS processes (default: one more than the cores, at least 2, at most 4: many tests wait on
# subprocesses and sockets). --dist loadgroup keeps the tests of one xdist_group on one worker (a role
# validation table, a module whose tests share one emulator). The report (.cache/pytest.xml) gives the
# slowest tests to `make test`'s summary.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); n=$$((n + 1)); echo $$(( n < 2 ? 2 : n > 4 ? 4 : n )))
PYTEST_XML := $(CURDIR)/.cache/pytest.xml

.PHONY: unit
unit: venv wazuh
	@mkdir -p .cache
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadgroup --junitxml=$(PYTEST_XML)

# --- the host programs on the managers' other Python ---------------------------------------------
# The host programs (forwarder, OpenCTI enrichment, AI worker) run on the managers' Python: 3.13 on
# Debian 13 (.venv's, make unit) and 3.11 on Debian 12. `make programs` runs their tests again, each
# program started by that interpreter, in .cache/venvs/programs-3.11 (uv, requirements/dev.txt) with
# the first python3.11 found (PATH, pyenv). make test runs it; with no 3.11 on the machine it says so and
# skips. MANAGER_PYTHONS="3.11 3.10" adds others.
MANAGER_PYTHONS ?= 3.11
PROGRAM_TESTS := tests/integration/test_forwarder_*.py tests/integration/ai_worker tests/integration/opencti \
	tests/emulators/test_integratord_emulator.py

.PHONY: programs
programs: uv
	@for v in $(MANAGER_PYTHONS); do \
		py=$$(for p in python$$v $$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python$$v 2>/dev/null | sort -rV); do \
			command -v "$$p" >/dev/null 2>&1 && { command -v "$$p"; break; }; done; true); \
		if [ -z "$$py" ]; then echo "==> no python$$v on this machine: the host programs' tests on $$v are skipped"; continue; fi; \
		venv=$(CURDIR)/.cache/venvs/programs-$$v; echo "==> the host programs' tests on $$py"; \
		if [ ! -f $$venv/.stamp ] || [ requirements/dev.txt -nt $$venv/.stamp ] || [ requirements/controller.txt -nt $$venv/.stamp ]; then \
			rm -rf $$venv && $(UV) venv -q --python "$$py" $$venv && \
			$(UV) pip install -q --python $$venv/bin/python -r requirements/dev.txt && touch $$venv/.stamp; fi; \
		$$venv/bin/python -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadgroup $(PROGRAM_TESTS); \
	done

# The end-to-end subset against a real DFIR-IRIS 2.4.20 (tests/support/real_iris.py: the lab's app image
# on the host engine, one first boot per session): the emulator compared with it on the routes the
# programs use, and the module playbooks. Without ../shared/iris it says so and runs nothing.
REAL_IRIS_TESTS := tests/integration/test_iris_real.py tests/integration/test_iris_modules_playbook.py

.PHONY: real-iris
real-iris: venv
	@if [ -d "$${IRIS_SOURCES:-../shared/iris}" ]; then $(MAKE) --no-print-directory images \
		&& $(BIN)/pytest -q --real-iris -k real $(REAL_IRIS_TESTS); \
	else echo "real-iris: no $${IRIS_SOURCES:-../shared/iris}: the real-IRIS tests are not run"; fi

.PHONY: images
images: wazuh
	DOCKER_CONFIG=$(DOCKER_CONFIG_DIR) lab/build-images.sh
	DOCKER_CONFIG=$(DOCKER_CONFIG_DIR) lab/wazuh-manager/build.sh image $(WAZUH_NEWEST)
	@# The IRIS images (real app and worker from ../shared/iris, db/nginx/RabbitMQ stand-ins); without the
	@# sources only the scenarios that bring IRIS up stop (their prepare says why).
	@if [ -d "$${IRIS_SOURCES:-../shared/iris}" ]; then DOCKER_CONFIG=$(DOCKER_CONFIG_DIR) lab/standin-images/build.sh; \
	else echo "images: no $${IRIS_SOURCES:-../shared/iris}: the IRIS images are not built (scenarios iris, stack, readme need them)"; fi

# --- real Wazuh manager cores, built from ../shared/wazuh (lab/wazuh-manager/build.sh) ---------------
# The newest runs in the lab image the scenarios use; both are installed under <cache>/<version> (as root
# /var/cache/socstack-lab/wazuh, shared by the machine's clones; else .cache/wazuh; WAZUH_CACHE sets it)
# for the pytest checks that talk to a real analysisd (-t, logtest) and integratord (argv).
WAZUH_NEWEST := 4.14.7
WAZUH_OLDEST := 4.8.2
.PHONY: wazuh
wazuh:
	@if [ ! -d ../shared/wazuh ] && [ -z "$${WAZUH_SRC_DIR:-}" ]; then \
		echo "==> no ../shared/wazuh: the real Wazuh manager is not built (its tests skip; the lab needs it)"; \
	elif [ "$$(id -u)" -ne 0 ]; then \
		echo "==> not root: the real Wazuh manager is not built (it installs Debian packages and runs as root; its tests skip)"; \
	else for v in $(WAZUH_NEWEST) $(WAZUH_OLDEST); do lab/wazuh-manager/build.sh host $$v; done; fi

.PHONY: molecule
# Longest first, so that the short ones fill the gaps; MOLECULE_JOBS scenarios at a time
# (lab/molecule-parallel.sh; each scenario's log in .cache/molecule-logs/).
MOLECULE_ORDER := stack readme ai_worker iris wazuh_iris wazuh_opencti tenants docker default
MOLECULE_JOBS ?= 3
molecule: molecule-venv images
	@mkdir -p .cache
	@$(MBIN)/python -c 'import importlib.metadata as m, platform; print("==> molecule %s, ansible %s, ansible-core %s," \
		" Python %s" % (m.version("molecule"), m.version("ansible"), m.version("ansible-core"), platform.python_version()))'
	@$(MOLECULE_ENV) JOBS=$(MOLECULE_JOBS) TIMINGS=$(TIMINGS) lab/molecule-parallel.sh \
		$(filter $(SCENARIOS),$(MOLECULE_ORDER)) $(filter-out $(MOLECULE_ORDER),$(SCENARIOS))

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
