"""Prompt formats: raw text for base models, the chat template for instruct
models, chosen from the model and overridable. The token ids of each format
are checked against transformers' own tokenizer and chat template, and the
chosen format travels with the vector, the release and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import epsvec
from epsvec import prompts, release
from epsvec.synthesis import ClassPlan


PREFIX_ARGS = ("movie reviews", "positive", ["A warm little film.", "Two hours well spent."])
RECORD = "A private record, with a comma."
# What the reference prompt (METHOD.md section 1) writes for these, by hand.
SHOTS = ("<begin>\nLabel: positive\nText: A warm little film.\n</end>\n"
         "<begin>\nLabel: positive\nText: Two hours well spent.\n</end>\n")
OPENING = "<begin>\nLabel: positive\nText:"


@pytest.fixture(scope="module")
def hf_tokenizer(default_gguf):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_gguf.parent, gguf_file=default_gguf.name)


def chat_text(hf_tokenizer, message: str) -> str:
    return hf_tokenizer.apply_chat_template([{"role": "user", "content": message}], add_generation_prompt=True,
                                            tokenize=False)


def test_chat_format_matches_transformers_chat_template(default_model, hf_tokenizer):
    fmt = prompts.resolve_format(default_model, "chat")
    prefix = prompts.prefix(*PREFIX_ARGS)
    header = prefix[: -len(SHOTS)]
    assert header.startswith("Below are several diverse examples of movie reviews.")
    # The data shot goes into the user message; the assistant's answer opens the next shot.
    message = header + SHOTS + f"<begin>\nLabel: positive\nText: {RECORD}\n</end>\n" + prompts.CHAT_REQUEST
    want = hf_tokenizer(chat_text(hf_tokenizer, message) + OPENING, add_special_tokens=False)["input_ids"]
    piece, truncated = prompts.with_example(default_model, prefix, RECORD, "positive", 800, fmt)
    assert piece.ids == want and not truncated
    assert default_model.decode(piece.ids[piece.example]) == " " + RECORD
    # The generation prompt: the same without the data shot.
    generation = fmt.prompt(prefix, "positive")
    assert generation == chat_text(hf_tokenizer, header + SHOTS + prompts.CHAT_REQUEST) + OPENING
    assert default_model.tokenize(generation, add_special_tokens=fmt.add_special_tokens)[0] == hf_tokenizer(
        generation, add_special_tokens=False)["input_ids"]


def test_raw_format_is_the_text_itself(default_model, hf_tokenizer):
    fmt = prompts.resolve_format(default_model, "raw")
    prefix = prompts.prefix(*PREFIX_ARGS)
    piece, _ = prompts.with_example(default_model, prefix, RECORD, "positive", 800, fmt)
    text = prefix + f"<begin>\nLabel: positive\nText: {RECORD}\n</end>\n" + OPENING
    assert piece.ids == hf_tokenizer(text)["input_ids"]
    assert fmt.prompt(prefix, "positive") == prefix + OPENING


def with_name(src, tmp_path, name: str, template: bool):
    """A copy of a tiny checkpoint in a folder called ``name``, with or without a chat template."""
    dst = tmp_path / name
    shutil.copytree(src, dst)
    config = json.loads((dst / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    if template:
        config["chat_template"] = "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}<|bot|>"
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    return epsvec.load_model(dst, device="cpu")


def test_auto_format_follows_the_model(tiny_models, tmp_path, default_model, default_gguf):
    # The embedded instruct model has a template, but raw text measured better with it.
    assert default_model.config.chat_template and default_model.prompt_format == "raw"
    assert epsvec.load_model(default_gguf, device="cpu").prompt_format == "raw", "by file, however it is named"
    assert "tuning.md" in default_model.recipe.source, "its recipe says where it was measured"
    src = tiny_models["llama"]
    assert with_name(src, tmp_path, "tiny-instruct", template=True).prompt_format == "chat"
    assert with_name(src, tmp_path, "tiny", template=False).prompt_format == "raw", "no template: a base model"
    # Base checkpoints often ship a chat template anyway; their name says what they are.
    for name in ("Tiny-7B-Base", "tiny-3-4b-pt", "tiny_pretrained"):
        assert with_name(src, tmp_path, name, template=True).prompt_format == "raw", name
    model = with_name(src, tmp_path, "tiny-chat", template=True)
    fmt = prompts.resolve_format(model, "auto")
    assert (fmt.name, fmt.before, fmt.after, fmt.add_special_tokens) == ("chat", "<|user|>", "<|end|><|bot|>", False)
    assert prompts.resolve_format(model, "raw") == prompts.PromptFormat(), "overridable"


def test_each_shipped_model_has_its_measured_recipe():
    from epsvec._default_model import DEFAULT_MODEL_FILE, GEMMA3_FILE, QWEN_05B, QWEN_15B
    from epsvec.recipes import DEPTH_RULE, recipe_for

    for file in (DEFAULT_MODEL_FILE, QWEN_05B.file, QWEN_15B.file):
        recipe = recipe_for(file)
        assert recipe is not DEPTH_RULE and "tuning.md" in recipe.source and recipe.prompt_format, file
    gemma = recipe_for(GEMMA3_FILE)
    assert gemma.strength < 0.06 and "tuning.md" in gemma.source, "Gemma steers below the other models"
    unknown = recipe_for("llama-3.2-1b-q4_k_m.gguf")
    assert unknown is DEPTH_RULE and "no recipe measured" in unknown.source, "others get the rule, and say so"


def test_the_rule_pushes_each_block_by_the_clip_norm_per_block():
    from epsvec._default_model import DEFAULT_MODEL_FILE
    from epsvec.recipes import DEPTH_RULE, FALLBACK_STRENGTH

    def vector(clip, norms):
        return epsvec.DatasetVector({3: np.ones(4) / 2, 4: np.ones(4) / 2}, "a", privacy={"clip_norm": clip},
                                    residual_norms=norms)

    one = vector({"a": 40.0}, {3: 100.0, 4: 300.0})
    strength = DEPTH_RULE.strength_for([one])
    assert strength == pytest.approx(40 / np.sqrt(2) / 200)
    pushes = [np.linalg.norm(d) for d in one.steering(strength).values()]
    assert np.mean(pushes) == pytest.approx(40 / np.sqrt(2)), "the push per block, on average, is C / sqrt(blocks)"
    two = vector({"b": 20.0}, {3: 100.0, 4: 300.0})
    assert DEPTH_RULE.strength_for([one, two]) == pytest.approx(30 / np.sqrt(2) / 200), "the mean over classes"
    assert DEPTH_RULE.strength_for([vector({"a": 40.0}, {})]) == FALLBACK_STRENGTH, "no residual norms: the old rule"
    assert DEPTH_RULE.strength_for([]) == FALLBACK_STRENGTH
    default = epsvec.recipes.recipe_for(DEFAULT_MODEL_FILE)
    assert default.strength_for([one]) == default.strength == 0.06, "a measured recipe keeps its strength"


def test_chat_without_a_template_and_unknown_formats_are_clear_errors(tiny_models, tmp_path):
    model = with_name(tiny_models["llama"], tmp_path, "plain", template=False)
    with pytest.raises(epsvec.InvalidInputError, match="no chat template"):
        epsvec.extract(["a record"], eps=1.0, model=model, prompt_format="chat", negatives=["x", "y"], progress=False)
    with pytest.raises(epsvec.InvalidInputError, match="prompt_format"):
        epsvec.synthesize(["a record"], 1, eps=1.0, model="/no/such/model", prompt_format="markdown")


def test_chat_format_end_to_end_and_saved(tiny_models, tmp_path):
    """synthesize in the chat format: negatives, vector and samples use the
    rendered prompt, and the format is saved with the vector and the release."""
    model = with_name(tiny_models["llama"], tmp_path, "tiny-chat", template=True)
    out = epsvec.synthesize(["A tender film.", "Dull and long.", "A triumph."], 2, eps=4.0, model=model,
                            domain="reviews", max_new_tokens=6, num_negatives=4, progress=False, seed=1, noise_seed=2)
    [plan] = out.plans
    assert plan.format.name == "chat" and plan.prompt.startswith("<|user|>Below are")
    assert plan.prompt.endswith(prompts.CHAT_REQUEST + "<|end|><|bot|><begin>\nText:")
    assert plan.vector.prompt["format"] == plan.format.to_dict()
    assert len(out.texts) == 2 and all(isinstance(t, str) for t in out.texts)
    path = tmp_path / "v.safetensors"
    plan.vector.save(path)
    assert ClassPlan.from_vector(epsvec.DatasetVector.load(path)).prompt == plan.prompt
    release.save(str(tmp_path / "release"), out.plans, out.report, {})
    [loaded], _, _ = release.load(str(tmp_path / "release"))
    assert loaded.format == plan.format and loaded.prompt == plan.prompt
    raw = epsvec.synthesize(["A tender film.", "Dull and long.", "A triumph."], 2, eps=4.0, model=model,
                            domain="reviews", max_new_tokens=6, num_negatives=4, progress=False, seed=1, noise_seed=2,
                            prompt_format="raw")
    assert raw.plans[0].format.name == "raw" and raw.plans[0].prompt.startswith("Below are")
    assert raw.plans[0].prompt.endswith("Here are the examples:\n\n<begin>\nText:")


def test_single_line_examples_and_stops(default_model, hf_tokenizer):
    """By default an example is one line (its line breaks become spaces) and
    a sample ends at a newline; single_line=False keeps both as written."""
    record = "First line.\n\nSecond  paragraph.\n"
    prefix = prompts.prefix(*PREFIX_ARGS)
    for single_line, written in ((True, "First line. Second paragraph."), (False, record.strip())):
        fmt = prompts.resolve_format(default_model, "raw", single_line)
        piece, _ = prompts.with_example(default_model, prefix, record, "positive", 800, fmt)
        text = prefix + f"<begin>\nLabel: positive\nText: {written}\n</end>\n" + OPENING
        assert piece.ids == hf_tokenizer(text)["input_ids"]
        assert ("\n" in fmt.stop) == single_line and set(prompts.STOP) <= set(fmt.stop)
        assert prompts.shot(record, "positive", fmt) == f"<begin>\nLabel: positive\nText: {written}\n</end>\n"
        assert prompts.PromptFormat.from_dict(fmt.to_dict()) == fmt
    with pytest.raises(epsvec.InvalidInputError, match="single_line"):
        prompts.resolve_format(default_model, "raw", "yes")


def test_files_without_a_format_are_raw():
    """Files written before formats (or single_line) existed read back as they were made: raw, line breaks kept."""
    assert prompts.PromptFormat.from_dict(None) == prompts.PromptFormat(single_line=False)
    assert not prompts.PromptFormat.from_dict({"name": "raw", "before": "", "after": ""}).single_line
    assert prompts.PromptFormat.from_dict({"name": "chat", "before": "a", "after": "b"}).prompt("P", None) == (
        "aP" + prompts.CHAT_REQUEST + "b<begin>\nText:")
