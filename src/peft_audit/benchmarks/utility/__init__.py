"""Task utility: how well a variant does the task its training data teaches, measured on rows of
that data it never trained on, paired against its base model on the same rows.

* **Held-out loss** (SFT rows): per row, the mean negative log-likelihood (nats per token) of the
  response given the chat-formatted prompt, teacher-forced, the quantity SFT minimises (the
  same chat template and completion-only tokens as :mod:`peft_audit.training.sft`); lower is
  better. **Perplexity** = exp(mean held-out loss) (Jelinek et al., 1977).
* **Preference accuracy** (DPO rows): for a base model the share of rows where
  log pi(chosen) > log pi(rejected); for a variant, in its comparison with its base, the share
  where its implicit reward margin is positive, (log pi(c) - log ref(c)) - (log pi(r) - log ref(r))
  > 0 with the base as reference (Rafailov et al., 2023, "Direct Preference Optimization",
  arXiv:2305.18290, Sec. 5; TRL's ``rewards/accuracies``).

The held-out rows are those :func:`peft_audit.training.data.heldout_split` keeps from training
(``training.heldout_fraction``), chosen by a hash of each row's content before ``max_examples``
and ``safety_mix``, so a repaired variant retrained on the same data with safety demonstrations
mixed in is measured on the same rows as its original; a base model is scored on the union of
its variants' held-out rows. An adapter found on disk is measured only when its provenance
records that same split; an audited adapter only on ``utility.task_file``.

Command line: on by default for every variant a run trains::

    peft-audit run configs/quickstart.yaml --out runs/quickstart
"""
