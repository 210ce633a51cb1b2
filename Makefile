# kerasswa: `make demo` (train with SWA from R) and `make test` (every Python
# and R test). Both install what is missing first, and are quiet when it is there.

SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Python with kerasswa importable from python/, the one source (it is not
# installed into $(VENV), which stays an environment with Keras but no
# kerasswa, as a user's is): for the benchmarks and the site's API page.
PY_SRC := PYTHONPATH=$(abspath python) $(PY)
RLIB := .Rlib
PY_STAMP := $(VENV)/.installed

# R side. R and most R packages come from Debian (R_DEBS); keras3, a current
# reticulate and R's tensorflow (with the few packages they need that Debian
# lacks) from CRAN, or from the CRAN-like repository R_REPO names. Where CRAN
# cannot be reached, ../shared/cran stands in for it (as here); elsewhere
# R_REPO is CRAN, or whatever `make test R_REPO=...` says.
SHARED_CRAN := $(abspath ../shared/cran)
R_REPO ?= $(if $(wildcard $(SHARED_CRAN)/src/contrib/PACKAGES),file://$(SHARED_CRAN),https://cloud.r-project.org)
R_REPO_PACKAGES := 'reticulate (>= 1.46.0)' 'keras3 (>= 1.5.0)' 'tensorflow (>= 2.16.0)'
R_DEBS := r-base-core r-base-dev r-cran-testthat r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown \
	r-cran-rcpp r-cran-rcpptoml r-cran-matrix r-cran-here r-cran-jsonlite r-cran-png \
	r-cran-rappdirs r-cran-withr r-cran-generics r-cran-magrittr r-cran-zeallot \
	r-cran-fastmap r-cran-glue r-cran-cli r-cran-rlang r-cran-processx r-cran-yaml \
	r-cran-rstudioapi r-cran-tidyselect r-cran-backports r-cran-whisker r-cran-base64enc \
	r-cran-callr r-cran-lifecycle
# Installs those Debian packages of the list $(1) that are missing.
APT_INSTALL = missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing from Debian (apt-get):" $$missing "..."; \
		$(SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The R package ships the Python module (inst/python/kerasswa) and imports it
# from there. python/kerasswa is the one source: this copies it, as roxygen2
# writes man/; tests/python/test_packaging.py fails when the committed copy
# differs.
PY_MODULE := $(wildcard python/kerasswa/*.py)
R_PY_COPY := inst/python/kerasswa
SYNC_PY_COPY := if ! diff -rq -x __pycache__ python/kerasswa $(R_PY_COPY) >/dev/null 2>&1; then \
	rm -rf $(R_PY_COPY) && mkdir -p $(R_PY_COPY) && cp $(PY_MODULE) $(R_PY_COPY)/ && \
	echo "Copied python/kerasswa to $(R_PY_COPY) (commit it with the change)"; fi

export CUDA_VISIBLE_DEVICES :=
export TF_CPP_MIN_LOG_LEVEL := 2
export RETICULATE_PYTHON := $(abspath $(PY))
export R_LIBS := $(abspath $(RLIB))
# No __pycache__ beside the sources (python/ and its copy under inst/ must stay equal).
export PYTHONDONTWRITEBYTECODE := 1
# pip on this kind of machine warns about missing mirror folders; hide only that.
# In braces, so that `pip ... | $(PIP_QUIET)` still fails when pip does (with
# pipefail); a bare `|| true` would cover the whole pipeline.
PIP_QUIET := { grep -v "is ignored: it is neither a file nor a directory" || true; }
# TensorFlow writes a line about its oneDNN kernels (and one about absl's
# logging) to stderr when it loads, whatever TF_CPP_MIN_LOG_LEVEL says: not
# for the reader of `make demo` or of the install steps, so those two go.
TF_STARTUP_LINES := -e 'oneDNN custom operations are on' -e 'All log messages before absl::InitializeLog'

# R side: the package's own files (what `install-r` depends on) and the folder
# R CMD build/check write into.
R_PKG_FILES := DESCRIPTION NAMESPACE LICENSE $(wildcard R/*.R man/*.Rd demo/*) $(PY_MODULE)
R_STAMP := $(RLIB)/.kerasswa-installed
R_CHECK_DIR := .Rcheck
R_BUILD_SOURCES := $(wildcard .Rbuildignore DESCRIPTION NAMESPACE LICENSE NEWS.md \
	R man demo inst data vignettes tests)
# testthat on the files of tests/testthat, all of them or those $(1) selects.
R_TEST_DIR = testthat::test_dir("tests/testthat", package = "kerasswa", load_package = "installed", stop_on_failure = TRUE, reporter = testthat::ProgressReporter$$new(show_praise = FALSE)$(if $(1),$(comma) $(1)))
comma := ,
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

# The Keras backends the Python tests run on, one target each.
BACKENDS := tensorflow jax torch
PYTHON_TESTS := $(addprefix test-python-,$(BACKENDS))

.PHONY: help demo test test-parts bench test-python $(PYTHON_TESTS) test-r test-r-tensorflow test-r-jax test-r-setups test-r-oldest test-python-oldest check-r check-r-cran test-install docs install-python install-r-deps install-r \
	python-copy dist fuzz \
	site site-test install-site-deps

help:
	@echo "make demo   train a small model with SWA from R and compare it with plain SGD"
	@echo "make test   run every Python test (TensorFlow, JAX, PyTorch backends) and R test, R CMD check and the site test, four at a time"
	@echo "make docs   regenerate man/ and NAMESPACE with roxygen2"
	@echo "make bench  measure the cost and benefit of SWA; writes bench/RESULTS.md (about 50 minutes)"
	@echo "make site   build the documentation site into docs/, offline, running every example"
	@echo "make site-test  open the site in headless Chromium and check every page renders"
	@echo "make fuzz   the property-based tests with 30 examples per argument, on every backend (about 12 minutes)"
	@echo "make dist   build the Python sdist and wheel (checked by twine) and the R source tarball into dist/"
	@echo "make test-install  run the install lines of README.md, each into a new R library or virtualenv, and train once"

install-python: $(PY_STAMP)

$(PY_STAMP): requirements/test.txt requirements/nodeps.txt pyproject.toml
	@test -x $(PY) || { echo "Creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing the Python test environment into $(VENV) (first run takes a few minutes) ..."
	@$(PY) -m pip install -q -r requirements/test.txt 2>&1 | $(PIP_QUIET)
	@$(PY) -m pip install -q --no-deps -r requirements/nodeps.txt 2>&1 | $(PIP_QUIET)
	@$(PY) -c "import numpy, keras; assert int(numpy.__version__.split('.')[0]) >= 2" 2>&1 | { grep -v $(TF_STARTUP_LINES) || true; }
	@touch $@

# Debian's R and R packages, then the packages from R_REPO, each only when missing.
install-r-deps:
	@$(call APT_INSTALL,$(R_DEBS))
	@Rscript tools/install-r-packages.R $(RLIB) $(R_REPO) $(R_REPO_PACKAGES)

python-copy:
	@$(SYNC_PY_COPY)

install-r: $(R_STAMP)

# Installed from the working tree into $(RLIB), again only when a file of the
# package changed.
$(R_STAMP): $(R_PKG_FILES) | install-r-deps python-copy
	@mkdir -p $(RLIB)
	@echo "Installing the R package kerasswa into $(RLIB) ..."
	@R CMD INSTALL --no-multiarch --library=$(RLIB) . >$(RLIB)/install.log 2>&1 \
		|| { cat $(RLIB)/install.log; exit 1; }
	@touch $@

# pytest once per backend, each with PYTEST_WORKERS processes (pytest-xdist)
# and its own temporary folder (the three may run at the same time).
PYTEST_WORKERS ?= 2

test-python: $(PYTHON_TESTS)

$(PYTHON_TESTS): test-python-%: install-python
	@echo "=== pytest, KERAS_BACKEND=$* ==="
	@mkdir -p $(abspath .cache)
	@KERAS_BACKEND=$* $(PY) -m pytest -q -p no:cacheprovider --basetemp=$(abspath .cache)/pytest-$* \
		$(if $(filter-out 1,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS)) --doctest-modules python/kerasswa tests/python

# The Python tests on JAX with the oldest Keras, NumPy and JAX that kerasswa
# declares (requirements/oldest.txt), on the oldest Python it declares, in a
# virtualenv of their own (made once; every package is pinned, and pip check
# says whether the pins fit together). PYTHON_OLDEST: that Python, from pyenv
# or PATH, or as `make test-python-oldest PYTHON_OLDEST=/path/to/python3.9`.
PYTHON_OLDEST_VERSION := 3.9
PYTHON_OLDEST ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/$(PYTHON_OLDEST_VERSION).*/bin/python$(PYTHON_OLDEST_VERSION)) python$(PYTHON_OLDEST_VERSION))
OLDEST_VENV := .cache/venv-oldest
OLDEST_STAMP := $(OLDEST_VENV)/.installed

# `venv` runs Python 3.9's own pip from its wheel, which leaves a copy of its
# certificates (tmp...cacert.pem) in TMPDIR: a folder of its own, removed after.
$(OLDEST_STAMP): requirements/oldest.txt
	@$(PYTHON_OLDEST) -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] != "$(PYTHON_OLDEST_VERSION)")' 2>/dev/null || { \
		echo "test-python-oldest needs Python $(PYTHON_OLDEST_VERSION), the oldest kerasswa declares; $(PYTHON_OLDEST) is missing or another version:" \
			"install it (pyenv install $(PYTHON_OLDEST_VERSION)) or name it: make test-python-oldest PYTHON_OLDEST=/path/to/python$(PYTHON_OLDEST_VERSION)" >&2; exit 1; }
	@echo "Creating $(OLDEST_VENV) with Python $(PYTHON_OLDEST_VERSION) and the oldest versions declared (once) ..."
	@rm -rf $(OLDEST_VENV) .cache/venv-oldest-tmp && mkdir -p .cache/venv-oldest-tmp && \
		TMPDIR=$(abspath .cache)/venv-oldest-tmp $(PYTHON_OLDEST) -m venv $(OLDEST_VENV) && rm -rf .cache/venv-oldest-tmp
	@$(OLDEST_VENV)/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements/oldest.txt 2>&1 | $(PIP_QUIET)
	@broken=$$($(OLDEST_VENV)/bin/python -m pip check --disable-pip-version-check) || { echo "$$broken" >&2; exit 1; }
	@touch $@

test-python-oldest: $(OLDEST_STAMP)
	@echo "=== pytest, KERAS_BACKEND=jax, the oldest versions declared ==="
	@mkdir -p .cache
	@KERAS_BACKEND=jax $(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider --basetemp=$(abspath .cache)/pytest-oldest \
		--doctest-modules python/kerasswa tests/python

# Every test, its parts side by side: on this 2-core machine each testthat
# pass, R CMD check and the site build is one busy R process, so running
# TEST_JOBS parts at a time (pytest then with one worker per backend) keeps
# both cores busy, and the R side's installs (downloads, mostly) overlap the
# Python tests. Each part's output is printed whole when it ends.
# Everything the parts write into their temporary folder goes to $(TEST_TMP),
# which must be empty again when they end: a test run leaves nothing behind.
TEST_JOBS ?= 4
TEST_TMP := $(abspath .cache)/tmp
test:
	@rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	@TMPDIR=$(TEST_TMP) $(MAKE) --no-print-directory -j$(TEST_JOBS) --output-sync=target PYTEST_WORKERS=1 test-parts
	@left=$$(find $(TEST_TMP) -mindepth 1 -maxdepth 1); if [ -n "$$left" ]; then \
		echo "The tests left these in their temporary folder ($(TEST_TMP)):" >&2; echo "$$left" >&2; exit 1; fi

# The Python set-ups of an R user that tests/testthat/test-python-setups.R tries
# (a: RETICULATE_PYTHON, b: keras3's r-keras, c: nothing configured), made
# under a project-local folder: (b) with keras3::install_keras() (a few
# minutes, once), (c) by reticulate with the uv installed into $(VENV).
# PIP_COMPILE=false: pip leaves r-keras without byte code (compiling its 2 GB
# takes 25 s of CPU, most of it for modules the one test there never
# imports); that test's Python writes the byte code of what it imports
# (PIP_NO_COMPILE=1 would mean the opposite: pip reads it as compile = 1).
SETUP_HOME := $(abspath .cache)
R_KERAS_STAMP := $(SETUP_HOME)/virtualenvs/r-keras/.made-by-install-keras

$(R_KERAS_STAMP): | install-r-deps
	@echo "Creating r-keras with keras3::install_keras() in $(SETUP_HOME)/virtualenvs (a few minutes, once) ..."
	@mkdir -p $(SETUP_HOME)/virtualenvs
	@cd $(SETUP_HOME) && env -u RETICULATE_PYTHON WORKON_HOME=$(SETUP_HOME)/virtualenvs PIP_COMPILE=false \
		Rscript -e 'keras3::install_keras(backend = "tensorflow", gpu = FALSE, restart_session = FALSE)' \
		>$(SETUP_HOME)/install-keras.log 2>&1 || { tail -40 $(SETUP_HOME)/install-keras.log; exit 1; }
	@touch $@

# testthat against the package installed in $(RLIB), on TensorFlow and on JAX.
# The tests that need Python fail rather than skip when it is missing
# (KERASSWA_REQUIRE_PYTHON); the argument sweep (KERASSWA_SWEEP) runs in both.
# The set-up tests, which try both backends themselves, are a part of their
# own: only they wait for keras3::install_keras().
SETUP_TESTS := filter = "python-setups"
test-r: test-r-tensorflow test-r-jax test-r-setups

test-r-tensorflow: install-python install-r
	@echo "=== testthat (R), KERAS_BACKEND=tensorflow ==="
	@KERAS_BACKEND=tensorflow NOT_CRAN=true KERASSWA_REQUIRE_PYTHON=true KERASSWA_SWEEP=true \
		Rscript -e '$(call R_TEST_DIR,$(SETUP_TESTS)$(comma) invert = TRUE)'

test-r-setups: install-python install-r $(R_KERAS_STAMP)
	@echo "=== testthat (R), the Python set-ups of an R user ==="
	@KERAS_BACKEND=tensorflow NOT_CRAN=true KERASSWA_REQUIRE_PYTHON=true KERASSWA_SETUP_HOME=$(SETUP_HOME) \
		KERASSWA_SETUP_PYTHON=$(abspath $(PY)) KERASSWA_SETUP_UV=$(abspath $(VENV))/bin/uv \
		Rscript -e '$(call R_TEST_DIR,$(SETUP_TESTS))'

test-r-jax: install-python install-r
	@echo "=== testthat (R), KERAS_BACKEND=jax ==="
	@KERAS_BACKEND=jax NOT_CRAN=true KERASSWA_REQUIRE_PYTHON=true KERASSWA_SWEEP=true Rscript -e '$(R_TEST_DIR)'

# The R tests on TensorFlow against the oldest versions the DESCRIPTION
# accepts: keras3 and the R tensorflow it needs, from the Archive of R_REPO,
# in a library of their own placed before $(RLIB), which gives the other
# dependencies (reticulate's oldest accepted, 1.46.0, is the release that
# $(RLIB) holds: 1.41.0 lacks py_register_load_hook()); kerasswa is
# installed into it too. test-loading.R checks the versions loaded.
R_OLDEST_LIB := .Rlib-oldest
R_OLDEST := tensorflow 2.16.0 keras3 1.3.0
R_OLDEST_STAMP := $(R_OLDEST_LIB)/.kerasswa-installed

$(R_OLDEST_STAMP): $(R_PKG_FILES) | install-r-deps python-copy
	@Rscript tools/install-r-archived.R $(R_OLDEST_LIB) $(R_REPO) $(R_OLDEST)
	@R_LIBS=$(abspath $(R_OLDEST_LIB)):$(abspath $(RLIB)) R CMD INSTALL --no-multiarch \
		--library=$(R_OLDEST_LIB) . >$(R_OLDEST_LIB)/install.log 2>&1 || { cat $(R_OLDEST_LIB)/install.log; exit 1; }
	@touch $@

test-r-oldest: install-python $(R_OLDEST_STAMP)
	@echo "=== testthat (R) on the oldest versions accepted: $(R_OLDEST), KERAS_BACKEND=tensorflow ==="
	@R_LIBS=$(abspath $(R_OLDEST_LIB)):$(abspath $(RLIB)) KERAS_BACKEND=tensorflow NOT_CRAN=true \
		KERASSWA_REQUIRE_PYTHON=true KERASSWA_EXPECT_VERSIONS="$(R_OLDEST)" \
		Rscript -e '$(call R_TEST_DIR,$(SETUP_TESTS)$(comma) invert = TRUE)'

# The property-based tests with 30 examples per argument (make test runs 2),
# on each backend; the counts (drawn / refused / worked per argument and value
# class) are printed as a table from $(FUZZ_REPORT).
FUZZ_REPORT := .cache/fuzz-report.jsonl
fuzz: install-python
	@mkdir -p $(dir $(FUZZ_REPORT)) && rm -f $(FUZZ_REPORT)
	@for backend in tensorflow jax torch; do \
		echo "=== fuzz, KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend KERASSWA_FUZZ_EXAMPLES=30 KERASSWA_FUZZ_REPORT=$(FUZZ_REPORT) \
			timeout 1200 $(PY) -m pytest -q -p no:cacheprovider tests/python/test_properties.py || exit 1; \
	done
	@$(PY) tests/python/test_properties.py $(FUZZ_REPORT)

# R CMD build, in $(1): from a copy of the R package's own folders (R CMD build
# would first copy all of .venv); .Rbuildignore still decides what goes into
# the tarball.
R_BUILD = rm -rf $(1) && mkdir -p $(1)/kerasswa && \
	tar -cf - $(R_BUILD_SOURCES) | tar -xf - -C $(1)/kerasswa && \
	(cd $(1) && R CMD build --no-build-vignettes kerasswa >build.log 2>&1) \
	|| { cat $(1)/build.log; exit 1; }

# R CMD check --as-cran of the built tarball, twice, as CRAN and r-universe
# check it and as a developer's check runs it; each must end with no ERROR,
# WARNING or NOTE but the incoming-feasibility NOTE of a first submission
# (tools/check-log.R reads the log). Each check gets a HOME and a TMPDIR of
# its own, so that R's report of files left in HOME and /tmp
# (_R_CHECK_THINGS_IN_OTHER_DIRS_) sees only what the check itself wrote, and
# an empty local repository stands in for CRAN, whose index it would
# otherwise download.
R_TARBALL_STAMP := $(R_CHECK_DIR)/build/.built
CHECK_ENV = HOME=$(abspath $(R_CHECK_DIR))/$(1)/home TMPDIR=$(abspath $(R_CHECK_DIR))/$(1)/tmp \
	R_PROFILE_USER=$(abspath $(R_CHECK_DIR))/Rprofile _R_CHECK_CRAN_INCOMING_REMOTE_=false \
	_R_CHECK_SYSTEM_CLOCK_=false _R_CHECK_THINGS_IN_OTHER_DIRS_=true
CHECK_PREPARE = rm -rf $(R_CHECK_DIR)/$(1) && mkdir -p $(R_CHECK_DIR)/$(1)/home $(R_CHECK_DIR)/$(1)/tmp
CHECK_RUN = R CMD check --as-cran --no-manual -o $(abspath $(R_CHECK_DIR))/$(1) \
	$$(ls $(abspath $(R_CHECK_DIR))/build/kerasswa_*.tar.gz) >$(R_CHECK_DIR)/$(1)/check.log 2>&1 \
	|| { tail -40 $(R_CHECK_DIR)/$(1)/check.log; exit 1; }

$(R_TARBALL_STAMP): $(R_PKG_FILES) $(wildcard tests/testthat/*.R) NEWS.md .Rbuildignore | install-r-deps python-copy
	@echo "=== R CMD build ==="
	@$(call R_BUILD,$(R_CHECK_DIR)/build)
	@mkdir -p $(R_CHECK_DIR)/cran/src/contrib && touch $(R_CHECK_DIR)/cran/src/contrib/PACKAGES
	@echo 'options(repos = c(CRAN = "file://$(abspath $(R_CHECK_DIR))/cran"))' >$(R_CHECK_DIR)/Rprofile
	@touch $@

# (a) As CRAN and r-universe run it: no Python configured (no RETICULATE_PYTHON,
# no virtualenv, no r-keras in HOME), NOT_CRAN unset. Nothing may start
# Python: the examples and the tests that need it skip, and the check fails if
# reticulate tried to download uv or a Python, or left its cache in HOME.
check-r-cran: $(R_TARBALL_STAMP)
	@echo "=== R CMD check --as-cran, no Python (as on CRAN and r-universe) ==="
	@$(call CHECK_PREPARE,no-python)
	@env -u RETICULATE_PYTHON -u NOT_CRAN -u KERASSWA_REQUIRE_PYTHON -u VIRTUAL_ENV -u WORKON_HOME \
		-u KERAS_BACKEND PATH="$(subst $(abspath $(VENV))/bin:,,$(PATH))" $(call CHECK_ENV,no-python) \
		$(call CHECK_RUN,no-python)
	@Rscript tools/check-log.R $(R_CHECK_DIR)/no-python no-python $(R_CHECK_DIR)/no-python/home

# (b) As a developer's check runs it (NOT_CRAN=true), with the Python of
# $(VENV) on TensorFlow: every example and every R test runs inside the check
# (the tests as test-r-tensorflow runs them, argument sweep included; the
# set-up tests skip: they are test-r-setups' part). Keras's config, the font
# cache of matplotlib and uv's cache (reticulate asks uv whether the Python
# has what the packages declare) go to folders of the check, not HOME;
# TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's C++ start-up line out of the logs
# (TF_CPP_MIN_LOG_LEVEL does not silence it). The first example to run pays
# the import of TensorFlow (5-6 s of CPU); the check's own limit on example
# times is lifted (beside the other parts of `make test`, elapsed times stretch
# several-fold), and check-log.R holds every other example to CRAN's 5 s of
# CPU time.
PY_CACHES = KERAS_HOME=$(abspath $(R_CHECK_DIR))/$(1)/caches/keras \
	MPLCONFIGDIR=$(abspath $(R_CHECK_DIR))/$(1)/caches/matplotlib \
	UV_CACHE_DIR=$(abspath $(R_CHECK_DIR))/$(1)/caches/uv UV_OFFLINE=1
check-r: $(R_TARBALL_STAMP) install-python
	@echo "=== R CMD check --as-cran, with Python (NOT_CRAN=true, TensorFlow): examples and tests ==="
	@$(call CHECK_PREPARE,python)
	@env NOT_CRAN=true KERASSWA_REQUIRE_PYTHON=true KERASSWA_SWEEP=true KERAS_BACKEND=tensorflow \
		TF_ENABLE_ONEDNN_OPTS=0 _R_CHECK_EXAMPLE_TIMING_THRESHOLD_=600 \
		$(call CHECK_ENV,python) $(call PY_CACHES,python) $(call CHECK_RUN,python)
	@Rscript tools/check-log.R $(R_CHECK_DIR)/python examples 5

# The Python sdist and wheel, checked by twine (the build runs with
# byte-compiling on: setuptools warns otherwise), and the R source tarball,
# all into $(DIST_DIR)/. test-install installs them as a user would.
DIST_DIR := dist
dist: install-python install-r-deps python-copy
	@rm -rf $(DIST_DIR) && mkdir -p $(DIST_DIR)
	@$(PY) -m pip install -q -r requirements/dist.txt 2>&1 | $(PIP_QUIET)
	@echo "=== python -m build ==="
	@env -u PYTHONDONTWRITEBYTECODE $(PY) -m build --outdir $(DIST_DIR) . >$(DIST_DIR)/build.log 2>&1 || { cat $(DIST_DIR)/build.log; exit 1; }
	@if grep -in "warning" $(DIST_DIR)/build.log; then echo "python -m build warned (above)" >&2; exit 1; fi
	@$(PY) -m twine check --strict $(DIST_DIR)/kerasswa-*.whl $(DIST_DIR)/kerasswa-*.tar.gz
	@echo "=== R CMD build ==="
	@$(call R_BUILD,$(DIST_DIR)/r)
	@mv $(DIST_DIR)/r/kerasswa_*.tar.gz $(DIST_DIR)/ && rm -rf $(DIST_DIR)/r $(DIST_DIR)/build.log
	@ls $(DIST_DIR)

# The install lines of README.md, each run as written from a copy of the
# working tree into a new R library or virtualenv, each followed by a
# training run with what it installed (tools/test_install.py).
test-install: dist install-r
	@echo "=== README.md's install lines, each into a new library or virtualenv ==="
	@$(PY) tools/test_install.py $(abspath $(RLIB)) $(PYTHON)

docs: install-r-deps python-copy
	@Rscript -e 'roxygen2::roxygenise()'

demo: install-python install-r-deps install-r
	@Rscript demo/swa-demo.R 2>&1 | { grep -v $(TF_STARTUP_LINES) || true; }

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): requirements/bench.txt $(PY_STAMP)
	@$(PY) -m pip install -q -r requirements/bench.txt 2>&1 | $(PIP_QUIET)
	@touch $@

# Each benchmark writes bench/results/*.json; report.py turns them into
# bench/RESULTS.md and its plots. Each run prints how long it took. The
# profiler reads TensorFlow's traces; quality.py runs on JAX, where SWAG's
# sampling is 7 times faster.
BENCH_RUNS := overhead:tensorflow snapshot:tensorflow step_wall:tensorflow overhead:jax snapshot:jax \
	step_wall:jax overhead:torch snapshot:torch kernel_profile:tensorflow memory:tensorflow quality:jax

bench: install-python $(BENCH_STAMP)
	@for run in $(BENCH_RUNS); do \
		script=$${run%%:*}; backend=$${run#*:}; start=$$(date +%s); \
		echo "=== bench/$$script.py, KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY_SRC) bench/$$script.py || exit 1; \
		echo "=== bench/$$script.py, KERAS_BACKEND=$$backend: $$(( $$(date +%s) - start )) s"; \
	done
	@$(PY) bench/report.py

# The documentation site: pkgdown (Debian's) builds docs/ from README.md, man/,
# vignettes/articles/ and _pkgdown.yml, running every example and article with
# the package in $(RLIB) and Python in $(VENV) (the Python chunks import kerasswa
# from python/, as a reader would after `pip install kerasswa`). Nothing is fetched at build or
# view time: pkgdown/templates/head.html loads local copies of what pkgdown's
# template takes from CDNs, copied here into $(SITE_BUILD)/assets/vendor/
# (pkgdown copies that folder into the site): Font Awesome, clipboard.js and
# bootstrap-toc from Debian's and R's installed files, and the search
# (Fuse, autocomplete.js, mark.js) and headroom.js from npm, at the versions
# pinned in pkgdown/package-lock.json (those pkgdown's template names; the
# page checks each file against the hash the template gives it).
SITE_DIR := docs
SITE_BUILD := docs-build
SITE_DEBS := r-cran-pkgdown r-cran-fontawesome r-cran-rsvg node-clipboard chromium chromium-driver
SITE_PY_STAMP := $(VENV)/.site-installed
SITE_NPM := pkgdown/node_modules
SITE_NPM_STAMP := $(SITE_NPM)/.installed
# The files of $(SITE_NPM) that the pages load, as package/path.
SITE_NPM_FILES := fuse.js/dist/fuse.js autocomplete.js/dist/autocomplete.jquery.min.js \
	mark.js/dist/mark.min.js headroom.js/dist/headroom.min.js headroom.js/dist/jQuery.headroom.min.js
SITE_STAMP := $(SITE_BUILD)/.built
PYTHON_API_RMD := vignettes/articles/python-api.Rmd
SITE_SOURCES := DESCRIPTION NAMESPACE README.md NEWS.md _pkgdown.yml $(wildcard bench/RESULTS.md) \
	$(filter-out $(PYTHON_API_RMD),$(wildcard vignettes/articles/*.Rmd)) \
	$(wildcard R/*.R man/*.Rd man/figures/* python/kerasswa/*.py pkgdown/templates/* pkgdown/assets/* pkgdown/extra.*) \
	pkgdown/build_site.R pkgdown/favicons.R pkgdown/python_api.py pkgdown/check_site.py

# Debian's pkgdown, Font Awesome (R package fontawesome), rsvg (the icons),
# clipboard.js (node-clipboard), Chromium and its WebDriver; Selenium into
# $(VENV); the JavaScript libraries of pkgdown/package-lock.json into
# $(SITE_NPM) with npm (npm ci checks each package against the lock's hash):
# the machine's, or Debian's Node.js and npm where there is no npm (after
# install-r-deps: one apt-get at a time).
install-site-deps: install-r-deps $(SITE_PY_STAMP) $(SITE_NPM_STAMP)
	@$(call APT_INSTALL,$(SITE_DEBS))

$(SITE_PY_STAMP): requirements/site.txt $(PY_STAMP)
	@$(PY) -m pip install -q -r requirements/site.txt 2>&1 | $(PIP_QUIET)
	@touch $@

$(SITE_NPM_STAMP): pkgdown/package.json pkgdown/package-lock.json | install-r-deps
	@command -v npm >/dev/null || { $(call APT_INSTALL,nodejs npm); }
	@echo "Installing the site's JavaScript libraries from npm into $(SITE_NPM) ..."
	@cd pkgdown && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
	@touch $@

site: $(SITE_STAMP)

$(SITE_STAMP): $(SITE_SOURCES) $(SITE_NPM_STAMP) $(PY_STAMP) $(R_STAMP) | install-site-deps
	@echo "=== pkgdown site -> $(SITE_DIR)/ (log: $(SITE_BUILD)/pkgdown.log) ==="
	@rm -rf $(SITE_DIR) $(SITE_BUILD)/assets
	@mkdir -p $(SITE_BUILD)/assets/vendor/fontawesome/css $(SITE_BUILD)/assets/vendor/clipboard \
		$(SITE_BUILD)/assets/vendor/bootstrap-toc
	@for file in $(SITE_NPM_FILES); do \
		package=$${file%%/*}; mkdir -p $(SITE_BUILD)/assets/vendor/$$package; \
		cp $(SITE_NPM)/$$file $(SITE_NPM)/$$package/LICENSE $(SITE_BUILD)/assets/vendor/$$package/; \
	done
	@fa=$$(Rscript -e 'cat(system.file("fontawesome", package = "fontawesome"))'); \
		cp $$fa/css/all.min.css $$fa/css/v4-shims.min.css $(SITE_BUILD)/assets/vendor/fontawesome/css/; \
		cp -r $$fa/webfonts $(SITE_BUILD)/assets/vendor/fontawesome/
	@cp /usr/share/nodejs/clipboard/dist/clipboard.js $(SITE_BUILD)/assets/vendor/clipboard/
	@cp "$$(Rscript -e 'cat(system.file("BS3", "assets", "bootstrap-toc.js", package = "pkgdown"))')" \
		$(SITE_BUILD)/assets/vendor/bootstrap-toc/
	@Rscript pkgdown/favicons.R
	@KERAS_BACKEND=tensorflow $(PY_SRC) pkgdown/python_api.py $(PYTHON_API_RMD) \
		2>$(SITE_BUILD)/python-api.log || { cat $(SITE_BUILD)/python-api.log; exit 1; }
	@KERAS_BACKEND=tensorflow PYTHONPATH=$(abspath python) Rscript pkgdown/build_site.R >$(SITE_BUILD)/pkgdown.log 2>&1 \
		|| { cat $(SITE_BUILD)/pkgdown.log; exit 1; }
	@$(PY) pkgdown/check_site.py $(SITE_DIR)
	@touch $@

# Headless Chromium on the built site, served from 127.0.0.1 on a free port;
# screenshots of every page visited go to $(SITE_BUILD)/screenshots/.
site-test: $(SITE_STAMP) install-site-deps
	@echo "=== site test (headless Chromium) ==="
	@timeout --kill-after=10 300 $(PY) pkgdown/site_test.py $(SITE_DIR) $(SITE_BUILD)/screenshots

# The parts of `make test`, defined last because they name the stamps above:
# what the parts need first (make starts whatever is ready, in this order),
# then the longest parts first, so that none is left running alone at the end.
test-parts: install-python install-r install-site-deps $(R_KERAS_STAMP) \
	check-r test-python-tensorflow test-python-jax site-test test-r-setups \
	test-python-torch test-r-jax test-r-oldest test-python-oldest test-install check-r-cran
