# The two commands of the README. Both create .venv and install first (pinned by constraints.txt).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test install clean bench

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# A real discovery campaign on the embedded defaults: SQLite (./discovery.db), local Prefect,
# offline proposer, local sandbox (bubblewrap when installed, else process limits).
run: $(STAMP)
	$(BIN)/discovery run erdos_min_overlap --chains 4 --k 4 --budget 256 --seed 0

# The whole test suite.
test: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/sandbox_overhead.py
	$(BIN)/python bench/db_writes.py
	$(BIN)/python bench/export_scale.py
	$(BIN)/python bench/dashboard_scale.py
	$(BIN)/python bench/vs_openevolve.py
	$(BIN)/python bench/search_efficiency.py
	$(BIN)/python bench/reward_throughput.py

clean:
	rm -rf $(VENV) *.egg-info
