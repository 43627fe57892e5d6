"""Fast checks of the tiny-model fixture itself (tests/train/tiny.py), on a few short synthetic texts."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.train.tiny import build_model, build_tokenizer, memorise  # noqa: E402

TEXTS = [
    "You improve a Python program; a lower score is better.\n\nRules:\n- Keep `construct`.\n",
    "<<<<<<< SEARCH\n    step = 0.1\n    for i in range(10):\n=======\n    step = 0.05\n>>>>>>> REPLACE\n",
    "def construct():\n    x = np.arange(50) * 0.04\n    return normalise(1.0 - np.abs(x - 1.0))\n",
    "Erdős minimum overlap: h: [0, 2] -> [0, 1], C(h) = max_t ∫ h(x + t)(1 - h(x)) dx.\t(tab)\r\n",
]
SYSTEM = {"role": "system", "content": "You improve a Python program."}
PROMPTS = [
    [SYSTEM, {"role": "user", "content": "Make the score lower.\n\ndef construct():\n    return [1.0]"}],
    [SYSTEM, {"role": "user", "content": "Try a wider bump.\n\nWIDTH = 0.92  # half-width"}],
]
TARGET = "<<<<<<< SEARCH\nWIDTH = 0.92\n=======\nWIDTH = 0.62\n>>>>>>> REPLACE"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(TEXTS, vocab_size=400)


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory):
    return build_model(tokenizer, tmp_path_factory.mktemp("tiny") / "model", seed=0)


def _ids(tokenizer, messages, **kwargs):
    return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False, **kwargs)


def test_special_tokens(tokenizer):
    assert tokenizer.eos_token == "<|end|>" and tokenizer.pad_token == "<|pad|>"
    for token in ("<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"):
        assert tokenizer.convert_ids_to_tokens(tokenizer(token, add_special_tokens=False)["input_ids"]) == [token]


def test_chat_template_renders_the_format(tokenizer):
    messages = PROMPTS[0] + [{"role": "assistant", "content": "ok"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|system|>\nYou improve a Python program.<|end|>\n"
        "<|user|>\nMake the score lower.\n\ndef construct():\n    return [1.0]<|end|>\n"
        "<|assistant|>\nok<|end|>\n"
    )
    prompt = tokenizer.apply_chat_template(PROMPTS[0], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|end|>\n<|assistant|>\n")


@pytest.mark.parametrize("completion", [TARGET, "\n\n\nleading newlines", " leading space", "", "x"])
def test_prompt_tokens_are_a_prefix_of_prompt_plus_completion(tokenizer, completion):
    """What TRL's SFT (prompt/completion), DPO and GRPO preprocessing rely on."""
    prompt_ids = _ids(tokenizer, PROMPTS[1], add_generation_prompt=True)
    full_ids = _ids(tokenizer, PROMPTS[1] + [{"role": "assistant", "content": completion}])
    assert full_ids[: len(prompt_ids)] == prompt_ids
    assert tokenizer.decode(full_ids[len(prompt_ids) :]) == completion + "<|end|>\n"


def test_assistant_mask_covers_the_answer_and_end_token(tokenizer):
    """The {% generation %} markers: TRL's SFT `assistant_only_loss`."""
    out = tokenizer.apply_chat_template(
        PROMPTS[0] + [{"role": "assistant", "content": TARGET}],
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == TARGET + "<|end|>"


@pytest.mark.parametrize("text", TEXTS + ["  two  spaces\n\n\n\tand tabs \n", "ünï©ødé ∫ 😀", " ", "\n"])
def test_decode_round_trips_exactly(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_model_saves_and_loads(tokenizer, model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    loaded = AutoTokenizer.from_pretrained(model_dir)
    assert loaded.chat_template == tokenizer.chat_template
    assert loaded("a b\n c")["input_ids"] == tokenizer("a b\n c")["input_ids"]
    assert model.config.vocab_size == len(loaded)
    assert model.generation_config.eos_token_id == loaded.eos_token_id
    assert model.generation_config.pad_token_id == loaded.pad_token_id
    ids = torch.tensor([_ids(loaded, PROMPTS[0], add_generation_prompt=True)])
    assert model(input_ids=ids).logits.shape == (1, ids.shape[1], len(loaded))


def test_build_model_is_deterministic(tokenizer, model_dir, tmp_path):
    other = build_model(tokenizer, tmp_path / "again", seed=0)
    assert (other / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()


def test_memorise_makes_greedy_decoding_return_the_target(tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = build_model(tokenizer, tmp_path / "model", seed=0)
    memorise(model_dir, PROMPTS, TARGET)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    target_len = len(tok(TARGET)["input_ids"])
    for prompt in PROMPTS:
        ids = torch.tensor([_ids(tok, prompt, add_generation_prompt=True)])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=target_len + 8)
        completion = out[0, ids.shape[1] :].tolist()
        assert completion[-1] == tok.eos_token_id  # stopped at <|end|>
        assert tok.decode(completion, skip_special_tokens=True) == TARGET
