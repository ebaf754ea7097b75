"""Every model of ``bench.models.zoo`` against its reference size and against timm's model surface.

The tests are parametrised over the models ``bench.models.zoo`` registers, so a new variant is covered as
soon as it is registered (and fails until its reference parameter count is added below). The
network is disabled for the whole module: creating a model must never download anything.
"""

from __future__ import annotations

import copy
import socket

import pytest
import timm
import torch
from timm.data import resolve_model_data_config
from timm.models import model_entrypoint

import bench.models.zoo
from bench.models.zoo import list_zoo_models
from bench.models.zoo._base import CIFAR100_MEAN, CIFAR100_STD, register_model

MODELS = list_zoo_models()
SIZE = 32

# Parameters with num_classes=100, counted from the reference implementation the CRD table was
# trained with: RepDistiller, https://github.com/HobbitLong/RepDistiller, models/resnet.py, wrn.py,
# vgg.py (``vgg*_bn``), resnetv2.py (``ResNet50``), ShuffleNetv1.py, ShuffleNetv2.py at commit
# eedab9d, mobilenetv2.py (``mobile_half``) at b13aecc — every conv, BN affine and linear weight.
# The architectures were checked against that code by loading the same weights into both and
# comparing logits and feature lists. Rounded to millions they give the figures quoted for the CRD
# table's models (QUOTED_MILLIONS); weiaicunzai/pytorch-cifar100's README gives 23.7M for the same
# CIFAR ResNet-50. VGG8 (3,965,028) and ShuffleNetV2 (1,355,528) also appear as 3.96M and 1.35M,
# their truncations (rounded: 3.97M, 1.36M).
REFERENCE_PARAMS = {
    'resnet8': 83_892,
    'resnet14': 181_108,
    'resnet20': 278_324,
    'resnet32': 472_756,
    'resnet44': 667_188,
    'resnet56': 861_620,
    'resnet110': 1_736_564,
    'resnet8x4': 1_233_540,
    'resnet32x4': 7_433_860,
    'resnet50_cifar': 23_705_252,
    'wrn_16_1': 180_916,
    'wrn_16_2': 703_284,
    'wrn_40_1': 569_780,
    'wrn_40_2': 2_255_156,
    'vgg8_cifar': 3_965_028,
    'vgg11_cifar': 9_277_284,
    'vgg13_cifar': 9_462_180,
    'vgg16_cifar': 14_774_436,
    'vgg19_cifar': 20_086_692,
    'mobilenetv2_cifar': 812_836,
    'shufflenetv1_cifar': 949_258,
    'shufflenetv2_cifar': 1_355_528,
}

# As quoted in millions (within 0.01M of the exact counts above).
QUOTED_MILLIONS = {
    'resnet8x4': 1.23, 'resnet32x4': 7.43, 'wrn_40_2': 2.26, 'wrn_16_2': 0.70, 'wrn_40_1': 0.57,
    'resnet56': 0.86, 'resnet20': 0.28, 'resnet110': 1.74, 'resnet32': 0.47, 'vgg13_cifar': 9.46,
    'vgg8_cifar': 3.96, 'mobilenetv2_cifar': 0.81, 'shufflenetv1_cifar': 0.95, 'shufflenetv2_cifar': 1.35,
    'resnet50_cifar': 23.71,
}


@pytest.fixture(autouse=True, scope='module')
def one_thread():
    """Small CPU forwards: one intra-op thread avoids oversubscription on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('network access while building a zoo model')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    monkeypatch.setattr(socket, 'create_connection', refuse)


_CACHE: dict[str, torch.nn.Module] = {}


def built(name: str) -> torch.nn.Module:
    """One eval-mode instance per model for the read-only tests (copy before changing it)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = timm.create_model(name, pretrained=False).eval()
    return _CACHE[name]


def images(batch: int = 2, chans: int = 3) -> torch.Tensor:
    return torch.randn(batch, chans, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


# --- the registry -----------------------------------------------------------------------------


def test_every_model_is_registered_documented_and_counted():
    assert MODELS, 'bench.models.zoo registered no model'
    assert sorted(MODELS) == sorted(REFERENCE_PARAMS), 'REFERENCE_PARAMS must list exactly the registered models'
    undocumented = [name for name in MODELS if name not in bench.models.zoo.__doc__]
    assert not undocumented, f'bench.models.zoo docstring does not list {undocumented}'


@pytest.mark.parametrize('name', MODELS)
def test_name_is_ours_not_a_timm_model(name):
    """A zoo name resolves to the zoo's entrypoint; the registration guard makes a clash fail at import."""
    assert model_entrypoint(name).__module__.startswith('bench.models.zoo.')


def test_registering_a_timm_name_is_refused():
    def resnet50(pretrained=False, **kwargs):  # same name as timm's ImageNet ResNet-50
        raise AssertionError('never built')

    with pytest.raises(RuntimeError, match="'resnet50' is already registered by timm.models.resnet"):
        register_model(resnet50)
    assert model_entrypoint('resnet50').__module__ == 'timm.models.resnet'


# --- sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', MODELS)
def test_parameter_count_matches_reference(name):
    if name not in REFERENCE_PARAMS:
        pytest.fail(f'add the reference parameter count of {name} (and its source) to REFERENCE_PARAMS')
    model = built(name)
    count = sum(p.numel() for p in model.parameters())
    assert model.num_classes == 100
    assert count == REFERENCE_PARAMS[name]
    if name in QUOTED_MILLIONS:
        assert abs(count / 1e6 - QUOTED_MILLIONS[name]) < 0.01


# --- timm's surface ---------------------------------------------------------------------------


@pytest.mark.parametrize('name', MODELS)
def test_forward_features_head_and_logits(name):
    model, x = built(name), images()
    reduction = model.feature_info[-1]['reduction']
    with torch.no_grad():
        features = model.forward_features(x)
        embedding = model.forward_head(features, pre_logits=True)
        logits = model(x)
    assert features.shape == (2, model.num_features, SIZE // reduction, SIZE // reduction)
    assert embedding.shape == (2, model.num_features) and model.head_hidden_size == model.num_features
    assert logits.shape == (2, 100)
    torch.testing.assert_close(model.forward_head(features), logits)


@pytest.mark.parametrize('name', MODELS)
def test_forward_intermediates_follow_feature_info(name):
    model, x = built(name), images()
    info = model.feature_info
    assert [f['module'] for f in info] == ['stem'] + [f'stages.{i}' for i in range(len(info) - 1)]
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        features = model.forward_features(x)
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        first_and_last = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
        early_final, early_taps = model.forward_intermediates(x, indices=[1], stop_early=True)
    assert len(taps) == len(info)
    for tap, f in zip(taps, info):
        assert tap.shape == (2, f['num_chs'], SIZE // f['reduction'], SIZE // f['reduction'])
    torch.testing.assert_close(final, features)
    for got, want in zip(last_two + first_and_last, taps[-2:] + [taps[0], taps[-1]]):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(early_final, taps[1])
    torch.testing.assert_close(early_taps[0], taps[1])


@pytest.mark.parametrize('name', MODELS)
def test_norm_intermediate_is_the_pooled_map_unless_a_conv_head_follows(name):
    model, x = built(name), images()
    with torch.no_grad():
        last = model.forward_intermediates(x, indices=1, norm=True, intermediates_only=True)[0]
        features = model.forward_features(x)
    if isinstance(model.conv_head, torch.nn.Identity):
        torch.testing.assert_close(last, features)
    else:
        assert last.shape[1] == model.feature_info[-1]['num_chs'] != model.num_features


@pytest.mark.parametrize('name', MODELS)
def test_constructor_arguments(name):
    model = timm.create_model(name, in_chans=1, num_classes=7, drop_rate=0.1).eval()
    assert model.in_chans == 1 and model.num_classes == 7 and model.drop_rate == 0.1
    assert model.pretrained_cfg['num_classes'] == 100  # the config describes CIFAR-100, not this head
    with torch.no_grad():
        assert model(images(batch=1, chans=1)).shape == (1, 7)


@pytest.mark.parametrize('name', MODELS)
def test_reset_classifier(name):
    model = copy.deepcopy(built(name))
    x = images()
    model.reset_classifier(10)
    assert model.num_classes == 10 and model.get_classifier().out_features == 10
    assert model.get_classifier(name_only=True) == 'fc' and model.get_submodule('fc') is model.get_classifier()
    with torch.no_grad():
        assert model(x).shape == (2, 10)
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)
        model.reset_classifier(0, global_pool='')
        assert model(x).shape[:2] == (2, model.num_features) and model(x).ndim == 4


@pytest.mark.parametrize('name', MODELS)
def test_pretrained_cfg_is_cifar100_without_weights(name):
    model = built(name)
    cfg = model.pretrained_cfg
    assert model.default_cfg is cfg
    assert cfg['input_size'] == (3, SIZE, SIZE) and cfg['num_classes'] == 100
    assert tuple(cfg['mean']) == CIFAR100_MEAN and tuple(cfg['std']) == CIFAR100_STD
    assert not any(cfg.get(key) for key in ('url', 'file', 'hf_hub_id', 'state_dict'))
    assert not timm.is_model_pretrained(name) and name not in timm.list_pretrained()
    first_conv = model.get_submodule(cfg['first_conv'])
    assert isinstance(first_conv, torch.nn.Conv2d) and first_conv.in_channels == 3
    assert isinstance(model.get_submodule(cfg['classifier']), torch.nn.Linear)
    data = resolve_model_data_config(model)
    assert data['input_size'] == (3, SIZE, SIZE) and data['crop_pct'] == 1.0
    assert tuple(data['mean']) == CIFAR100_MEAN and tuple(data['std']) == CIFAR100_STD


@pytest.mark.parametrize('name', MODELS)
def test_pretrained_true_never_downloads(name):
    """There are no weights: timm refuses (or, in older versions, warns and initialises randomly)."""
    try:
        timm.create_model(name, pretrained=True)
    except RuntimeError as exc:
        assert 'No pretrained weights' in str(exc)


@pytest.mark.parametrize('name', MODELS)
def test_features_only_and_pruning(name):
    reference = built(name)
    with torch.no_grad():
        taps = reference.forward_intermediates(images(), intermediates_only=True)

        torch.manual_seed(0)
        extractor = timm.create_model(name, features_only=True, out_indices=(1, -1)).eval()
        assert extractor.feature_info.channels() == [taps[1].shape[1], taps[-1].shape[1]]
        # the wrapper pruned everything after the last stage: same maps as the full model
        for got, want in zip(extractor(images()), (taps[1], taps[-1])):
            torch.testing.assert_close(got, want)

        pruned = copy.deepcopy(reference)
        assert pruned.prune_intermediate_layers(indices=[1]) == [1]
        assert len(pruned.stages) == 1 and pruned.num_features == reference.feature_info[1]['num_chs']
        kept = pruned.forward_intermediates(images(), indices=[1], intermediates_only=True)
        torch.testing.assert_close(kept[0], taps[1])
        assert pruned(images()).ndim == 4  # the head is gone: unpooled features


@pytest.mark.parametrize('name', MODELS)
def test_same_seed_same_initialisation(name):
    torch.manual_seed(0)
    again = timm.create_model(name)
    for (key, a), b in zip(built(name).state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), key


def test_grad_checkpointing_matches_plain_forward():
    model = copy.deepcopy(built('resnet8')).train()
    x = images()
    torch.manual_seed(0)
    plain = model(x)
    model.set_grad_checkpointing()
    torch.manual_seed(0)
    checkpointed = model(x)
    checkpointed.sum().backward()
    torch.testing.assert_close(plain, checkpointed)
    assert model.stem[0].weight.grad is not None
