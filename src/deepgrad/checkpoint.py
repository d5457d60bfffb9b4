"""Compatibility: checkpoints live in ``deepgrad.train.checkpoint``."""

from .train.checkpoint import *  # noqa: F403
from .train.checkpoint import __all__  # noqa: F401
