"""The math: activations (forward and derivative side by side), losses, initializers,
dropout masks, the reference network (the course's formulas), theta's flat order, the
array namespace and argument checks.

Imports: NumPy and array-api-compat only; nothing else of deepgrad, no matplotlib, torch
or pandas (import-linter contracts in pyproject.toml).
"""
