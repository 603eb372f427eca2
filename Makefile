# make lrcn   install, generate the shapes-captioning data, train LRCN (the main job)
# make lenet  install, generate the digits data, train LeNet
# make test   install with the test extras, run every test
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test test lrcn lenet
install:
	$(PIP) install -q -e .

install-test:
	$(PIP) install -q -e '.[test,mpi,bench,onnx]'

test: install-test
	$(PYTHON) -m pytest -q tests

lrcn: install
	$(PYTHON) tools/prepare_lrcn_data.py
	$(PYTHON) -m caffelite train --solver prototxt/lrcn_solver.prototxt

lenet: install
	$(PYTHON) tools/make_digits.py
	$(PYTHON) -m caffelite train --solver prototxt/lenet_solver.prototxt
