# spotdiff: `make demo` runs the default comparison, `make test` runs the test suite.
# Both create .venv and install the pinned, tested versions (constraints.txt) on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.spotdiff-installed

.PHONY: install demo test chromium bench bench-demo bench-where bench-serving bench-gpt clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[all,test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spotdiff run

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# The browser test of report.html drives Debian's chromium (DejaVu: the font the plots are laid out
# in). Installed where missing if apt-get can (CI runs as root); elsewhere that test skips, unless CI=true.
chromium:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-dejavu-core; \
	fi

bench: $(STAMP)
	$(BIN)/python bench/exponent_bench.py --steps 1000 --rounds 2 --repeats 3 --write BENCHMARKS.md
	$(BIN)/python bench/digits_bench.py --epochs 5 --repeats 2 --write BENCHMARKS.md
	$(BIN)/python bench/keras_bench.py --steps 500 --epochs 3 --repeats 2 --write BENCHMARKS.md
	$(BIN)/python bench/gpt_bench.py --steps 30 --repeats 2 --write BENCHMARKS.md \
		--only torch-eager,torch-compile,tensorflow-graph,tensorflow-xla,jax-jit,keras-jax-jit

# GPT: every gpt cell (Keras on all three backends too) next to its nanoGPT-style script, 2 repeats
# (about 20 minutes at the default sizes); run it alone.
bench-gpt: $(STAMP)
	$(BIN)/python bench/gpt_bench.py --steps 30 --repeats 2 --write BENCHMARKS.md

# The default run (make demo) three times, its per-cell breakdown, and spotdiff compare of it against
# itself, the next run and a --threads 1 run (about 8 minutes); run it alone.
bench-demo: $(STAMP)
	$(BIN)/python bench/demo_bench.py --runs 3 --write BENCHMARKS.md

# What spotdiff where's recording costs per task and framework (seconds, peak memory); run it alone.
bench-where: $(STAMP)
	$(BIN)/python bench/where_bench.py --write BENCHMARKS.md

# Serving: spotdiff loadtest (REST, gRPC, Flask baseline, LiteRT) of every exported digit model; run it alone.
bench-serving: $(STAMP)
	$(BIN)/python bench/serving_bench.py --write BENCHMARKS.md

clean:
	rm -rf $(VENV) runs .pytest_cache
