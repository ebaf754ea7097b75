"""The initialisation stages (AB, FT, FSP) on tiny timm models: they train exactly what they should.

Teacher ``test_resnet`` (5 stages) and student ``test_efficientnet`` with its stem stage hidden
(4 stages): different channels, resolutions and stage counts.
"""

import tomllib
from pathlib import Path

import pytest
import timm
import torch

from losses import LOSSES, LossContext, ModelShapes, Need, Outputs, Preparation
from registry import ConfigError

ZOO = tomllib.loads((Path(__file__).resolve().parents[2] / "bench" / "recipes" / "losses" / "zoo.toml").read_text())
TRAINING = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}


def extract(model, images, needs) -> Outputs:
    feats = model.forward_intermediates(images, intermediates_only=True)
    final = model.forward_features(images)
    return Outputs(
        logits=model.forward_head(final),
        features=tuple(feats[1:] if model.hidden_stem else feats) if Need.FEATURES in needs else (),
        embedding=model.forward_head(final, pre_logits=True) if Need.EMBEDDING in needs else None,
    )


@torch.no_grad()
def probe(model) -> ModelShapes:
    model.eval()
    out = extract(model, torch.zeros(2, 1, 28, 28), frozenset({Need.FEATURES, Need.EMBEDDING}))
    model.train()
    return ModelShapes(tuple(tuple(f.shape[1:]) for f in out.features), out.embedding.shape[1], out.logits.shape[1])


@pytest.fixture
def models():
    torch.manual_seed(0)
    teacher = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    student = timm.create_model("test_efficientnet", num_classes=10, in_chans=1)
    teacher.hidden_stem, student.hidden_stem = False, True
    teacher.eval().requires_grad_(False)
    return teacher, student


def preparation(teacher, student, tmp_path, params=TRAINING) -> Preparation:
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, 1, 28, 28, generator=g), torch.randint(10, (4,), generator=g), torch.arange(4) + 4 * i)
            for i in range(2)]
    return Preparation(teacher=teacher, student=student, batches=lambda: iter(data), in_order=lambda: iter(data),
                       extract=extract,
                       device=torch.device("cpu"), generator=torch.Generator().manual_seed(1),
                       cache_dir=tmp_path, params=params)


def build(name, teacher, student, **overrides):
    student_shapes, teacher_shapes = probe(student), probe(teacher)
    assert len(student_shapes.features) == 4 and len(teacher_shapes.features) == 5
    ctx = LossContext(student_shapes, teacher_shapes, num_train=8)
    return LOSSES.get(name)(ctx, **{**ZOO[name]["params"], **overrides})


def snapshot(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module) -> bool:
    after = snapshot(module)
    return any(not torch.equal(before[k], after[k]) for k in before)


def head_names(model) -> set[str]:
    prefix = model.default_cfg["classifier"]
    return {f"{prefix}.{k}" for k, _ in model.get_classifier().named_parameters()}


@torch.no_grad()
def objective(loss, teacher, student, tmp_path) -> float:
    images = next(iter(preparation(teacher, student, tmp_path).batches()))[0]
    needs = frozenset({Need.FEATURES})
    return loss.transfer_loss(extract(student, images, needs).features, extract(teacher, images, needs).features).item()


@pytest.mark.parametrize("name", ["ab", "fsp"])
def test_ab_and_fsp_train_the_student_body_and_connectors(name, models, tmp_path):
    teacher, student = models
    loss = build(name, teacher, student, init_epochs=3)
    student_before, connectors, teacher_before = snapshot(student), snapshot(loss.connectors), snapshot(teacher)
    before = objective(loss, teacher, student, tmp_path)
    loss.prepare(preparation(teacher, student, tmp_path))
    after = snapshot(student)
    head = head_names(student)
    assert any(not torch.equal(v, after[k]) for k, v in student_before.items() if k not in head), "body trained"
    assert all(torch.equal(student_before[k], after[k]) for k in head), "classifier untouched"
    assert connectors and changed(connectors, loss.connectors)
    assert not changed(teacher_before, teacher)
    assert objective(loss, teacher, student, tmp_path) < before
    assert student.training  # the student's mode is restored


def test_ft_pretrains_only_the_paraphraser(models, tmp_path):
    teacher, student = models
    loss = build("ft", teacher, student, init_epochs=2)
    paraphraser, translator = snapshot(loss.paraphraser), snapshot(loss.translator)
    frozen_student, frozen_teacher = snapshot(student), snapshot(teacher)
    loss.prepare(preparation(teacher, student, tmp_path))
    assert changed(paraphraser, loss.paraphraser)
    assert not changed(translator, loss.translator)
    assert not changed(frozen_student, student) and not changed(frozen_teacher, teacher)


@pytest.mark.parametrize("name", ["ab", "ft", "fsp"])
def test_zero_init_epochs_changes_nothing(name, models, tmp_path):
    teacher, student = models
    loss = build(name, teacher, student, init_epochs=0)
    before_student, before_loss = snapshot(student), snapshot(loss)
    loss.prepare(preparation(teacher, student, tmp_path, params={}))
    assert not changed(before_student, student) and not changed(before_loss, loss)


@pytest.mark.parametrize("name", ["ab", "ft", "fsp"])
def test_missing_training_settings_is_a_config_error(name, models, tmp_path):
    teacher, student = models
    loss = build(name, teacher, student, init_epochs=1)
    with pytest.raises(ConfigError, match="momentum"):
        loss.prepare(preparation(teacher, student, tmp_path, params={"lr": 0.1}))


def test_a_prepared_statistic_reads_every_training_image_in_order_unaugmented(tmp_path, teacher_cache, cli,
                                                                             monkeypatch):
    """WKD-L's class cost, as its authors build it (generate_class_proto.py): every training image, in the
    dataset's order, under the test transform, the ragged last batch kept (synthetic: 256 images, batch 48)."""
    from helpers import synthetic_run
    from losses.ot.wkd import WKDLogit

    passes = []
    monkeypatch.setattr(WKDLogit, "prepare", lambda self, prep: passes.extend(
        [[tuple(t.clone() for t in batch) for batch in prep.in_order()] for _ in range(2)]))
    assert cli(*synthetic_run(tmp_path, teacher_cache, "--losses", "wkd-l", "--protocol", "fast",
                              "--batch-size", "48")).code == 0
    first, second = passes
    assert torch.equal(torch.cat([indices for *_, indices in first]), torch.arange(256))
    assert [len(labels) for _, labels, _ in first] == [48] * 5 + [16]
    assert all(torch.equal(a, b) for x, y in zip(first, second) for a, b in zip(x, y))  # no random augmentation
