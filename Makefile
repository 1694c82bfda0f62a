# The two commands: `make run` (platform on http://localhost:8088; `make stop` ends it) and `make test`
# (the whole suite). They can run at the same time: tests use a data folder of their own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run stop test lint install install-test

AGENT_BUILD := agent/pyproject.toml agent/setup.py $(wildcard agent/profiling_agent/collectors/*.c)

# creates the venv when needed; one install at a time (`make run` and `make test` started together)
$(VENV)/.installed: pyproject.toml $(AGENT_BUILD)
	$(PYTHON) scripts/install_venv.py $(VENV) './agent[all]' .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(AGENT_BUILD)
	$(PYTHON) scripts/install_venv.py $(VENV) './agent[all]' '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	@$(BIN)/python scripts/devserver.py check
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	@echo ""
	@echo "Profiling platform on http://localhost:$${PORT:-8088} (web, worker, beat)."
	@echo "  Create a tenant and its tokens:  $(BIN)/python manage.py create_tenant 550e8400 --name Demo"
	@echo "  An admin login:                  $(BIN)/python manage.py createsuperuser"
	@echo "  Then try:  curl -H \"Authorization: Bearer \$$TOKEN\" -H 'X-Tenant-ID: 550e8400' http://localhost:8088/api/v1/observability/profiling/history?service=ai-service"
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python scripts/devserver.py run

# Stops what `make run` started from this checkout (also when that terminal is gone).
stop:
	@$(PYTHON) scripts/devserver.py stop

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
