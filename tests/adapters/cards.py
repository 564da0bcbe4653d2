"""Hand-written model cards and trainer states in the styles the HF libraries generate.

Each card comes with the fields a correct parser must recover (``EXPECTED``) and nothing else:
a field absent from EXPECTED must come back unknown.
"""

# transformers.Trainer auto card for a PEFT adapter (the most informative common case).
TRAINER_LORA = """---
license: apache-2.0
library_name: peft
tags:
- generated_from_trainer
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
model-index:
- name: smollm2-lora-alpaca
  results: []
---

<!-- This model card has been generated automatically according to the information the Trainer had access to. You
should probably proofread and complete it, then remove this comment. -->

# smollm2-lora-alpaca

This model is a fine-tuned version of [HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct) on an unknown dataset.
It achieves the following results on the evaluation set:
- Loss: 1.4123

## Model description

More information needed

## Training procedure

### Training hyperparameters

The following hyperparameters were used during training:
- learning_rate: 0.0002
- train_batch_size: 4
- eval_batch_size: 8
- seed: 42
- gradient_accumulation_steps: 4
- total_train_batch_size: 16
- optimizer: Use OptimizerNames.ADAMW_TORCH with betas=(0.9,0.999) and epsilon=1e-08 and optimizer_args=No additional optimizer arguments
- lr_scheduler_type: cosine
- lr_scheduler_warmup_ratio: 0.03
- num_epochs: 3
- mixed_precision_training: Native AMP

### Training results

| Training Loss | Epoch | Step | Validation Loss |
|:-------------:|:-----:|:----:|:---------------:|
| 1.6021        | 1.0   | 125  | 1.5010          |
| 1.4410        | 2.0   | 250  | 1.4312          |
| 1.3902        | 3.0   | 375  | 1.4123          |


### Framework versions

- PEFT 0.13.2
- Transformers 4.46.3
- Pytorch 2.5.1+cu121
- Datasets 3.1.0
- Tokenizers 0.20.3
"""
TRAINER_LORA_EXPECTED = {
    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "library_name": "peft", "learning_rate": 0.0002,
    "train_batch_size": 4, "seed": 42, "gradient_accumulation_steps": 4, "total_train_batch_size": 16,
    "lr_scheduler_type": "cosine", "num_epochs": 3, "tags": ["generated_from_trainer"],
    "optimizer": "Use OptimizerNames.ADAMW_TORCH with betas=(0.9,0.999) and epsilon=1e-08 and optimizer_args=No additional optimizer arguments",
    "framework_versions": {"peft": "0.13.2", "transformers": "4.46.3", "pytorch": "2.5.1+cu121",
                           "datasets": "3.1.0", "tokenizers": "0.20.3"},
}

# TRL SFTTrainer card (trl/templates/lm_model_card.md): names the algorithm, no hyperparameters.
TRL_SFT = """---
base_model: HuggingFaceTB/SmolLM2-135M-Instruct
library_name: transformers
model_name: smollm2-sft-lora
tags:
- generated_from_trainer
- trl
- sft
licence: license
---

# Model Card for smollm2-sft-lora

This model is a fine-tuned version of [HuggingFaceTB/SmolLM2-135M-Instruct](https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct) on the [HuggingFaceH4/ultrachat_200k](https://huggingface.co/datasets/HuggingFaceH4/ultrachat_200k) dataset.
It has been trained using [TRL](https://github.com/huggingface/trl).

## Quick start

```python
from transformers import pipeline
generator = pipeline("text-generation", model="someone/smollm2-sft-lora", device_map="auto")
```

## Training procedure

[<img src="https://raw.githubusercontent.com/wandb/assets/main/wandb-github-badge-28.svg" alt="Visualize in Weights & Biases" width="150" height="24"/>](https://wandb.ai/someone/runs/abc123)

This model was trained with SFT.

### Framework versions

- TRL: 0.12.1
- Transformers: 4.46.3
- Pytorch: 2.5.1
- Datasets: 3.1.0
- Tokenizers: 0.20.3

## Citations

Cite TRL as:

```bibtex
@software{vonwerra2020trl, title = {{TRL: Transformers Reinforcement Learning}}}
```
"""
TRL_SFT_EXPECTED = {
    "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "library_name": "transformers", "algo": "sft",
    "tags": ["generated_from_trainer", "trl", "sft"],
    "framework_versions": {"trl": "0.12.1", "transformers": "4.46.3", "pytorch": "2.5.1", "datasets": "3.1.0",
                           "tokenizers": "0.20.3"},
}

# TRL DPOTrainer card with a dataset list; the algorithm appears in tags and sentence.
TRL_DPO = """---
base_model: Qwen/Qwen2.5-0.5B-Instruct
datasets: trl-lib/ultrafeedback_binarized
library_name: peft
model_name: qwen-dpo-ia3
tags:
- generated_from_trainer
- trl
- dpo
licence: license
---

# Model Card for qwen-dpo-ia3

This model is a fine-tuned version of [Qwen/Qwen2.5-0.5B-Instruct](https://huggingface.co/Qwen/Qwen2.5-0.5B-Instruct) on the [trl-lib/ultrafeedback_binarized](https://huggingface.co/datasets/trl-lib/ultrafeedback_binarized) dataset.
It has been trained using [TRL](https://github.com/huggingface/trl).

## Training procedure

This model was trained with DPO, a method introduced in [Direct Preference Optimization: Your Language Model is Secretly a Reward Model](https://huggingface.co/papers/2305.18290).

### Framework versions

- PEFT 0.14.0
- TRL: 0.13.0
- Transformers: 4.47.1
- Pytorch: 2.5.1
"""
TRL_DPO_EXPECTED = {
    "base_model": "Qwen/Qwen2.5-0.5B-Instruct", "library_name": "peft", "algo": "dpo",
    "datasets": ["trl-lib/ultrafeedback_binarized"], "tags": ["generated_from_trainer", "trl", "dpo"],
    "framework_versions": {"peft": "0.14.0", "trl": "0.13.0", "transformers": "4.47.1", "pytorch": "2.5.1"},
}

# Trainer card for a max_steps run (training_steps instead of num_epochs), scientific-notation lr,
# and a tag list naming both sft and dpo (a multi-stage run): algo must stay unknown.
TRAINER_STEPS_BOTH_ALGOS = """---
library_name: peft
base_model:
- mistralai/Mistral-7B-v0.1
tags:
- trl
- sft
- dpo
- generated_from_trainer
---

# zephyr-style-lora

### Training hyperparameters

The following hyperparameters were used during training:
- learning_rate: 5e-05
- train_batch_size: 2
- eval_batch_size: 2
- seed: 0
- distributed_type: multi-GPU
- num_devices: 8
- optimizer: Adam with betas=(0.9,0.999) and epsilon=1e-08
- lr_scheduler_type: linear
- training_steps: 1000

### Framework versions

- PEFT 0.7.1
- Transformers 4.36.2
"""
TRAINER_STEPS_BOTH_ALGOS_EXPECTED = {
    "base_model": "mistralai/Mistral-7B-v0.1", "library_name": "peft", "learning_rate": 5e-05,
    "train_batch_size": 2, "seed": 0, "optimizer": "Adam with betas=(0.9,0.999) and epsilon=1e-08",
    "lr_scheduler_type": "linear", "training_steps": 1000, "tags": ["trl", "sft", "dpo", "generated_from_trainer"],
    "framework_versions": {"peft": "0.7.1", "transformers": "4.36.2"},
}

# PEFT's own save_pretrained template, untouched by its author: metadata only in front matter.
PEFT_TEMPLATE = """---
base_model: meta-llama/Llama-2-7b-hf
library_name: peft
pipeline_tag: text-generation
tags:
- base_model:adapter:meta-llama/Llama-2-7b-hf
- lora
- transformers
---

# Model Card for Model ID

<!-- Provide a quick summary of what the model is/does. -->

## Training Details

### Training Data

[More Information Needed]

#### Training Hyperparameters

- **Training regime:** [More Information Needed] <!--fp32, fp16 mixed precision, bf16 mixed precision, bf16 non-mixed precision, fp16 non-mixed precision, fp8 mixed precision -->

### Framework versions

- PEFT 0.17.1
"""
PEFT_TEMPLATE_EXPECTED = {
    "base_model": "meta-llama/Llama-2-7b-hf", "library_name": "peft",
    "tags": ["base_model:adapter:meta-llama/Llama-2-7b-hf", "lora", "transformers"],
    "framework_versions": {"peft": "0.17.1"},
}

# A hand-edited card: no front matter, prose only; nothing is recoverable.
PROSE_ONLY = """# My cool adapter

I fine-tuned Llama on my chat logs for a couple of epochs with a small learning rate. Works great!
"""
PROSE_ONLY_EXPECTED: dict = {}

# Broken front matter (unquoted colon in a value) followed by a valid hyperparameter list.
BROKEN_FRONT_MATTER = """---
tags: [trl, sft
base_model: a: b
---

### Training hyperparameters

- learning_rate: 0.0001
- num_epochs: 2.5
- train_batch_size: not-a-number
"""
BROKEN_FRONT_MATTER_EXPECTED = {"learning_rate": 0.0001, "num_epochs": 2.5}

CARDS = {
    "trainer_lora": (TRAINER_LORA, TRAINER_LORA_EXPECTED),
    "trl_sft": (TRL_SFT, TRL_SFT_EXPECTED),
    "trl_dpo": (TRL_DPO, TRL_DPO_EXPECTED),
    "trainer_steps_both_algos": (TRAINER_STEPS_BOTH_ALGOS, TRAINER_STEPS_BOTH_ALGOS_EXPECTED),
    "peft_template": (PEFT_TEMPLATE, PEFT_TEMPLATE_EXPECTED),
    "prose_only": (PROSE_ONLY, PROSE_ONLY_EXPECTED),
    "broken_front_matter": (BROKEN_FRONT_MATTER, BROKEN_FRONT_MATTER_EXPECTED),
}

# trainer_state.json as transformers.Trainer writes it (cosine schedule, warm-up: logged lr < peak).
TRAINER_STATE = {
    "best_metric": None, "best_model_checkpoint": None, "epoch": 3.0, "eval_steps": 500, "global_step": 375,
    "is_hyper_param_search": False, "is_local_process_zero": True, "is_world_process_zero": True,
    "log_history": [
        {"epoch": 0.08, "grad_norm": 1.91, "learning_rate": 0.00017, "loss": 1.98, "step": 10},
        {"epoch": 0.8, "grad_norm": 0.77, "learning_rate": 0.000189, "loss": 1.60, "step": 100},
        {"epoch": 2.4, "grad_norm": 0.52, "learning_rate": 3.1e-05, "loss": 1.39, "step": 300},
        {"epoch": 3.0, "step": 375, "total_flos": 1.2e15, "train_loss": 1.48, "train_runtime": 812.4,
         "train_samples_per_second": 7.38, "train_steps_per_second": 0.46},
    ],
    "logging_steps": 10, "max_steps": 375, "num_input_tokens_seen": 0, "num_train_epochs": 3,
    "save_steps": 500, "stateful_callbacks": {}, "total_flos": 1.2e15, "train_batch_size": 4, "trial_name": None,
    "trial_params": None,
}
