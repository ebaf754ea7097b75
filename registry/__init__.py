"""The generic registry and plugin discovery behind every named thing in distillbench."""

from registry.core import DISABLE_PLUGINS_ENV, Entry, Registry, parse_names
from registry.errors import ConfigError, UnknownNameError

__all__ = ["ConfigError", "DISABLE_PLUGINS_ENV", "Entry", "Registry", "UnknownNameError", "parse_names"]
