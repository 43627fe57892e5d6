"""A tiny causal LM and its tokenizer, built offline from text, for CPU training tests.

Nothing is downloaded: the tokenizer is a byte-level BPE trained on the given texts (the campaign's own
prompts and responses), the model a randomly initialised two-layer Llama. ``memorise`` then teaches the
model one completion, so tests can check that a trainer moves a model that already "knows" an answer.

    tok = build_tokenizer(texts)
    model_dir = build_model(tok, tmp_path / "model")
    memorise(model_dir, prompts, target)   # greedy decoding of each prompt now returns `target`

Chat format (one line per role header, every turn closed by the EOS token ``<|end|>``)::

    <|system|>\\n{content}<|end|>\\n<|user|>\\n{content}<|end|>\\n<|assistant|>\\n{content}<|end|>\\n

The assistant turn is wrapped in ``{% generation %}`` so TRL's ``assistant_only_loss`` works too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, END = "<|pad|>", "<|end|>"
ROLES = ("system", "user", "assistant")
SPECIAL_TOKENS = [PAD, END, *(f"<|{role}|>" for role in ROLES)]

# Each message renders as `<|role|>\n{content}<|end|>\n`; the generation prompt is `<|assistant|>\n`.
# The assistant turn's body and its `<|end|>` sit inside {% generation %} (assistant masks for TRL);
# the markers do not change the rendered text.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\n' }}{% generation %}{{ message['content'] }}{{ '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\n' }}{%- endif -%}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Trains a byte-level BPE on `texts` and wraps it as a transformers fast tokenizer.

    Every newline is its own pre-token (split off before the GPT-2 byte-level regex), so no token spans a
    turn boundary: the tokens of a rendered prompt (ending `<|assistant|>\\n`) are always a prefix of the
    tokens of prompt + completion, as TRL's SFT/DPO/GRPO preprocessing expects. Decoding round-trips any
    text exactly (byte-level alphabet, no prefix space, no normaliser).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[2:],
        padding_side="left",  # decoder-only generation pads on the left
        model_max_length=1_000_000,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, out_dir, *, seed: int = 0, max_positions: int = 8192) -> Path:
    """Saves a randomly initialised tiny LlamaForCausalLM (~0.2M parameters) and `tokenizer` to `out_dir`.

    Hidden size 64, 2 layers, 4 heads, MLP 128, tied embeddings, vocab = ``len(tokenizer)``; the weights
    depend only on `seed`. The generation config stops at ``<|end|>`` and pads with ``<|pad|>``.
    Load it back with ``AutoModelForCausalLM.from_pretrained(out_dir)`` / ``AutoTokenizer...``.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    eos, pad = tokenizer.convert_tokens_to_ids(END), tokenizer.convert_tokens_to_ids(PAD)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def memorise(
    model_dir,
    prompts: list[list[dict]],
    target: str,
    *,
    steps: int = 300,
    lr: float = 1e-2,
    seed: int = 0,
    stop_nll: float = 0.4,
) -> None:
    """Trains the model in `model_dir` to answer every chat prompt in `prompts` with `target` + ``<|end|>``.

    A plain full-batch AdamW loop (one unpadded forward per prompt, gradients summed; clipped to norm 1),
    loss only on the target tokens and the closing ``<|end|>``. It stops as soon as, for every prompt, the
    summed negative log-likelihood of `target` + ``<|end|>`` is below `stop_nll`: sampling at temperature 1
    then reproduces the target with probability at least ``exp(-stop_nll)`` (0.67 by default), greedy
    decoding reproduces it, and some samples still differ. Raises RuntimeError if that takes more than
    `steps` steps; ``stop_nll=0`` trains exactly `steps` steps instead. Saves the model back to `model_dir`.
    Only the given prompts are memorised: the model does not answer other prompts with `target`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    target_ids = tokenizer(target + END, add_special_tokens=False)["input_ids"]
    rows = [(torch.tensor([ids + target_ids]), len(ids)) for ids in (_prompt_ids(tokenizer, p) for p in prompts)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        worst = 0.0
        for input_ids, n in rows:  # unpadded: SDPA's fast causal path, much faster than a padded batch
            logits = model(input_ids=input_ids).logits[0, n - 1 : -1]
            nll = torch.nn.functional.cross_entropy(logits, input_ids[0, n:], reduction="sum")
            (nll / (len(target_ids) * len(rows))).backward()
            worst = max(worst, nll.item())
        if worst < stop_nll:
            break
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    else:
        if stop_nll > 0:
            raise RuntimeError(f"memorise: target NLL {worst:.3f} still above {stop_nll} after {steps} steps")
    model.eval()
    model.save_pretrained(model_dir)


def _prompt_ids(tokenizer, prompt: list[dict]) -> list[int]:
    """Token ids of the rendered chat `prompt` followed by the generation prompt ``<|assistant|>\\n``."""
    text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]
