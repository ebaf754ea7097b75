"""K training steps of a float64 cohort (kd, sp, crd) on this process's slices of the synthetic dataset's
global batches, then rank 0 saves every student's network and loss state (CRD's memory banks included).

Run by test_ddp.py twice: as one plain process, and under torchrun with two gloo processes. In float64
the reduction order of the all-reduce and of the gathered batch changes a weight by ~1e-15 relative,
so any difference the test sees beyond that is a difference in what was computed.

    python ddp_steps.py OUT K [--no-gradient-average]
"""

from __future__ import annotations

import sys

import torch

torch.set_default_dtype(torch.float64)  # before any module is built: networks, heads and banks in float64

from bench.training.cohort import Acceleration, cohort_step, new_student  # noqa: E402
from bench.recipes.resolve import dataset_recipe, resolve_loss, resolve_pair, resolve_train  # noqa: E402
from bench.data import DataRequest, load_dataset  # noqa: E402
from bench.data.stream import Loading, make_stream  # noqa: E402
from bench.models.network import create_network, probe_shapes  # noqa: E402
from bench.training.streams import StudentStreams  # noqa: E402
from bench.training.distributed import World, join_world, sync_batchnorm  # noqa: E402
from losses import LOSSES, LossContext  # noqa: E402
from losses.base import MODEL_NEEDS  # noqa: E402

LOSS_NAMES = ("kd", "sp", "crd")  # per-example; batch-wise on gathered features; batch-wise with a memory bank


def main(out: str, steps: int) -> None:
    torch.set_num_threads(1)
    world, device = join_world("cpu")
    device = torch.device(device)
    data = load_dataset("synthetic", DataRequest())
    recipe = dataset_recipe("synthetic")
    pair = resolve_pair(None, None, None, recipe)
    settings = resolve_train(recipe, "standard", pair.student, {})
    torch.manual_seed(0)
    teacher, _ = create_network(pair.teacher, data.info)
    teacher.eval()
    students = []
    for index, name in enumerate(LOSS_NAMES):
        spec = resolve_loss(name, recipe, {}, {})
        torch.manual_seed(1)  # every student starts from the same weights, in both runs
        network = sync_batchnorm(create_network(pair.student, data.info)[0], world)
        context = LossContext(probe_shapes(network, data.info, device), probe_shapes(teacher, data.info, device),
                              len(data.train))
        torch.manual_seed(2 + index)
        loss = sync_batchnorm(LOSSES.get(name)(context, **spec.params), world)
        students.append(new_student(name, 0, network, loss, settings, spec.weight, spec.ce_weight, world))
    needs = frozenset().union(*(s.loss.needs & MODEL_NEEDS for s in students))
    stream = make_stream(data.train, data.info, settings.batch_size, device, train=True, seed=0,
                         loading=Loading("resident"), shard=world.shard)
    for student in students:
        student.network.train()
        student.loss.train()
    streams = StudentStreams(len(students), device, False)
    for step, (images, labels, indices) in zip(range(steps), stream.epoch(0)):
        cohort_step(students, teacher, needs, images.double(), labels, indices, 0, step, Acceleration(), streams)
    if world.is_main:
        torch.save({s.name: {"network": s.network.state_dict(), "loss": s.loss.state_dict()} for s in students}, out)


if __name__ == "__main__":
    if "--no-gradient-average" in sys.argv:  # the negative control: each rank steps on its own slice's gradient
        World.average_gradients = lambda self, parameters: None
    main(sys.argv[1], int(sys.argv[2]))
