"""CRD's state: the momentum memory banks, the normalisation constant Z and negative sampling."""

import pytest
import torch
import torch.nn.functional as F

from losses import LOSSES
from losses.crd import sample_negatives


@pytest.fixture
def crd(context):
    def make(negatives: int = 16, momentum: float = 0.5):
        torch.manual_seed(0)
        return LOSSES.get("crd")(context(), embed_dim=8, negatives=negatives, temperature=0.07, momentum=momentum,
                                 eps=1e-7, memory_init="uniform", negatives_from="other_classes")

    return make


def test_memory_rows_move_by_momentum_and_stay_unit_length(crd, outputs, batch, shapes):
    loss = crd(momentum=0.5)
    s, t, b = outputs(shapes.student, 4, seed=1), outputs(shapes.teacher, 4, seed=2), batch(4)
    old_s, old_t = loss.memory_s.clone(), loss.memory_t.clone()
    with torch.no_grad():
        v_s = F.normalize(loss.embed_s.linear(s.embedding), dim=1)
        v_t = F.normalize(loss.embed_t.linear(t.embedding), dim=1)
    loss(s, t, b)
    for new, old, v in ((loss.memory_s, old_s, v_s), (loss.memory_t, old_t, v_t)):
        mixed = 0.5 * old[b.indices] + 0.5 * v
        torch.testing.assert_close(new[b.indices], mixed / mixed.norm(dim=1, keepdim=True))
        untouched = torch.ones(len(old), dtype=torch.bool).index_fill_(0, b.indices, False)
        torch.testing.assert_close(new[untouched], old[untouched], rtol=0, atol=0)
        torch.testing.assert_close(new[b.indices].norm(dim=1), torch.ones(len(b.indices)))


def test_z_is_estimated_once_and_checkpointed(crd, outputs, batch, shapes):
    loss = crd()
    assert float(loss.z_s) < 0 and float(loss.z_t) < 0  # not estimated yet
    loss(outputs(shapes.student, 4, seed=1), outputs(shapes.teacher, 4, seed=2), batch(4, seed=0))
    z_s, z_t = float(loss.z_s), float(loss.z_t)
    assert z_s > 0 and z_t > 0
    loss(outputs(shapes.student, 4, seed=3), outputs(shapes.teacher, 4, seed=4), batch(4, seed=5))
    assert (float(loss.z_s), float(loss.z_t)) == (z_s, z_t)
    assert {"memory_s", "memory_t", "z_s", "z_t"} <= set(loss.state_dict())


def test_a_restored_checkpoint_continues_identically(crd, outputs, batch, shapes):
    first = crd()
    first(outputs(shapes.student, 4, seed=1), outputs(shapes.teacher, 4, seed=2), batch(4, seed=0))
    second = crd()
    second.load_state_dict(first.state_dict())
    step = outputs(shapes.student, 4, seed=3), outputs(shapes.teacher, 4, seed=4)
    a, b = first(*step, batch(4, seed=5)), second(*step, batch(4, seed=5))
    assert {k: v.item() for k, v in a.items()} == {k: v.item() for k, v in b.items()}


def others(anchors: torch.Tensor, num_train: int) -> torch.Tensor:
    """Every position but the anchor's own, one row per anchor."""
    return torch.ones(len(anchors), num_train, dtype=torch.bool).scatter(1, anchors[:, None], False)


def test_negatives_are_distinct_and_never_the_anchor():
    anchors = torch.tensor([0, 7, 19])
    draws = sample_negatives(others(anchors, 20), 19, 19, torch.Generator().manual_seed(0))
    assert draws.shape == (3, 19)
    for anchor, row in zip(anchors, draws):
        assert anchor not in row and len(set(row.tolist())) == 19 and row.max() < 20


def test_a_training_set_smaller_than_k_is_sampled_with_replacement():
    anchors = torch.tensor([0, 5, 9])
    draws = sample_negatives(others(anchors, 10), 500, 9, torch.Generator().manual_seed(0))
    assert draws.shape == (3, 500) and draws.min() >= 0 and draws.max() < 10
    for anchor, row in zip(anchors, draws):
        assert anchor not in row and set(row.tolist()) == set(range(10)) - {int(anchor)}


def test_negatives_follow_the_generator():
    anchors = torch.tensor([1, 2])
    same = [sample_negatives(others(anchors, 100), 30, 99, torch.Generator().manual_seed(3)) for _ in range(2)]
    other = sample_negatives(others(anchors, 100), 30, 99, torch.Generator().manual_seed(4))
    assert torch.equal(same[0], same[1]) and not torch.equal(same[0], other)
