"""The loss contract, checked for every loss of the zoo recipe on a cross-architecture pair.

Student and teacher (tests/losses/conftest.py) differ in channels, resolutions, embedding width
and number of stages, so every connector and stage-pairing rule is exercised.
"""

import inspect
import tomllib
from pathlib import Path

import pytest
import torch

from losses import LOSSES, Need, Outputs, total
from registry import ConfigError

ZOO = tomllib.loads((Path(__file__).resolve().parents[2] / "bench" / "recipes" / "losses" / "zoo.toml").read_text())
ZERO_AFTER_INIT = {"ab", "fsp"}  # the paper trains with CE alone after the initialisation stage
FROZEN_PARTS = {"ft": ("paraphraser",)}  # pre-trained in ``prepare``, fixed afterwards
LEARNED_PARTS = {"vid", "ft", "crd", "cc"}  # run under autocast like the model, so bf16 changes them more


def build(name: str, ctx, **overrides):
    return LOSSES.get(name)(ctx, **{**ZOO[name].get("params", {}), **overrides})


def visible(outputs: Outputs, needs) -> Outputs:
    """What the harness hands a loss: only the outputs it declared (a stray read fails loudly)."""
    return Outputs(
        logits=outputs.logits if Need.LOGITS in needs else None,
        features=outputs.features if Need.FEATURES in needs else (),
        embedding=outputs.embedding if Need.EMBEDDING in needs else None,
    )


def terms_of(result) -> dict[str, torch.Tensor]:
    return result if isinstance(result, dict) else {"loss": result}


@pytest.mark.parametrize("name", ZOO)
def test_recipe_gives_every_hyperparameter(name):
    table = ZOO[name]
    assert table["source"] and {"weight", "ce_weight"} <= table.keys()
    params = inspect.signature(LOSSES.get(name).__init__).parameters
    keyword_only = {n: p for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert all(p.default is inspect.Parameter.empty for p in keyword_only.values()), "defaults live in recipes"
    assert set(table.get("params", {})) == set(keyword_only)


@pytest.mark.parametrize("constant", [False, True], ids=["random", "constant"])
@pytest.mark.parametrize("name", ZOO)
def test_finite_for_batch_of_two(name, constant, context, outputs, batch, shapes):
    loss = build(name, context())
    student, teacher = outputs(shapes.student, 2, constant=constant), outputs(shapes.teacher, 2, constant=constant)
    result = loss(visible(student, loss.needs), visible(teacher, loss.needs), batch(2))
    for key, term in terms_of(result).items():
        assert term.shape == () and term.dtype == torch.float32, key
        assert torch.isfinite(term), f"{name}.{key} = {term}"


@pytest.mark.parametrize("name", ZOO)
def test_gradients_reach_student_and_own_parameters(name, context, outputs, batch, shapes):
    loss = build(name, context())
    student, teacher = outputs(shapes.student, 4, grad=True, seed=1), outputs(shapes.teacher, 4, seed=2)
    value = total(loss(visible(student, loss.needs), visible(teacher, loss.needs), batch(4)))
    if name in ZERO_AFTER_INIT:
        assert float(value) == 0.0 and not loss.needs
        return
    value.backward()
    read = [student.logits] * (Need.LOGITS in loss.needs) + [student.embedding] * (Need.EMBEDDING in loss.needs)
    read += list(student.features) * (Need.FEATURES in loss.needs)
    grads = [t.grad for t in read if t.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    frozen = FROZEN_PARTS.get(name, ())
    for param_name, param in loss.named_parameters():
        if param_name.startswith(frozen):
            assert param.grad is None, param_name
        else:
            assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", ZOO)
def test_bf16_autocast_keeps_loss_math_in_fp32(name, context, outputs, batch, shapes):
    student = outputs(shapes.student, 4, seed=1, dtype=torch.bfloat16)
    teacher = outputs(shapes.teacher, 4, seed=2, dtype=torch.bfloat16)
    torch.manual_seed(0)
    mixed = build(name, context())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = terms_of(mixed(student, teacher, batch(4)))
    torch.manual_seed(0)
    full = build(name, context())
    as_fp32 = lambda o: type(o)(o.logits.float(), tuple(f.float() for f in o.features), o.embedding.float())
    high = terms_of(full(as_fp32(student), as_fp32(teacher), batch(4)))
    tolerance = 5e-2 if name in LEARNED_PARTS else 1e-5
    for key in high:
        assert low[key].dtype == torch.float32 and torch.isfinite(low[key])
        assert low[key].item() == pytest.approx(high[key].item(), rel=tolerance, abs=1e-6), key


STAGED = [n for n in ZOO if {"stages", "stage"} & set(ZOO[n].get("params", {}))]


@pytest.mark.parametrize("name", STAGED)
@pytest.mark.parametrize("bad", [[-6], [4], [], "last", [-1, -1]],
                         ids=["too-deep", "too-high", "empty", "text", "twice"])
def test_bad_stage_is_a_config_error(name, bad, context):
    key = "stages" if "stages" in ZOO[name]["params"] else "stage"
    value = bad[0] if key == "stage" and isinstance(bad, list) and len(bad) == 1 else bad
    with pytest.raises(ConfigError, match="stage"):
        build(name, context(), **{key: value})


@pytest.mark.parametrize("name, overrides", [
    ("crd", {"temperature": 0.0}), ("crd", {"momentum": 1.0}), ("crd", {"negatives": 0}),
    ("dkd", {"T": -1.0}), ("dkd", {"warmup": 2.5}), ("dist", {"tau": 0}), ("cc", {"order": -1}),
    ("at", {"p": "two"}), ("vid", {"init_variance": 1e-6}), ("ft", {"rate": 1.5}), ("ab", {"init_epochs": -1}),
    ("fsp", {"stages": [-1]}), ("fsp", {"stages": [-1, -2]}),
])
def test_bad_number_is_a_config_error(name, overrides, context):
    with pytest.raises(ConfigError):
        build(name, context(), **overrides)
