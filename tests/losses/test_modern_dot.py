"""DOT: the two-momentum step pinned to the authors' update, the default step to plain SGD, resume exactness."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F

from bench.training.cohort import Acceleration, new_student
from bench.recipes.resolve import TrainSettings, resolve_loss
from bench.data.base import DatasetInfo
from bench.models.network import create_network, probe_shapes
from losses import LOSSES, LossContext, ModelShapes, Outputs
from registry import ConfigError

SHAPES = ModelShapes(features=((3, 4, 4),), embedding=3, num_classes=4)
INFO = DatasetInfo("tiny", 5, 3, 16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), augment="crop-flip")
# a large weight decay and learning rate, so a misplaced decay or a swapped momentum shows in every digit
LR, MOMENTUM, DELTA, WD = 0.1, 0.9, 0.075, 0.05


def dot_loss(context, delta=DELTA):
    return LOSSES.get("dot")(context(SHAPES, SHAPES, 8), T=4.0, delta=delta)


def linear_problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    teacher = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(4, (6,), generator=g)
    return x, teacher, labels


def task_and_kd(weight, bias, x, teacher, labels, T=4.0):
    """mdistiller's KD distiller: loss_ce = 0.1 * CE, loss_kd = 0.9 * T^2 * KL(p_t || p_s), summed over classes,
    averaged over the batch."""
    logits = x @ weight.T + bias
    ce = 0.1 * F.cross_entropy(logits, labels)
    p_t = torch.softmax(teacher / T, 1)
    kd = 0.9 * (p_t * (torch.log(p_t) - torch.log_softmax(logits / T, 1))).sum(1).mean() * T * T
    return ce, kd


def test_the_task_momentum_is_beta_minus_delta_and_the_distillation_momentum_beta_plus_delta(context):
    """trainer.py DOT.init_optimizer: m_task = MOMENTUM - DELTA, m_kd = MOMENTUM + DELTA."""
    optimizer = dot_loss(context).build_optimizer([torch.nn.Parameter(torch.zeros(2))], lr=LR, momentum=MOMENTUM,
                                                  weight_decay=WD, nesterov=False)
    group = optimizer.param_groups[0]
    assert group["momentum_task"] == pytest.approx(0.825) and group["momentum_distill"] == pytest.approx(0.975)


def test_three_steps_follow_the_authors_two_momentum_update(context):
    """dot.py: buf_task <- m_task * buf_task + (g_ce + wd * p), buf_kd <- m_kd * buf_kd + g_kd (no decay),
    each buffer starting as its first gradient; p <- p - lr * buf_task - lr * buf_kd."""
    init = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    weight, bias = torch.nn.Parameter(init.clone()), torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    loss = dot_loss(context)
    optimizer = loss.build_optimizer([weight, bias], lr=LR, momentum=MOMENTUM, weight_decay=WD, nesterov=False)

    ref = [init.clone(), torch.zeros(4, dtype=torch.float64)]
    buf_task, buf_kd = [None, None], [None, None]
    for step in range(3):
        x, teacher, labels = linear_problem(step)
        task, kd = task_and_kd(weight, bias, x, teacher, labels)
        loss.optimizer_step(optimizer, task, kd, lambda params: None)

        leaves = [r.clone().requires_grad_(True) for r in ref]
        ce_ref, kd_ref = task_and_kd(*leaves, x, teacher, labels)
        g_task = torch.autograd.grad(ce_ref, leaves, retain_graph=True)
        g_kd = torch.autograd.grad(kd_ref, leaves)
        for i in range(2):
            d_task = g_task[i] + WD * ref[i]
            buf_task[i] = d_task if buf_task[i] is None else (MOMENTUM - DELTA) * buf_task[i] + d_task
            buf_kd[i] = g_kd[i] if buf_kd[i] is None else (MOMENTUM + DELTA) * buf_kd[i] + g_kd[i]
            ref[i] = ref[i] - LR * buf_task[i] - LR * buf_kd[i]
        torch.testing.assert_close(weight.detach(), ref[0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(bias.detach(), ref[1], rtol=1e-12, atol=1e-12)


def test_a_parameter_one_loss_reaches_gets_the_mean_momentum_and_weight_decay(context):
    """dot.py: a parameter missing from the other gradient list uses (m_task + m_kd) / 2, weight decay included."""
    task_only, kd_only = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    optimizer = dot_loss(context).build_optimizer([task_only, kd_only], lr=LR, momentum=MOMENTUM, weight_decay=WD,
                                                  nesterov=False)
    grad = torch.tensor([0.5, -1.0])
    expected = {"task": torch.ones(2), "kd": torch.ones(2)}
    buffers = {"task": None, "kd": None}
    for _ in range(3):
        task_only.grad, kd_only.grad = grad.clone(), None
        optimizer.step([None, grad.clone()])
        for key in expected:
            d = grad + WD * expected[key]
            buffers[key] = d if buffers[key] is None else MOMENTUM * buffers[key] + d
            expected[key] = expected[key] - LR * buffers[key]
    torch.testing.assert_close(task_only.detach(), expected["task"])
    torch.testing.assert_close(kd_only.detach(), expected["kd"])


@pytest.mark.parametrize(("delta", "nesterov", "message"), [(0.2, False, "momentum \\+ delta"),
                                                             (0.0, True, "Nesterov")])
def test_settings_the_trainer_cannot_honour_fail_in_one_line(context, delta, nesterov, message):
    with pytest.raises(ConfigError, match=message):
        dot_loss(context, delta).build_optimizer([torch.nn.Parameter(torch.zeros(1))], lr=LR, momentum=MOMENTUM,
                                                 weight_decay=WD, nesterov=nesterov)


# -- through the harness's Student ---------------------------------------------------------------------------
SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=0.05, momentum=0.9, weight_decay=5e-4, milestones=(1,), gamma=0.1)
CPU = torch.device("cpu")


def student(name: str):
    torch.manual_seed(0)
    teacher, _ = create_network("test_resnet", INFO)
    torch.manual_seed(1)
    network, _ = create_network("test_resnet", INFO)
    spec = resolve_loss(name, {}, {})
    context = LossContext(probe_shapes(network, INFO, CPU), probe_shapes(teacher, INFO, CPU), 64)
    loss = LOSSES.get(spec.name)(context, **spec.params)
    return new_student(name, 0, network, loss, SETTINGS, spec.weight, spec.ce_weight)


def batches(count: int):
    g = torch.Generator().manual_seed(2)
    for step in range(count):
        images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 5, (8,), generator=g)
        yield step, images, labels, Outputs(logits=torch.randn(8, 5, generator=g))


def train(s, steps, start=0):
    for step, images, labels, teacher in list(batches(start + steps))[start:]:
        s.train_step(images, labels, torch.arange(8), teacher, 0, step, accel=Acceleration())


def test_the_default_step_is_one_sgd_step_on_the_weighted_sum():
    """kd through optimizer_step's default: the same weights as a direct backward of 0.1 CE + 0.9 KD and torch SGD."""
    s = student("kd")
    network = copy.deepcopy(s.network)
    sgd = torch.optim.SGD(network.parameters(), lr=SETTINGS.lr, momentum=SETTINGS.momentum,
                          weight_decay=SETTINGS.weight_decay)
    for step, images, labels, teacher in batches(3):
        s.train_step(images, labels, torch.arange(8), teacher, 0, step, accel=Acceleration())
        logits = network.extract(images, s.loss.needs).logits
        p_t = torch.log_softmax(teacher.logits / 4, 1)
        kd = F.kl_div(torch.log_softmax(logits / 4, 1), p_t, reduction="batchmean", log_target=True) * 16
        sgd.zero_grad()
        (0.1 * F.cross_entropy(logits, labels) + 0.9 * kd).backward()
        sgd.step()
    assert type(s.optimizer) is torch.optim.SGD
    for got, expected in zip(s.network.parameters(), network.parameters()):
        assert torch.equal(got, expected)


def test_the_default_step_averages_every_parameter_once(context):
    loss = LOSSES.get("kd")(context(SHAPES, SHAPES, 8), T=4.0)
    params = [torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))]
    optimizer = loss.build_optimizer(params, lr=LR, momentum=MOMENTUM, weight_decay=WD, nesterov=False)
    calls = []
    loss.optimizer_step(optimizer, params[0].sum(), params[1].sum(), calls.append)
    assert len(calls) == 1 and [id(p) for p in calls[0]] == [id(p) for p in params]


def test_a_dot_student_trains_with_both_buffers_and_unlike_kd():
    dot, kd = student("dot"), student("kd")
    train(dot, 2)
    train(kd, 2)
    assert all({"task_momentum", "distillation_momentum"} <= set(dot.optimizer.state[p])
               for p in dot.network.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(dot.network.parameters(), kd.network.parameters()))


def test_a_resumed_dot_student_continues_exactly():
    uninterrupted = student("dot")
    train(uninterrupted, 4)
    first = student("dot")
    train(first, 2)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    resumed = student("dot")
    resumed.load_state_dict(torch.load(buffer, weights_only=True))  # as bench.store.checkpoint reads it
    train(resumed, 2, start=2)
    for a, b in zip(resumed.network.parameters(), uninterrupted.network.parameters()):
        assert torch.equal(a, b)
    for p, q in zip(resumed.network.parameters(), uninterrupted.network.parameters()):
        for key in ("task_momentum", "distillation_momentum"):
            assert torch.equal(resumed.optimizer.state[p][key], uninterrupted.optimizer.state[q][key])
