"""Optimizers as pure (init, update) pairs, their in-place flat form, and learning-rate
schedules.

Imports: deepgrad.core only.
"""
