"""CIFAR architectures of the CRD / RepDistiller CIFAR-100 benchmark, registered in timm's registry.

Importing ``bench.models.zoo`` registers them; from then on they are ordinary timm models::

    import timm
    import bench.models.zoo  # noqa: F401  (registers the models)

    model = timm.create_model("resnet8x4", num_classes=100)

Registered names, by module:

* ``cifar_resnet``: resnet8, resnet14, resnet20, resnet32, resnet44, resnet56, resnet110,
  resnet8x4, resnet32x4, resnet50_cifar
* ``wrn``: wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2
* ``cifar_vgg``: vgg8_cifar, vgg11_cifar, vgg13_cifar, vgg16_cifar, vgg19_cifar
* ``mobilenetv2_cifar``: mobilenetv2_cifar
* ``shufflenet_cifar``: shufflenetv1_cifar, shufflenetv2_cifar

RepDistiller's own names are kept where timm has no model of that name; generic names that timm
uses for ImageNet models (vgg*, MobileNetV2, ShuffleNet, ResNet50) take a ``_cifar`` suffix.
Registration refuses to replace a model that timm (or anyone else) already registered.

Every model defaults to ``num_classes=100`` and 3x32x32 inputs with CIFAR-100 mean/std in its
``pretrained_cfg``; none has pretrained weights, so nothing is ever downloaded. Each offers timm's
surface: ``forward_features``, ``forward_head(pre_logits=)``, ``forward_intermediates`` (the stem,
then one tap per stage — each family's module says what a tap is), ``prune_intermediate_layers``,
``feature_info``, ``num_features``, ``get_classifier``/``reset_classifier``, ``features_only=True``.
"""

from __future__ import annotations

from timm.models import list_models, model_entrypoint

from bench.models.zoo import cifar_resnet, cifar_vgg, mobilenetv2_cifar, shufflenet_cifar, wrn  # noqa: F401  (registers)


def list_zoo_models(filter: str = '') -> list[str]:
    """Names of the models registered by ``bench.models.zoo`` (timm ``fnmatch`` filter), in timm's natural order."""
    return [name for name in list_models(filter) if model_entrypoint(name).__module__.startswith(f'{__name__}.')]


__all__ = ['list_zoo_models']
