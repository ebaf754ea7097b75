"""The networks: ``network`` wraps a timm model (its normalisation, small-input stem, the outputs a
loss needs); ``zoo`` registers the CIFAR architectures of the CRD benchmark in timm."""
