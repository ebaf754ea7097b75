"""Loss settings are layered: loss recipe <- dataset recipe <- the pair's tuned settings <- --set."""

from __future__ import annotations

import pytest

from bench.recipes.resolve import (
    Pair, dataset_recipe, loss_schedule, pair_catalog, pair_loss_settings, resolve_loss, resolve_train,
)


def dkd_beta(pair: str, dataset: str = "cifar100", overrides: dict | None = None) -> float:
    teacher, student = pair.split("-")
    tuned = pair_loss_settings(Pair(pair, teacher, student), dataset)
    return resolve_loss("dkd", dataset_recipe(dataset), overrides or {}, tuned).params["beta"]


@pytest.mark.parametrize("pair, beta", [
    ("resnet110-resnet32", 2.0), ("resnet56-resnet20", 2.0),  # mdistiller configs/cifar100/dkd/*.yaml
    ("wrn_40_2-wrn_16_2", 6.0), ("vgg13_cifar-mobilenetv2_cifar", 6.0),
    ("resnet32x4-resnet8x4", 8.0), ("resnet32x4-shufflenetv2_cifar", 8.0),  # the loss recipe's default
])
def test_dkd_takes_the_beta_tuned_for_its_cifar100_pair(pair, beta):
    assert dkd_beta(pair) == beta


def test_command_line_beats_the_pair_and_other_datasets_ignore_it():
    assert dkd_beta("resnet110-resnet32", overrides={"beta": 3.0}) == 3.0
    assert dkd_beta("resnet110-resnet32", dataset="svhn") == 8.0


def test_imagenet_dkd_follows_its_imagenet_setting():
    spec = resolve_loss("dkd", dataset_recipe("imagenet"), {})
    assert (spec.params["beta"], spec.params["T"], spec.params["warmup"], spec.ce_weight) == (0.5, 1.0, 0.01, 1.0)


@pytest.mark.parametrize("name, entry", [(n, e) for n, e in pair_catalog().items() if "losses" in e])
def test_every_tuned_setting_names_a_loss_and_its_hyperparameters(name, entry):
    teacher, student = name.split("-")
    tuned = pair_loss_settings(Pair(name, teacher, student), entry["dataset"])
    for loss in tuned:
        resolve_loss(loss, dataset_recipe(entry["dataset"]), {}, tuned)  # raises on an unknown loss or key
        assert tuned[loss]["source"]
        recipe = dataset_recipe(entry["dataset"])
        for protocol in ("authors",) if "authors" in recipe.get("protocols", {}) else ():
            resolve_train(recipe, protocol, student, {}, loss_schedule(recipe, protocol, loss, tuned))  # known keys
