# The two commands of the README: `make demo` and `make test`. Both work from a fresh clone with
# only Python 3.11+ and git: they create .venv, install, and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint clean

demo: $(VENV)/.installed
	$(BIN)/clarity demo

test: lint
	$(BIN)/pytest -q -n 4 --dist worksteal

# The fast loop before a commit: lint, then the tests that start no stack, browser or docker engine and
# take under ~3 s each (markers in pyproject.toml). `make test` runs everything.
check: lint
	$(BIN)/pytest -q -n 4 --dist worksteal -m "not e2e and not browser and not docker and not slow"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .clarity .pytest_cache .hypothesis *.egg-info
