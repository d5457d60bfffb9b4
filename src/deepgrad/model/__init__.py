"""The ``Network`` façade (``net``) and its model file (``file``).

Imports: deepgrad.train, data, devices, io and core.
"""
