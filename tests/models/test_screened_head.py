"""The bfloat16-screened greedy head (``models/screened_head.py``) picks exactly the float32
head's first-maximum token: on random and adversarial hidden states (exact ties, near-ties,
non-finite values, a vocabulary that does not fill its groups), and inside generation, where
greedy answers equal those of the plain head for base models, mixed LoRA batches and prompt
tuning. It applies only where its bound holds."""

import pytest
import torch

import peft_audit.models.generate as generation
from peft_audit.models import kernels
from peft_audit.models import screened_head as sh
from peft_audit.models.generate import BASE_ROWS, generate
from peft_audit.models.packed_weights import DISABLE_ENV, packed_linears
from tiny_models import make_lively_tiny_model, with_and_without, with_lora

pytestmark = pytest.mark.skipif(not kernels.bf16_native(), reason="this CPU has no native bfloat16 products")


def _head(vocab: int, width: int, seed: int = 0, scale: float = 0.1) -> torch.nn.Linear:
    torch.manual_seed(seed)
    head = torch.nn.Linear(width, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, width) * scale * (0.2 + torch.rand(vocab, 1)))
    return head


def _reference(head: torch.nn.Linear, hidden: torch.Tensor) -> torch.Tensor:
    return head(hidden).max(dim=-1).indices


@pytest.mark.parametrize("vocab,width", [(4096, 64), (1000, 48), (50, 16)])  # 1000, 50: padded groups
def test_screened_tokens_equal_the_float32_heads_on_random_states(vocab, width):
    head = _head(vocab, width)
    screened = sh.ScreenedHead(head)
    with torch.inference_mode():
        for seed in range(20):
            g = torch.Generator().manual_seed(seed)
            # peaked and flat rows: from one clear winner to many near-equal logits
            hidden = torch.randn(33, width, generator=g) * torch.rand(33, 1, generator=g) * (1 + seed)
            assert torch.equal(screened.next_tokens(hidden), _reference(head, hidden))


def test_exact_ties_give_the_first_maximum_and_near_ties_the_float32_order():
    head = _head(2048, 32)
    with torch.no_grad():
        head.weight[700] = head.weight[1500] = 2.0  # the same row twice: an exact tie
        head.weight[900] = 1.9
        head.weight[901] = 1.9 * (1 + 2.0 ** -22)  # a near-tie, below bfloat16's resolution
    screened = sh.ScreenedHead(head)
    hidden = torch.ones(3, 32)
    hidden[1] *= -1  # another winner
    with torch.inference_mode():
        got = screened.next_tokens(hidden)
        assert torch.equal(got, _reference(head, hidden))
        assert got[0].item() == 700  # the first of the tied maxima, as argmax gives
    # near-tie alone: 900 and 901 the largest pair
    with torch.no_grad():
        head.weight[700] = head.weight[1500] = 0.0
    screened = sh.ScreenedHead(head)
    with torch.inference_mode():
        assert screened.next_tokens(hidden[:1]).item() == _reference(head, hidden[:1]).item() == 901


def test_logits_closer_than_bfloat16_can_tell_apart():
    """Every row of the head is one vector plus a perturbation about bfloat16's resolution: the
    bfloat16 product ranks them by rounding noise (its argmax is wrong in nearly every row), so
    only a bound that covers that noise keeps the float32 winner among the candidates (a bound
    50 times too small fails here)."""
    for seed in range(3):
        torch.manual_seed(seed)
        base = torch.randn(64)
        head = torch.nn.Linear(64, 3000, bias=False)
        with torch.no_grad():
            head.weight.copy_(base + 5e-3 * torch.randn(3000, 64))
        screened = sh.ScreenedHead(head)
        hidden = base[None, :] * torch.linspace(0.5, 3, 24)[:, None] + 0.05 * torch.randn(24, 64)
        with torch.inference_mode():
            assert torch.equal(screened.next_tokens(hidden), _reference(head, hidden))


def test_equal_sums_in_another_order_are_left_to_the_float32_head():
    """Rows that are permutations of one another have the same exact product with an all-ones
    state; only float32 rounding, which depends on the kernel's summation order, separates them.
    The screen's own float32 sums must not decide such rows: the float32 head does."""
    for seed in range(8):
        g = torch.Generator().manual_seed(seed)
        values = torch.randn(96, generator=g) * 10 ** torch.empty(96).uniform_(-3, 1, generator=g)
        rows = torch.stack([values[torch.randperm(96, generator=g)] for _ in range(40)])
        head = torch.nn.Linear(96, 1000, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.cat([rows, -rows.abs()[:1].expand(960, 96)]))
        screened = sh.ScreenedHead(head)
        hidden = torch.ones(5, 96) * torch.tensor([[1.0], [3.0], [0.7], [11.0], [2.0]])
        with torch.inference_mode():
            assert torch.equal(screened.next_tokens(hidden), _reference(head, hidden))


def test_non_finite_rows_take_the_float32_head():
    head = _head(4096, 64)
    screened = sh.ScreenedHead(head)
    hidden = torch.randn(4, 64)
    hidden[1, 3] = float("nan")
    hidden[2, 0] = float("inf")
    with torch.inference_mode():
        assert torch.equal(screened.next_tokens(hidden), _reference(head, hidden))


def test_the_bound_covers_bfloat16_rounding():
    """The screen's bound is at least the rounding of inputs and output (3 units of bfloat16's
    roundoff) and at most a little more: a wrong constant would either drop the argmax or keep
    most of the vocabulary."""
    c = sh.screen_bound(576)
    assert 3 * 2.0 ** -8 < c < 3.2 * 2.0 ** -8


def test_a_changed_weight_is_screened_afresh(monkeypatch):
    model, _ = make_lively_tiny_model()
    cpu = torch.device("cpu")
    first = sh.screened_head(model, cpu)
    assert first is not None and sh.screened_head(model, cpu) is first
    with torch.no_grad():
        model.lm_head.weight.data.mul_(-1)  # through .data: the version counter stays
    second = sh.screened_head(model, cpu)
    assert second is not first and second.current()


def test_where_the_screen_does_not_apply(monkeypatch):
    from peft import LoraConfig, get_peft_model

    cpu = torch.device("cpu")
    model, _ = make_lively_tiny_model()
    assert sh.screened_head(model, torch.device("meta")) is None  # not a CPU
    # AVX-512 without bfloat16 dot products: oneDNN converts to float32, no faster than the head
    with monkeypatch.context() as m:
        m.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        m.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        kernels.bf16_native.cache_clear()
        assert sh.screened_head(model, cpu) is None
    kernels.bf16_native.cache_clear()
    assert sh.screened_head(model, cpu) is not None
    monkeypatch.setenv(DISABLE_ENV, "0")
    assert sh.screened_head(model, cpu) is None  # packed kernels turned off
    monkeypatch.setenv(DISABLE_ENV, "1")
    monkeypatch.setattr(sh, "MIN_ELEMENTS", 1 << 30)
    assert sh.screened_head(model, cpu) is None  # too small to be worth it
    monkeypatch.setattr(sh, "MIN_ELEMENTS", 0)
    lora = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=2, target_modules=["lm_head"]))
    assert sh.screened_head(lora.get_base_model(), cpu) is None  # an adapter on the head itself
    bf16, _ = make_lively_tiny_model()
    assert sh.screened_head(bf16.to(torch.bfloat16), cpu) is None  # not float32

    class SoftCappedForCausalLM(torch.nn.Module):  # a class not known to return the head's output
        def get_output_embeddings(self):
            return model.lm_head

    assert sh.screened_head(SoftCappedForCausalLM(), cpu) is None


def _lora_model():
    from peft import LoraConfig

    model, tok = make_lively_tiny_model()
    specs = {"a": (LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                              init_lora_weights=False), 1)}
    return with_lora(model, specs), tok


def _prompt_model():
    from peft import PromptTuningConfig, get_peft_model

    model, tok = make_lively_tiny_model()
    torch.manual_seed(11)
    peft_model = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "prompt_encoder" in n:
                p.mul_(4.0)
    return peft_model.eval(), tok


PROMPTS = ["hello there", "What is two plus two? The answer is", "fox", "Who was forgetful in the story?", "sky",
           "Name a colour.", "Tell me about the moon and the sun.", "Why?"]


@pytest.mark.parametrize("case", ["base", "mixed LoRA", "prompt tuning"])
def test_generation_with_the_screened_head_equals_the_float32_head(case, monkeypatch):
    make = {"base": make_lively_tiny_model, "mixed LoRA": _lora_model, "prompt tuning": _prompt_model}[case]
    model, tok = make()
    names = ["a", BASE_ROWS] if case == "mixed LoRA" else None
    prompts = PROMPTS * (len(names) if names else 1)
    kw = dict(max_new_tokens=12, batch_size=64,
              adapter_names=None if names is None else [n for n in names for _ in PROMPTS])
    screened, plain = with_and_without(monkeypatch, generation, "screened_head",
                                       lambda: generate(model, tok, prompts, **kw))
    assert screened == plain
    assert len({g.text for g in plain}) > 2


def test_the_packed_head_is_what_the_screen_reproduces():
    """Under ``packed_linears`` (as in generation) the fallback and the reference are the same
    oneDNN float32 product."""
    model, _ = make_lively_tiny_model()
    screened = sh.screened_head(model, torch.device("cpu"))
    hidden = torch.randn(16, model.config.hidden_size) * 3
    with packed_linears(model), torch.inference_mode():
        assert torch.equal(screened.next_tokens(hidden), _reference(model.lm_head, hidden))
