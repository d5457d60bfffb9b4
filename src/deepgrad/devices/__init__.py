"""Array backends beyond NumPy: PyTorch tensors on any device (``torch_backend``).

Imports: deepgrad.core; torch only inside functions, when a torch backend is asked for.
"""
