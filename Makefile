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

KUSTOMIZE_VERSION := v5.5.0
KUSTOMIZE := $(CACHE)/bin/kustomize

.PHONY: help setup models up up-observed down status demo bench torch-check gpu-bundle test test-unit test-integration lint protos check-protos \
  prometheus chromium kustomize k8s k8s-check model-repo clean

help:
	@echo "make demo | test | bench | torch-check | gpu-bundle | setup | models | up | up-observed | down | status | lint | protos | k8s | k8s-check | model-repo | clean"

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

# The stack plus Prometheus (Debian's package) scraping the workers and Triton with k8s/'s alert and SLO rules.
up-observed: setup models prometheus
	$(VTO) stack up --with-prometheus

down:
	@if [ -x $(VTO) ]; then $(VTO) stack down; fi

status: setup
	$(VTO) stack status

demo: setup models prometheus
	$(VTO) demo

# The CPU benchmark (loadtest/bench.py): the pipeline under an open-loop load and the same work in-process, side by
# side; each run's results in loadtest/results/bench/<time>/, the comparison on the last line.
bench: setup models
	$(VENV)/bin/python -m loadtest.bench

# The GPU path, opt-in (not part of `make test`): the perception models as PyTorch modules (onnx2torch) in a venv of
# its own (~5.7 GB); their parity with onnxruntime, and the bare-GPU-host load test run here on the CPU (a dry run).
$(CACHE)/venv-torch/.stamp: requirements/torch.lock
	$(PYTHON) -m venv $(CACHE)/venv-torch
	$(CACHE)/venv-torch/bin/pip install -q -r requirements/torch.lock
	touch $@

torch-check: setup models $(CACHE)/venv-torch/.stamp
	$(CACHE)/venv-torch/bin/python loadtest/torch_parity.py
	$(VENV)/bin/python tools/gpu_bundle.py --python 3.11 --out $(CACHE)/gpu-bundle-cpu
	$(CACHE)/venv-torch/bin/python loadtest/gpu_host.py --bundle $(CACHE)/gpu-bundle-cpu --device cpu --instances 1 \
	  --sessions 1 2 --seconds 8 --label cpu-torch

# What a bare GPU host with Python 3.12 and torch needs (tools/gpu_bundle.py), in parts of at most 54 MiB; on the
# host: python3 loadtest/gpu_host.py --bundle .cache/gpu-bundle --label h200 (docs/performance.md, "GPU").
gpu-bundle: setup models
	$(VENV)/bin/python tools/gpu_bundle.py --python 3.12 --out $(CACHE)/gpu-bundle

test: setup models prometheus chromium $(KUSTOMIZE)
	$(VENV)/bin/pytest

test-unit: setup $(KUSTOMIZE)
	$(VENV)/bin/pytest tests/unit

# Prometheus and promtool (Debian's package `prometheus`): installed when missing and this is root (CI); otherwise
# say how, and the tests that need them are skipped outside CI.
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; \
	  else echo "note: Prometheus is not installed (sudo apt-get install prometheus): its tests are skipped"; fi; }

# Debian's Chromium for the browser test (tests/e2e/test_browser.py drives it; no browser is downloaded).
chromium:
	@[ -x /usr/bin/chromium ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	  else echo "note: Chromium is not installed (sudo apt-get install chromium): the browser test is skipped"; fi; }

# kustomize for k8s/ (tools/k8s_check.py, tests/unit/test_k8s.py), from the Go module proxy (Go >= 1.22.7).
$(KUSTOMIZE):
	GOBIN=$(abspath $(CACHE)/bin) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

kustomize: $(KUSTOMIZE)

# Regenerate what k8s/ and triton_repo/ derive from Python (KafkaTopic/KafkaUser files, ONNX model configs).
k8s: setup
	$(VENV)/bin/python tools/gen_k8s.py
	$(VENV)/bin/python tools/triton_configs.py

# Every overlay built and validated offline (Kubernetes schemas, the operators' CRDs, the project's own rules).
k8s-check: setup $(KUSTOMIZE)
	$(VENV)/bin/python tools/gen_k8s.py --check
	$(VENV)/bin/python tools/triton_configs.py --check
	KUSTOMIZE=$(KUSTOMIZE) $(VENV)/bin/python tools/k8s_check.py

# The production Triton model repository (ONNX Runtime + TensorRT FP16 on the GPU), to upload (k8s/README.md).
model-repo: models
	rm -rf out/model-repo
	$(CACHE)/venv-models/bin/python tools/triton_configs.py --target production --out out/model-repo

lint: setup
	$(VENV)/bin/ruff check streams tests tools loadtest
	$(VENV)/bin/mypy streams tools loadtest

protos: setup
	$(VENV)/bin/python tools/gen_protos.py

check-protos: setup
	$(VENV)/bin/python tools/gen_protos.py --check

clean: down
	rm -rf $(VENV) $(CACHE) out $(MODELS) triton_repo/*/1/model.build.json
