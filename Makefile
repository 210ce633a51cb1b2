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
R_DEBS := r-base-core r-base-dev r-cran-reticulate r-cran-testthat \
	r-cran-roxygen2 r-cran-knitr r-cran-rmarkdown
R_PACKAGES := reticulate testthat roxygen2 knitr rmarkdown

export CUDA_VISIBLE_DEVICES :=
export TF_CPP_MIN_LOG_LEVEL := 2
export RETICULATE_PYTHON := $(abspath $(PY))
export R_LIBS := $(abspath $(RLIB))
# pip on this kind of machine warns about missing mirror folders; hide only that.
PIP_QUIET := grep -v "is ignored: it is neither a file nor a directory" || true

# R side: the package's own files (what `install-r` depends on), the folder
# R CMD build/check write into, and the check of Debian's R packages.
R_PKG_FILES := DESCRIPTION NAMESPACE LICENSE $(wildcard R/*.R man/*.Rd demo/*)
R_STAMP := $(RLIB)/.kerasswa-installed
R_CHECK_DIR := .Rcheck
R_BUILD_SOURCES := $(wildcard .Rbuildignore DESCRIPTION NAMESPACE LICENSE NEWS.md \
	R man demo inst data vignettes tests)
R_DEPS_PRESENT := { command -v Rscript >/dev/null 2>&1 && Rscript -e 'quit(status = !all(vapply(c($(foreach p,$(R_PACKAGES),"$(p)",)NULL), requireNamespace, TRUE, quietly = TRUE)))' >/dev/null 2>&1; }
R_TEST_DIR := testthat::test_dir("tests/testthat", package = "kerasswa", load_package = "installed", stop_on_failure = TRUE, reporter = testthat::ProgressReporter$$new(show_praise = FALSE))
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: help demo test bench test-python test-r check-r docs install-python install-r-deps install-r \
	site site-test install-site-deps

help:
	@echo "make demo   train a small model with SWA from R and compare it with plain SGD"
	@echo "make test   run every Python test (TensorFlow, JAX, PyTorch backends) and R test"
	@echo "make docs   regenerate man/ and NAMESPACE with roxygen2"
	@echo "make bench  measure the cost and benefit of SWA; writes bench/RESULTS.md (about 15 minutes)"
	@echo "make site   build the documentation site into docs/, offline, running every example"
	@echo "make site-test  open the site in headless Chromium and check every page renders"

install-python: $(PY_STAMP)

$(PY_STAMP): requirements/test.txt requirements/nodeps.txt pyproject.toml
	@test -x $(PY) || { echo "Creating $(VENV) ..."; $(PYTHON) -m venv $(VENV); }
	@echo "Installing the Python test environment into $(VENV) (first run takes a few minutes) ..."
	@$(PY) -m pip install -q -r requirements/test.txt 2>&1 | $(PIP_QUIET)
	@$(PY) -m pip install -q --no-deps -r requirements/nodeps.txt 2>&1 | $(PIP_QUIET)
	@$(PY) -c "import numpy, keras; assert int(numpy.__version__.split('.')[0]) >= 2"
	@touch $@

# Debian's R and R packages (R is not installed from CRAN here), when any is missing.
install-r-deps:
	@if ! $(R_DEPS_PRESENT); then \
		echo "Installing R and its packages from Debian (apt-get) ..."; \
		$(SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(R_DEBS) >/dev/null; \
		$(R_DEPS_PRESENT) || { echo "R packages still missing after apt-get: $(R_PACKAGES)" >&2; exit 1; }; \
	fi

install-r: $(R_STAMP)

# Installed from the working tree into $(RLIB), again only when a file of the
# package changed.
$(R_STAMP): $(R_PKG_FILES) | install-r-deps
	@mkdir -p $(RLIB)
	@echo "Installing the R package kerasswa into $(RLIB) ..."
	@R CMD INSTALL --no-multiarch --library=$(RLIB) . >$(RLIB)/install.log 2>&1 \
		|| { cat $(RLIB)/install.log; exit 1; }
	@touch $@

test-python: install-python
	@for backend in tensorflow jax torch; do \
		echo "=== pytest, KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY) -m pytest -q -p no:cacheprovider --doctest-modules python/kerasswa tests/python || exit 1; \
	done

test: test-python test-r check-r site-test

# testthat against the package installed in $(RLIB). The tests that need
# Python fail rather than skip when it is missing (KERASSWA_REQUIRE_PYTHON).
test-r: install-python install-r
	@echo "=== testthat (R), KERAS_BACKEND=tensorflow ==="
	@KERAS_BACKEND=tensorflow KERASSWA_REQUIRE_PYTHON=true Rscript -e '$(R_TEST_DIR)'

# R CMD build + check. The build starts from a copy of the R package's own
# folders (R CMD build would first copy all of .venv); .Rbuildignore still
# decides what goes into the tarball. keras3 (Suggests) cannot be installed
# here: _R_CHECK_FORCE_SUGGESTS_=false. An empty local repository stands in
# for CRAN, whose index the check would otherwise try to download. R CMD check
# exits 0 on a WARNING, so its status line decides.
check-r: install-python install-r-deps
	@rm -rf $(R_CHECK_DIR) && mkdir -p $(R_CHECK_DIR)/kerasswa
	@tar -cf - $(R_BUILD_SOURCES) | tar -xf - -C $(R_CHECK_DIR)/kerasswa
	@mkdir -p $(R_CHECK_DIR)/cran/src/contrib && touch $(R_CHECK_DIR)/cran/src/contrib/PACKAGES
	@echo 'options(repos = c(CRAN = "file://$(abspath $(R_CHECK_DIR))/cran"))' >$(R_CHECK_DIR)/Rprofile
	@echo "=== R CMD build ==="
	@cd $(R_CHECK_DIR) && R CMD build --no-build-vignettes kerasswa >build.log 2>&1 \
		|| { cat build.log; exit 1; }
	@echo "=== R CMD check --no-manual ==="
	@cd $(R_CHECK_DIR) && KERAS_BACKEND=tensorflow KERASSWA_REQUIRE_PYTHON=true \
		R_PROFILE_USER=$(abspath $(R_CHECK_DIR))/Rprofile \
		_R_CHECK_FORCE_SUGGESTS_=false _R_CHECK_SYSTEM_CLOCK_=false \
		R CMD check --no-manual kerasswa_*.tar.gz
	@if grep -qE '^Status:.*(ERROR|WARNING)' $(R_CHECK_DIR)/kerasswa.Rcheck/00check.log; then \
		echo "R CMD check found an ERROR or a WARNING: see $(R_CHECK_DIR)/kerasswa.Rcheck/00check.log" >&2; \
		exit 1; \
	fi

docs: install-r-deps
	@Rscript -e 'roxygen2::roxygenise()'

demo: install-python install-r-deps install-r
	@Rscript demo/swa-demo.R

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): requirements/bench.txt $(PY_STAMP)
	@$(PY) -m pip install -q -r requirements/bench.txt 2>&1 | $(PIP_QUIET)
	@touch $@

# Each benchmark writes bench/results/*.json; report.py turns them into
# bench/RESULTS.md and its plots.
bench: install-python $(BENCH_STAMP)
	@for backend in tensorflow jax torch; do \
		echo "=== bench/overhead.py, KERAS_BACKEND=$$backend ==="; \
		KERAS_BACKEND=$$backend $(PY_SRC) bench/overhead.py || exit 1; \
	done
	@echo "=== bench/kernel_profile.py ===" && KERAS_BACKEND=tensorflow $(PY_SRC) bench/kernel_profile.py
	@echo "=== bench/memory.py ===" && KERAS_BACKEND=tensorflow $(PY_SRC) bench/memory.py
	@echo "=== bench/quality.py ===" && KERAS_BACKEND=tensorflow $(PY_SRC) bench/quality.py
	@$(PY) bench/report.py

# The documentation site: pkgdown (Debian's) builds docs/ from README.md, man/,
# vignettes/articles/ and _pkgdown.yml, running every example and article with
# the package in $(RLIB) and Python in $(VENV). Nothing is fetched at build or
# view time: pkgdown/templates/head.html loads local copies of what pkgdown's
# template takes from CDNs, copied here from Debian's and R's installed files
# into $(SITE_BUILD)/assets/vendor/ (pkgdown copies that folder into the site).
SITE_DIR := docs
SITE_BUILD := docs-build
SITE_DEBS := r-cran-pkgdown r-cran-fontawesome r-cran-rsvg node-clipboard chromium chromium-driver
SITE_PY_STAMP := $(VENV)/.site-installed
SITE_STAMP := $(SITE_BUILD)/.built
PYTHON_API_RMD := vignettes/articles/python-api.Rmd
SITE_SOURCES := DESCRIPTION NAMESPACE README.md _pkgdown.yml $(wildcard bench/RESULTS.md) \
	$(filter-out $(PYTHON_API_RMD),$(wildcard vignettes/articles/*.Rmd)) \
	$(wildcard R/*.R man/*.Rd man/figures/* python/kerasswa/*.py pkgdown/templates/* pkgdown/assets/*) \
	pkgdown/build_site.R pkgdown/favicons.R pkgdown/python_api.py pkgdown/check_site.py

# Debian's pkgdown, Font Awesome (R package fontawesome), rsvg (the icons),
# clipboard.js (node-clipboard), Chromium and its WebDriver; Selenium into
# $(VENV).
install-site-deps: install-r-deps $(SITE_PY_STAMP)
	@missing=$$(for p in $(SITE_DEBS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "Installing from Debian (apt-get):" $$missing "..."; \
		$(SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(SITE_PY_STAMP): requirements/site.txt $(PY_STAMP)
	@$(PY) -m pip install -q -r requirements/site.txt 2>&1 | $(PIP_QUIET)
	@touch $@

site: $(SITE_STAMP)

$(SITE_STAMP): $(SITE_SOURCES) $(PY_STAMP) $(R_STAMP) | install-site-deps
	@echo "=== pkgdown site -> $(SITE_DIR)/ (log: $(SITE_BUILD)/pkgdown.log) ==="
	@rm -rf $(SITE_DIR) $(SITE_BUILD)/assets
	@mkdir -p $(SITE_BUILD)/assets/vendor/fontawesome/css $(SITE_BUILD)/assets/vendor/clipboard \
		$(SITE_BUILD)/assets/vendor/bootstrap-toc
	@fa=$$(Rscript -e 'cat(system.file("fontawesome", package = "fontawesome"))'); \
		cp $$fa/css/all.min.css $$fa/css/v4-shims.min.css $(SITE_BUILD)/assets/vendor/fontawesome/css/; \
		cp -r $$fa/webfonts $(SITE_BUILD)/assets/vendor/fontawesome/
	@cp /usr/share/nodejs/clipboard/dist/clipboard.js $(SITE_BUILD)/assets/vendor/clipboard/
	@cp "$$(Rscript -e 'cat(system.file("BS3", "assets", "bootstrap-toc.js", package = "pkgdown"))')" \
		$(SITE_BUILD)/assets/vendor/bootstrap-toc/
	@Rscript pkgdown/favicons.R
	@KERAS_BACKEND=tensorflow $(PY_SRC) pkgdown/python_api.py $(PYTHON_API_RMD) \
		2>$(SITE_BUILD)/python-api.log || { cat $(SITE_BUILD)/python-api.log; exit 1; }
	@KERAS_BACKEND=tensorflow Rscript pkgdown/build_site.R >$(SITE_BUILD)/pkgdown.log 2>&1 \
		|| { cat $(SITE_BUILD)/pkgdown.log; exit 1; }
	@$(PY) pkgdown/check_site.py $(SITE_DIR)
	@touch $@

# Headless Chromium on the built site, served from 127.0.0.1 on a free port;
# screenshots of every page visited go to $(SITE_BUILD)/screenshots/.
site-test: $(SITE_STAMP) install-site-deps
	@echo "=== site test (headless Chromium) ==="
	@timeout --kill-after=10 300 $(PY) pkgdown/site_test.py $(SITE_DIR) $(SITE_BUILD)/screenshots
