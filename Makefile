# The workbook's commands. Each target installs what it needs into .venv the first time
# (a fresh machine needs only Python >= 3.11 with pip and venv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lab refresh sample lock cloud-up cloud-down clean

run: $(STAMP)  ## the whole workbook headless on the sample: build/notebooks/ + build/summary.md
	$(BIN)/python -m helpers.workbook run $(ARGS)

test: $(STAMP)  ## unit tests, every notebook under papermill, nbval over the committed outputs
	$(BIN)/python -m pytest $(ARGS)

lab: $(STAMP)  ## JupyterLab on the notebooks, with the local cloud running
	$(BIN)/python -m localcloud up
	$(BIN)/jupyter lab notebooks/

refresh: $(STAMP)  ## re-execute notebooks and update their committed outputs (ARGS="--only 01")
	$(BIN)/python -m helpers.workbook refresh $(ARGS)

sample: $(STAMP)  ## regenerate data/sample.csv from the full real file
	$(BIN)/python -m helpers.sample $(ARGS)

cloud-up: $(STAMP)
	$(BIN)/python -m localcloud up $(ARGS)

cloud-down: $(STAMP)
	$(BIN)/python -m localcloud down $(ARGS)

bench: $(STAMP)  ## benchmarks (numbers, not pass/fail)
	$(BIN)/python -m benchmarks $(ARGS)

lock:  ## re-pin requirements.txt from requirements.in in a throwaway venv
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q -r requirements.in
	{ sed -n '1,2p' requirements.txt; .venv-lock/bin/pip freeze --exclude-editable; } > requirements.txt.new
	mv requirements.txt.new requirements.txt && rm -rf .venv-lock

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

clean:
	rm -rf build .pytest_cache
