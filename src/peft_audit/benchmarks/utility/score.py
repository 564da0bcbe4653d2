"""Teacher-forced log-likelihood of held-out rows through the variant's backend
(:meth:`~peft_audit.models.backends.base.LanguageModel.loglikelihood`; with transformers, the
project's scoring path: vocabulary logits only where a token is scored, prompt-learning
adapters' virtual tokens handled there)."""

from __future__ import annotations

from collections.abc import Callable

from ...models.backends.base import LanguageModel
from .tasks import HeldoutRow


def chat_pair(lm: LanguageModel, prompt_msgs: list[dict], completion: str) -> tuple[str, str]:
    """(prompt text, completion text) as the SFT and DPO trainers see a conversational row: the
    chat template over the prompt turns with the generation prompt, and what the template adds
    for the assistant turn after it (the response and its end-of-turn tokens). Without a chat
    template: ``User: ...\\nAssistant: `` and the response, as :func:`~peft_audit.training.sft.to_trl_rows`."""
    if not lm.has_chat_template:
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in prompt_msgs) + "Assistant: "
        return text, completion
    prompt = lm.apply_chat_template(prompt_msgs, add_generation_prompt=True)
    full = lm.apply_chat_template([*prompt_msgs, {"role": "assistant", "content": completion}],
                                  add_generation_prompt=False)
    return prompt, (full[len(prompt):] if full.startswith(prompt) else completion)


def _prompt_and_options(lm: LanguageModel, r: HeldoutRow) -> tuple[str, list[str]]:
    row = r.row
    if "messages" in row:
        msgs, options = row["messages"][:-1], [row["messages"][-1]["content"]]
    else:
        msgs = [{"role": "user", "content": row["prompt"]}]
        options = [row["response"]] if r.algo == "sft" else [row["chosen"], row["rejected"]]
    pairs = [chat_pair(lm, msgs, o) for o in options]
    return pairs[0][0], [c for _, c in pairs]


def score_rows(lm: LanguageModel, rows: list[HeldoutRow], *, batch_size: int | str = "auto",
               progress: Callable[[int], None] | None = None) -> list[dict]:
    """Sample rows for the store, one per held-out row: ``{benchmark, sample_id, category,
    payload}``; payload ``algo`` and, for SFT, ``logp`` (summed log-probability of the response's
    tokens, nats), ``n_tokens`` and ``loss`` = -logp / n_tokens; for DPO ``logp_chosen``,
    ``logp_rejected`` and their ``n_tokens_*``. Empty input gives []."""
    from .config import NAME

    if not rows:
        return []
    chat = lm.has_chat_template
    prompts, options = zip(*(_prompt_and_options(lm, r) for r in rows))
    prompts, options = list(prompts), [list(o) for o in options]
    # a rendered chat template holds its special tokens already
    lengths = lm.token_counts(prompts, options, add_special_tokens=not chat)
    scores = lm.loglikelihood(prompts, options, batch_size=batch_size, progress=progress, add_special_tokens=not chat)
    out = []
    for r, lp, n in zip(rows, scores, lengths):
        if r.algo == "sft":
            payload = {"algo": "sft", "logp": lp[0], "n_tokens": n[0], "loss": -lp[0] / n[0]}
        else:
            payload = {"algo": "dpo", "logp_chosen": lp[0], "logp_rejected": lp[1], "n_tokens_chosen": n[0],
                       "n_tokens_rejected": n[1]}
        out.append({"benchmark": NAME, "sample_id": r.sample_id, "category": r.category, "payload": payload})
    return out
