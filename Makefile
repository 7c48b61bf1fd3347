# One command each: `make demo` runs the main job, `make test` sets up and checks everything.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SEEDS ?= 500
SEED_BASE ?= 0
STEPS ?= 2000
# Test processes (pytest-xdist). Most tests wait on real processes, sockets and timers rather
# than compute: on 2 cores the suite took 1,099 s in one process and 520 s in three.
TEST_JOBS ?= 3

.PHONY: demo test sysdeps check lint typecheck unit sim soak mutants bench fuzz chaos e2e-sql clean install uninstall

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The main job: a planner, three agents that message each other and share a file through a lock,
# a retry and a reviewer (examples/demo.yaml), offline with examples/standin_agent.py.
demo: $(STAMP)
	$(VENV)/bin/agentflow run examples/demo.yaml

# `agentflow` on the PATH outside this checkout: a venv of its own under PREFIX/share (as pipx
# makes; `pip install --user` is refused where the system Python is externally managed) and
# links to its commands in PREFIX/bin.
PREFIX ?= $(HOME)/.local
HOME_VENV := $(PREFIX)/share/agentflow/venv
COMMANDS := agentflow agentflow-master agentflow-worker
install:
	$(PYTHON) -m venv --clear $(HOME_VENV)
	$(HOME_VENV)/bin/python -m pip install -q .
	mkdir -p $(PREFIX)/bin
	for c in $(COMMANDS); do ln -sf $(HOME_VENV)/bin/$$c $(PREFIX)/bin/$$c; done
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) ;; \
		*) echo "add $(PREFIX)/bin to PATH to type agentflow";; esac

uninstall:
	for c in $(COMMANDS); do rm -f $(PREFIX)/bin/$$c; done
	rm -rf $(PREFIX)/share/agentflow

# System tools the tests use that a bare machine may lack: openssl makes their certificates,
# curl runs the docs' examples (tests/docs), promtool checks /metrics and the alert rules,
# chromium (Debian's, driven by Playwright) runs the dashboard's browser tests (tests/browser),
# systemd-analyze verifies deploy/systemd/ (tests/deploy; hadolint and kubernetes-validate come
# with the [dev] extra), ip/tc (iproute2) and nft (nftables) make the chaos suite's hosts and
# network faults (tests/chaos), postgresql and mariadb-server give the SQL store's tests throwaway
# servers of their own (tests/sql; agentflow.testing.sqlserve starts them, never the packages'
# services).
sysdeps:
	@command -v openssl >/dev/null || { apt-get update -q && apt-get install -y -q openssl; }
	@command -v curl >/dev/null || { apt-get update -q && apt-get install -y -q curl; }
	@command -v promtool >/dev/null || { apt-get update -q && apt-get install -y -q prometheus; }
	@test -x /usr/bin/chromium || { apt-get update -q && apt-get install -y -q chromium; }
	@command -v systemd-analyze >/dev/null || { apt-get update -q && apt-get install -y -q systemd; }
	@command -v nft >/dev/null && command -v ip >/dev/null && command -v tc >/dev/null || { apt-get update -q && apt-get install -y -q nftables iproute2; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }
	@test -x /usr/sbin/mariadbd || command -v mariadbd >/dev/null || { apt-get update -q && apt-get install -y -q mariadb-server; }

# Lint, types and every test: the one command CI runs.
test: $(STAMP) sysdeps
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -n $(TEST_JOBS)

lint: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_JOBS) -m "not slow"

# Deterministic simulation over any range of seeds, the Raft core under key-value clients and
# then the whole system (the real state machine, workers, the leader's timers); a failing seed
# prints itself.
sim: $(STAMP)
	$(PY) -m agentflow.testing.sim --seeds $(SEEDS) --seed-base $(SEED_BASE) --steps $(STEPS) --jobs 0
	$(PY) -m agentflow.testing.sim --seeds $(SEEDS) --seed-base $(SEED_BASE) --steps $(STEPS) --jobs 0 \
		--model system

soak: $(STAMP)
	$(PY) -m agentflow.testing.sim --seeds 20000 --seed-base $(SEED_BASE) --steps 5000 --jobs 0
	$(PY) -m agentflow.testing.sim --seeds 20000 --seed-base $(SEED_BASE) --steps 2000 --jobs 0 \
		--model system

# Deliberate bugs (agentflow/testing/mutants), each applied in turn in fresh processes and run
# against the same seed budget: prints the first failing seed of each, or "not found in N".
MUTANTS ?=
mutants: $(STAMP)
	$(PY) -m agentflow.testing.mutants --seeds $(SEEDS) --seed-base $(SEED_BASE) --steps $(STEPS) --jobs 0 $(MUTANTS)

# The HTTP API fuzzed against its OpenAPI document for long (the suite runs a bounded pass).
FUZZ_EXAMPLES ?= 300
fuzz: $(STAMP)
	AGENTFLOW_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q -s -p no:cacheprovider \
		tests/security/test_fuzz_api.py

# Jepsen-style chaos on real processes (agentflow/testing/chaos): RUNS schedules from SEED (by
# default drawn from the clock and printed), each CHAOS_DURATION seconds of faults on masters and
# workers in network namespaces; a report per run under chaos-runs/seed-N/ and a summary table.
# Needs root (namespaces, nft, tmpfs). `make chaos RUNS=1 SEED=S` repeats run S.
RUNS ?= 3
SEED ?=
CHAOS_DURATION ?= 60
chaos: $(STAMP) sysdeps
	$(PY) -m agentflow.testing.chaos --runs $(RUNS) --duration $(CHAOS_DURATION) $(if $(SEED),--seed $(SEED))

# The whole end-to-end suite once per SQL store (AGENTFLOW_E2E_STORE: every master on a fresh
# database of a throwaway server; tests of the embedded Raft only are skipped). Long: not part
# of `make test`; .ci/run runs it.
E2E_STORES ?= postgresql mysql
e2e-sql: $(STAMP) sysdeps
	@status=0; for store in $(E2E_STORES); do \
		echo "== tests/e2e on $$store"; \
		AGENTFLOW_E2E_STORE=$$store $(PY) -m pytest -q -n $(TEST_JOBS) tests/e2e || status=1; \
	done; exit $$status

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache agentflow-data
