"""The logit lens: only the final norm and unembedding are read, and they give what the full model gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from taskvec.analysis.lens import lens, readable
from taskvec.cli import main
from taskvec.errors import TaskvecError
from taskvec.model.unembed import _gguf_tensors
from taskvec.prompts.tokens import first_token_forms
from taskvec.session.reader import Session, load_session
from tests.conftest import write_configs
from tests.tiny import make_tokenizer, save_tiny

KEY = "layer_2_pos_last"


def _extract(root: Path, model_dir: Path) -> Session:
    config = write_configs(
        root,
        str(model_dir),
        prompt="vanilla_0shot_answer.yaml",
        output_dir=str(root / "out"),
        max_samples=10,
    )
    assert main(["extract", "--config", str(config), "--quiet"]) == 0
    (name,) = [p.name for p in (root / "out" / "task_vector").iterdir()]
    return load_session(name, root / "out")


@pytest.fixture(scope="module")
def untied(tmp_path_factory: pytest.TempPathFactory) -> Session:
    root = tmp_path_factory.mktemp("lens_untied")
    return _extract(root, save_tiny(root / "model", "qwen2"))


@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, LlamaForCausalLM]:
    root = tmp_path_factory.mktemp("lens_tied")
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=400,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    model = LlamaForCausalLM(config).float().eval()
    with torch.no_grad():
        model.model.norm.weight.uniform_(0.5, 2.0)  # a final norm that is not the identity
    model.save_pretrained(root / "model")
    make_tokenizer().save_pretrained(root / "model")
    assert "lm_head.weight" not in load_file(root / "model" / "model.safetensors")
    return _extract(root, root / "model"), model


def test_known_unembedding_gives_the_expected_top_tokens(untied: Session, tmp_path: Path) -> None:
    """An output matrix with three rows along the normed task vector (weights 3, 2, 1) and zeros elsewhere:
    those three tokens come first, in that order, with the softmax probabilities worked out by hand."""
    weights_file = Path(untied.metadata["model"]) / "model.safetensors"
    weights = load_file(weights_file)
    mean = untied.mean(KEY).double()
    norm_w = weights["model.norm.weight"].double()
    normed = mean / torch.sqrt(mean.pow(2).mean() + 1e-6) * norm_w
    head = torch.zeros_like(weights["lm_head.weight"])
    tokens, scales = [57, 311, 9], [3.0, 2.0, 1.0]
    for token, scale in zip(tokens, scales):
        head[token] = (scale * normed / normed.norm()).float()
    save_file({**weights, "lm_head.weight": head}, weights_file, metadata={"format": "pt"})
    result = lens(untied, tmp_path, layers=[2], position="last", top=5)
    table = result.table
    assert result.tied is False
    assert table["token_id"].tolist()[:3] == tokens
    logits = np.array([s * normed.norm().item() for s in scales] + [0.0] * (head.shape[0] - 3))
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert table.prob.tolist()[:3] == pytest.approx(expected[:3].tolist(), rel=1e-4)
    tokenizer = make_tokenizer()
    assert table.token.tolist()[:3] == [readable(tokenizer.decode([t])) for t in tokens]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == [
        "lens_gold_rank.png",
        "lens_tokens.png",
    ]


def test_tied_embedding_and_last_block_match_the_full_model(
    tied: tuple[Session, LlamaForCausalLM], tmp_path: Path
) -> None:
    """At the last block the lens is the model's own next-token prediction: ranks of the gold first token
    from each sample's vector equal those from the model's logits on its prompt."""
    session, model = tied
    result = lens(session, tmp_path, top=3)
    table = result.table
    assert result.tied is True
    samples = pd.read_csv(tmp_path / "lens_gold_samples.csv", dtype={"gold": str})
    last = samples[samples.key == "layer_3_pos_last"].set_index("sample_id")
    tokenizer = make_tokenizer()
    assert len(last) == 10
    for row in session.prompts:
        ids = tokenizer(row["prompt"], add_special_tokens=row["add_special_tokens"])["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        gold = str(last.loc[row["sample_id"], "gold"])
        best = max(first_token_forms(tokenizer, gold), key=lambda t: logits[t].item())
        assert last.loc[row["sample_id"], "rank"] == int((logits > logits[best]).sum()) + 1
    top = table[table.key == "layer_3_pos_last"].token_id.tolist()
    with torch.no_grad():
        direct = model.lm_head(model.model.norm(session.mean("layer_3_pos_last")[None]))[0]
    assert top == direct.topk(3).indices.tolist()
    gold = result.gold.set_index("key")
    assert (
        gold.loc["layer_3_pos_last", "n"] == 10 and 1 <= gold.loc["layer_3_pos_last", "median_rank"]
    )


def test_minus_reads_the_difference(
    untied: Session, tied: tuple[Session, LlamaForCausalLM], tmp_path: Path
) -> None:
    same = lens(untied, tmp_path / "a", minus=untied, layers=[0], position="last", top=3)
    assert same.table.prob.tolist() == pytest.approx(
        [1 / 400] * 3
    )  # a zero vector: every token alike
    with pytest.raises(TaskvecError, match="has no vectors at layers"):
        lens(untied, tmp_path, layers=[1])
    with pytest.raises(TaskvecError, match="--top must be at least 1"):
        lens(untied, tmp_path, top=0)


def test_cli_prints_tokens_and_gold_ranks(
    untied: Session, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = untied.task_vector_dir.parent.parent
    args = ["lens", untied.name, "--output-dir", str(out), "--layers", "-1", "--top", "4"]
    assert main([*args, "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert (
        "layer   3 pos last" in printed
        and "median_rank" in printed
        and "lens_tokens.png" in printed
    )
    assert main(["lens", untied.name, "--output-dir", str(out), "--layers", "1"]) == 2


def test_gguf_tensors_are_read_and_dequantised(tmp_path: Path) -> None:
    import gguf
    from gguf.quants import quantize

    rng = np.random.default_rng(0)
    embed = rng.normal(size=(8, 64)).astype(np.float32)
    norm = rng.uniform(0.5, 2, 64).astype(np.float32)
    writer = gguf.GGUFWriter(tmp_path / "m.gguf", "llama")
    q8 = quantize(embed, gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("token_embd.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("output_norm.weight", norm)
    writer.add_tensor("blk.0.attn_q.weight", embed)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    got = _gguf_tensors(tmp_path / "m.gguf", {"token_embd.weight", "output_norm.weight"})
    assert set(got) == {"token_embd.weight", "output_norm.weight"}
    assert got["output_norm.weight"].numpy() == pytest.approx(norm)
    assert got["token_embd.weight"].shape == (8, 64)
    assert np.abs(got["token_embd.weight"].numpy() - embed).max() < 0.03  # Q8_0 rounding


def test_lens_tokens_csv_has_one_row_per_key_and_rank(untied: Session, tmp_path: Path) -> None:
    result = lens(untied, tmp_path, top=2)
    assert len(result.table) == 2 * len(untied.keys)
    saved = pd.read_csv(tmp_path / "lens_tokens.csv")
    assert list(saved.columns) == [
        "key",
        "layer",
        "position",
        "rank",
        "token_id",
        "token",
        "prob",
        "logit",
    ]
    assert json.loads(json.dumps(result.note)) == ""


def test_gold_probability_panel_shows_small_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gold probabilities of 1e-10 to 1e-3 (the embedded model's before its last blocks) are drawn a decade
    apart on a log axis that reaches the smallest, and a share of 0 is not drawn; on the 0-1 linear axis
    every one of them sat on the bottom edge."""
    from matplotlib.figure import Figure

    from taskvec.analysis import lens_plot

    drawn: list[Figure] = []
    monkeypatch.setattr(lens_plot, "save_figure", lambda fig, path: drawn.append(fig) or path)
    gold = pd.DataFrame(
        {
            "position": "last",
            "layer": [0, 10, 20, 29],
            "median_rank": [900.0, 500.0, 60.0, 2.0],
            "q25_rank": [400.0, 200.0, 20.0, 1.0],
            "q75_rank": [2000.0, 900.0, 200.0, 8.0],
            "mean_rank": [1500.0, 700.0, 90.0, 5.0],
            "mean_prob": [1e-10, 1e-7, 1e-3, 0.5],
            "top1": [0.0, 0.0, 0.0, 0.6],
            "n": 53,
        }
    )
    lens_plot.plot_gold(gold, "s", 49152, tmp_path / "gold.png")
    (fig,) = drawn
    prob_ax = fig.axes[1]
    assert prob_ax.get_title() == "Gold answer's probability" and prob_ax.get_yscale() == "log"
    mean_line, top1_line = prob_ax.get_lines()[:2]
    to_axes = prob_ax.transData + prob_ax.transAxes.inverted()
    heights = [to_axes.transform(xy)[1] for xy in mean_line.get_xydata()]
    assert 0.0 < heights[0] and all(b - a > 0.15 for a, b in zip(heights, heights[1:]))
    assert heights[3] < 1.0
    assert np.isnan(top1_line.get_ydata()[:3]).all() and top1_line.get_ydata()[3] == 0.6
