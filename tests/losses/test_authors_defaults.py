"""The recipes give the classic losses the settings of the authors' published configurations."""

import pytest

from bench.recipes.resolve import Pair, dataset_recipe, pair_loss_settings, resolve_loss


def resolved(loss: str, pair: str | None = None, dataset: str = "cifar100"):
    tuned = pair_loss_settings(Pair(pair, *pair.split("-")), dataset) if pair else None
    return resolve_loss(loss, dataset_recipe(dataset), {}, *([tuned] if tuned else []))


@pytest.mark.parametrize("pair, lr", [
    ("vgg13_cifar-vgg8_cifar", 0.05), ("resnet50_cifar-vgg8_cifar", 0.05),  # the student's lr (helper/pretrain.py)
    ("resnet32x4-resnet8x4", 0.01), ("wrn_40_2-wrn_16_2", 0.01),  # 0.01 for ResNet/WRN students
    ("vgg13_cifar-mobilenetv2_cifar", 0.01), ("resnet32x4-shufflenetv1_cifar", 0.01),  # their lr is 0.01
])
def test_ft_paraphraser_lr_follows_repdistiller_per_student(pair, lr):
    assert resolved("ft", pair).params["init_lr"] == lr


def test_dist_cifar100_and_imagenet_settings():
    cifar = resolved("dist", "resnet32x4-resnet8x4")  # DIST dist_cifar.yaml
    assert (cifar.weight, cifar.params["tau"], cifar.params["beta"], cifar.params["gamma"]) == (2.0, 4.0, 1.0, 1.0)
    imagenet = resolved("dist", dataset="imagenet")
    assert (imagenet.weight, imagenet.params["tau"]) == (1.0, 1.0)


def test_defaults_follow_the_code_behind_the_crd_table():
    assert resolved("cc").params["variant"] == "repdistiller"
    assert resolved("ft").params["variant"] == "repdistiller"
    crd = resolved("crd").params
    assert (crd["eps"], crd["memory_init"], crd["negatives_from"]) == (1e-7, "uniform", "other_classes")
