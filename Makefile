# Two commands do all the set-up on a fresh machine (see README.md):
#   make report   gap analysis of the built-in targets, reports written under reports/
#   make test     the harness's own test suite and the docs' example tests (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wsgaps-installed
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

# Go module mirror for the builds of Go targets (any targets/<name> whose build runs `go`;
# today GoFr's): on this project's machines and in CI a file-based mirror holding gofr.dev
# lies beside the checkout, in ../shared/goproxy, because the Go module proxy reachable there
# refuses gofr.dev.  When it exists, and GOPROXY is Go's
# default (not set in the environment, on the command line or by `go env -w`), the mirror is
# put first and Go's default follows it (proxy.golang.org, then direct) for every other
# module.  go.sum still checks every download.  Elsewhere nothing changes.  The path must be
# absolute for file://.  Override with `make report WSGAPS_GO_MIRROR=/other/dir`.
WSGAPS_GO_MIRROR ?= $(abspath $(ROOT)/../shared/goproxy)
export WSGAPS_GO_MIRROR
ifneq ($(and $(wildcard $(WSGAPS_GO_MIRROR)/.),$(if $(strip $(GOPROXY)),,yes)),)
  GO_PROXY_CHANGED := $(shell go env -changed GOPROXY 2>/dev/null)
  GO_PROXY_DEFAULT := $(shell go env GOPROXY 2>/dev/null)
  ifeq ($(GO_PROXY_CHANGED),)
    ifneq ($(filter-out off,$(GO_PROXY_DEFAULT)),)
      export GOPROXY := file://$(WSGAPS_GO_MIRROR),$(GO_PROXY_DEFAULT)
    endif
  endif
endif

.PHONY: install test lint report clean bytecode

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,targets]'
	touch $(STAMP)

install: $(STAMP)

# Byte-compiled sources, brought up to date (only changed files): a run starts about twenty
# interpreters (the CLI, pytest, reference instances), and where PYTHONDONTWRITEBYTECODE is
# set each would compile the same sources again, 0.2 s apiece.
bytecode: $(STAMP)
	$(PY) -m compileall -q gaps probes > /dev/null

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint bytecode
	$(PY) -m pytest tests
	$(PY) -m pytest docs/examples --gaps-server reference

report: bytecode
	$(VENV)/bin/wsgaps run --target all

clean:
	rm -rf $(VENV) reports/*/ reports/*.html reports/*.md
