# make lrcn   install, generate the shapes-captioning data, train LRCN (the main job)
# make lenet  install, generate the digits data, train LeNet
# make test   install with the test extras, run every test
# make gpu-check      on a GPU machine with CuPy/PyTorch preinstalled: install without
#                     downloads, GPU tests, GPU benchmarks, 50 LRCN iterations (< 8 min;
#                     logs in $OUT or ./gpu-check-logs)
# make gpu-check-fake the same steps on the fake GPU (caffelite.fakegpu), on any machine
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install install-test test lrcn lenet gpu-check gpu-check-fake
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

gpu-check:
	bash tests/gpu_check.sh

gpu-check-fake:
	DEVICE=fakegpu INSTALL=0 bash tests/gpu_check.sh
