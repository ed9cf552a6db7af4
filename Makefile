# Two entry points for a fresh machine: `make demo` and `make test` (CI runs `make test`).
# pip only: the pinned torch/torchvision wheels are served from this machine's local disk.
VENV    ?= .venv
PY      := $(VENV)/bin/python
DEMO_DB ?= demo_db
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-fast sample clean

$(VENV)/.base: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

# the page's browser tests drive Debian's chromium (Playwright's own browser download fails here)
$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(PY) -m pip install -q -e '.[test]'
	command -v chromium >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
	touch $@

demo: $(VENV)/.base
	$(PY) -m egorag.cli index benchmarks/data/sample.mp4 --db $(DEMO_DB)
	$(PY) -m egorag.cli search "how does lava burst out of a mountain" --db $(DEMO_DB) -k 3
	$(PY) -m egorag.cli search "recipe for making a loaf at home" --db $(DEMO_DB) -k 3
	$(PY) -m egorag.cli search "which planet has over a hundred satellites" --db $(DEMO_DB) -k 3

test: $(VENV)/.test
	$(PY) -m pytest -m "not gpu"

test-fast: $(VENV)/.test
	$(PY) -m pytest -m "not slow and not gpu"

# Regenerating the sample needs espeak-ng (apt-get install espeak-ng); the result is committed.
sample: $(VENV)/.base
	$(PY) benchmarks/data/make_videos.py sample

clean:
	rm -rf $(DEMO_DB) .pytest_cache
