PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
DEMO_DIR := demo

.PHONY: install dev demo test bench bench-short clean

# The stamp files make `make demo` and `make test` the whole set-up on a fresh machine,
# and a no-op afterwards unless pyproject.toml changed.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Older radicli and plac (what Prodigy builds recipe command lines with) go beside the venv, one
# folder each, for the recipe's command-line tests to put first on PYTHONPATH.
$(VENV)/.installed-dev: $(VENV)/.installed tests/prodigy_cli_versions.txt tests/server_floor_versions.txt
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -rf $(VENV)/compat
	for spec in $$(grep -v '^#' tests/prodigy_cli_versions.txt); do \
		$(BIN)/python -m pip install --quiet --no-deps --target "$(VENV)/compat/$$(echo $$spec | sed 's/==/-/')" "$$spec" || exit 1; \
	done
	grep -v '^#' tests/server_floor_versions.txt | while read -r specs; do \
		first=$$(echo $$specs | cut -d' ' -f1 | sed 's/==/-/'); \
		$(BIN)/python -m pip install --quiet --no-deps --target "$(VENV)/compat/$$first" $$specs || exit 1; \
	done
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

$(DEMO_DIR)/colours.jsonl: $(VENV)/.installed scripts/make_colour_pool.py
	mkdir -p $(DEMO_DIR)
	$(BIN)/python scripts/make_colour_pool.py --n 2000 --seed 0 --out $@

demo: $(VENV)/.installed $(DEMO_DIR)/colours.jsonl
	$(BIN)/retrain-loop serve colours $(DEMO_DIR)/colours.jsonl \
		--label red,orange,yellow,green,cyan,blue,purple,pink,brown,grey,black,white \
		--features r,g,b --view colour --db $(DEMO_DIR)/colours.db --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

$(VENV)/.installed-bench: $(VENV)/.installed-dev
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

# Each script rewrites its own section of BENCHMARKS.md; the learning suite also redraws
# docs/bench/*.png and runs the peers (modAL, scikit-activeml) in scripts/peers/.venv.
bench: $(VENV)/.installed-bench
	$(BIN)/python scripts/bench_refit.py
	$(BIN)/python scripts/bench_refit.py --versus
	$(BIN)/python scripts/bench_latency.py
	$(BIN)/python scripts/bench_learning.py --jobs 2
	$(BIN)/python scripts/learning_report.py
	$(BIN)/python scripts/bench_calibration.py
	$(BIN)/python scripts/bench_trust.py --jobs 2

# The same benchmarks in a few minutes; bench_learning.py --short writes its report under
# bench_results/ so that it never replaces the committed learning curves.
bench-short: $(VENV)/.installed-bench
	$(BIN)/python scripts/bench_refit.py --repeats 3
	$(BIN)/python scripts/bench_latency.py --short
	$(BIN)/python scripts/bench_learning.py --short
	$(BIN)/python scripts/bench_trust.py --seeds 2 --budget 100 --jobs 2 \
		--out bench_results/trust/short/BENCHMARKS.md

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
