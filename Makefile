# VTO Stream. `make demo` and `make test` do every set-up step themselves (venvs, Kafka jars, Triton, models).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
CACHE := .cache
VTO := $(VENV)/bin/vto
DATA_DIR ?= $(abspath ../shared/data)
export VTO_DATA_DIR ?= $(DATA_DIR)
MEDIAPIPE_WHEEL := $(CACHE)/wheels/mediapipe-0.10.14-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
MODELS := triton_repo/pose_detection/1/model.onnx \
  triton_repo/pose_landmark_full/1/model.onnx \
  triton_repo/face_detection_short_range/1/model.onnx \
  triton_repo/face_landmark/1/model.onnx \
  triton_repo/iris_landmark/1/model.onnx \
  triton_repo/palm_detection_full/1/model.onnx \
  triton_repo/hand_landmark_full/1/model.onnx \
  triton_repo/selfie_segmentation/1/model.onnx \
  triton_repo/tryon/1/canonical_face_model.npz

.PHONY: help setup models up down status demo test test-unit test-integration lint protos check-protos clean

help:
	@echo "make demo | test | setup | models | up | down | status | lint | protos | clean"

# The application's venv (Python 3.11): the worker, the CLI and the test tools, pinned by requirements/app.lock.
$(VENV)/.stamp: pyproject.toml requirements/app.lock
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c requirements/app.lock -e '.[dev]'
	touch $@

# The Triton models' own venv: numpy<2 is required by the python backend's numpy route (FIELD_NOTES §1).
$(CACHE)/venv-models/.stamp: requirements/models.lock
	$(PYTHON) -m venv $(CACHE)/venv-models
	$(CACHE)/venv-models/bin/pip install -q -r requirements/models.lock
	touch $@

# Throwaway venv for the TFLite -> ONNX conversion (tensorflow-cpu + tf2onnx, ~1.6 GB, cached).
$(CACHE)/venv-convert/.stamp: requirements/convert.lock
	$(PYTHON) -m venv $(CACHE)/venv-convert
	$(CACHE)/venv-convert/bin/pip install -q -r requirements/convert.lock
	touch $@

$(MEDIAPIPE_WHEEL):
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
	  --platform manylinux_2_17_x86_64 -d $(CACHE)/wheels mediapipe==0.10.14

setup: $(VENV)/.stamp $(CACHE)/venv-models/.stamp

# Idempotent: build_models.py skips a model whose inputs (wheel, script, converter) hash the same.
models: $(CACHE)/venv-convert/.stamp $(CACHE)/venv-models/.stamp $(MEDIAPIPE_WHEEL)
	$(CACHE)/venv-convert/bin/python tools/build_models.py --wheel $(MEDIAPIPE_WHEEL) \
	  --photo $(DATA_DIR)/keypoints/tfjs_pose_yoga/pose.jpg \
	  --face-photo $(DATA_DIR)/keypoints/tfjs_portrait_face/portrait.jpg \
	  --hand-photo $(DATA_DIR)/people/images/rembg_arms_up_sunglasses_cap.jpg 2> >(grep -vE "^(WARNING|I0000|W0000)|oneDNN|cpu_feature|rebuild TensorFlow" >&2)

up: setup models
	$(VTO) stack up

down:
	@if [ -x $(VTO) ]; then $(VTO) stack down; fi

status: setup
	$(VTO) stack status

demo: setup models
	$(VTO) demo

test: setup models
	$(VENV)/bin/pytest

test-unit: setup
	$(VENV)/bin/pytest tests/unit

lint: setup
	$(VENV)/bin/ruff check streams tests tools loadtest
	$(VENV)/bin/mypy streams tools loadtest

protos: setup
	$(VENV)/bin/python tools/gen_protos.py

check-protos: setup
	$(VENV)/bin/python tools/gen_protos.py --check

clean: down
	rm -rf $(VENV) $(CACHE) out $(MODELS) triton_repo/*/1/model.build.json
