PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install test
install:
	$(PIP) install -q -e '.[test]'

test: install
	$(PYTHON) -m pytest -q tests
