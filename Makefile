# Set-up is pinned to the CPU build of torch so that a fresh machine does not pull a CUDA build
# (pyproject.toml itself asks only for torch>=2.1).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
# Torch's idle OpenMP threads spin by default, which slows everything when the machine is busy.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: test demo docs venv clean wheel-check

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"

# the package with what training and the demo need
$(VENV)/.installed-train: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[train]" "$(TORCH)"
	touch $@

# ... and the test references (Keras 3, onnxruntime, scikit-image)
$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[test]" "$(TORCH)"
	touch $@

venv: $(VENV)/.installed-test

test: $(VENV)/.installed-test
	KERAS_BACKEND=torch $(PY) -m pytest -q

# the documentation site from docs/ and the docstrings (the API pages import the toolkit, hence train
# and onnx); --strict turns a broken link or reference into an error
$(VENV)/.installed-docs: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[docs,train,onnx]" "$(TORCH)"
	touch $@

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# the wheel and the source archive as a user gets them: built (python -m build), checked (twine check),
# the wheel installed with [train] and the pinned torch into a fresh environment, and its `convlstm`
# command run from an empty folder (tools/wheel_smoke.sh: --version, models, config, fit --help, a
# 1-epoch fit with its evaluation, a forecast)
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
WHEEL_VENV ?= build/wheel-check-venv

$(VENV)/.installed-build: | $(PY)
	$(PY) -m pip install -q build twine
	touch $@

wheel-check: $(VENV)/.installed-build
	rm -rf dist $(WHEEL_VENV)
	$(PY) -m build --outdir dist .
	$(VENV)/bin/twine check --strict dist/*
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install -q "$(TORCH)" "dist/convlstm-$(VERSION)-py3-none-any.whl[train]"
	bash tools/wheel_smoke.sh $(WHEEL_VENV) $(VERSION)

demo: $(VENV)/.installed-train
	$(VENV)/bin/convlstm demo

clean:
	rm -rf $(VENV) runs build dist site src/*.egg-info
