# Set-up is pinned to the CPU build of torch so that a fresh machine does not pull a CUDA build.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0

.PHONY: test demo venv clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]" "$(TORCH)"
	touch $@

venv: $(VENV)/.installed

test: venv
	KERAS_BACKEND=torch $(PY) -m pytest -q

demo: venv
	$(VENV)/bin/convlstm demo

clean:
	rm -rf $(VENV) runs build dist src/*.egg-info
