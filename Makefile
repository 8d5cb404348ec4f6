# Quick start: `make run` opens the app, `make test` runs the whole suite
# offscreen. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# byte-compile our sources, as a pip install (not editable) does: the first window does not
# compile ~70 modules on every start where PYTHONDONTWRITEBYTECODE is set (~0.2 s here)
PYC = $(BIN)/python -m compileall -q app engine widgets backprop_lab/__init__.py > /dev/null

.PHONY: run test fuzz bench contract screenshot clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,digits,lightning,transformers,tensorboard]'
	$(PYC)
	touch $(STAMP)

run: $(STAMP)
	$(PYC)
	$(BIN)/backprop-lab

test: $(STAMP)
	cd $(CURDIR) && $(BIN)/lint-imports --no-cache
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

# The shared contract check (../shared/checks/contract.py). Not part of `make test`:
# as shipped it calls np.array_equal(..., equal_nan=True) on the record's text
# arrays, which numpy refuses with a TypeError for any valid record.
contract: $(STAMP)
	$(BIN)/python ../shared/checks/contract.py $(BIN)/backprop-lab .

# Long robustness runs (not CI): thousands of hypothesis cases per property (FUZZ=1), the
# GUI monkey test with thousands of actions, and the diagnosis sweep; prints counts.
fuzz: $(STAMP)
	FUZZ=1 QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -p no:cacheprovider -o faulthandler_timeout=0 \
		--hypothesis-show-statistics tests/test_fuzz.py tests/test_diagnosis_alarms.py \
		$(wildcard tests/test_monkey.py) tests/test_long_run.py

bench: $(STAMP)
	$(PYC)
	OMP_NUM_THREADS=1 $(BIN)/python tests/bench/bench_probe_overhead.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python tests/bench/bench_window.py
	OMP_NUM_THREADS=1 $(BIN)/python tests/bench/bench_watch_overhead.py

screenshot: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python tools/screenshot.py docs/screenshot.png

clean:
	rm -rf $(VENV) build *.egg-info
