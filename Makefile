# Two commands do all the set-up on a fresh machine (see README.md):
#   make report   gap analysis of the built-in targets, reports written under reports/
#   make test     the harness's own test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsgaps-installed

.PHONY: install test lint report clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,targets]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest tests

report: $(STAMP)
	$(VENV)/bin/wsgaps run --target all

clean:
	rm -rf $(VENV) reports/*/ reports/*.html reports/*.md
