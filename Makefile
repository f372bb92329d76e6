# The two commands: `make run` starts the gateway, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The runtime set (requirements.lock) is all `make run` installs; the checks add the dev set
# (requirements-dev.lock: the same pins plus the test and lint tools). Both come from pyproject.toml.
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint typecheck imports pytest lock clean adversarial static

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $$($(PYTHON) --version)"; $(PYTHON) -m venv $(VENV); }
	@echo "Installing the runtime dependencies from requirements.lock into $(VENV) (first run only)"
	@$(PIP) -r requirements.lock
	@$(PIP) --no-deps -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.lock
	@echo "Installing the test and lint tools from requirements-dev.lock into $(VENV)"
	@$(PIP) -r requirements-dev.lock
	@touch $(DEV_STAMP)

run: $(STAMP) ## start the gateway on PORT (default 3000) with the embedded defaults
	$(BIN)/novo-gateway serve

test: lint typecheck imports pytest ## ruff, mypy --strict, the import layers, the whole test suite

lint: $(DEV_STAMP)
	$(BIN)/ruff check src stripe_emulator tests migrations bench
	$(BIN)/ruff format --check src stripe_emulator tests migrations bench

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# The layers (README "Architecture"): pyproject.toml's import-linter contracts.
imports: $(DEV_STAMP)
	$(BIN)/lint-imports

# Both cores by default (pytest-xdist); `make pytest PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2

pytest: $(DEV_STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

lock: ## re-resolve both locks from pyproject.toml (needs uv); the runtime pins are the dev pins
	uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements-dev.lock
	uv pip compile pyproject.toml --python-version 3.11 -c requirements-dev.lock -o requirements.lock
	echo "semgrep==$(SEMGREP_VERSION)" | uv pip compile - --python-version 3.11 --no-header \
		-o $(RULES)/semgrep.lock

# The adversarial suite (tests/adversarial, README "Reliability"): bandit and local semgrep rules,
# then attacks, faults and many instances on real processes; under 6 minutes on 2 cores.
# semgrep gets its own virtualenv: its pins would downgrade the gateway's dependencies.
RULES := tests/adversarial/rules
SEMGREP_VERSION := 1.185.0
SEMGREP := $(VENV)/semgrep
SEMGREP_STAMP := $(SEMGREP)/.installed

$(SEMGREP_STAMP): $(DEV_STAMP) $(RULES)/semgrep.lock
	test -x $(SEMGREP)/bin/python || $(PYTHON) -m venv $(SEMGREP)
	$(SEMGREP)/bin/python -m pip install --quiet --disable-pip-version-check -r $(RULES)/semgrep.lock
	@touch $(SEMGREP_STAMP)

static: $(DEV_STAMP) $(SEMGREP_STAMP) ## bandit and the local semgrep rules (no network)
	$(BIN)/bandit -q -r src/novo_gateway -c $(RULES)/bandit.yaml
	SEMGREP_SEND_METRICS=off $(SEMGREP)/bin/semgrep --test --metrics=off --disable-version-check \
		--config $(RULES)/semgrep.yml $(RULES)/semgrep.py
	SEMGREP_SEND_METRICS=off $(SEMGREP)/bin/semgrep scan --metrics=off --disable-version-check \
		--no-git-ignore --error --config $(RULES)/semgrep.yml src/novo_gateway

adversarial: static ## attacks, faults and many instances on running processes, then the figures
	NOVO_ADVERSARIAL=1 $(BIN)/python -m pytest tests/adversarial -p no:cacheprovider $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
