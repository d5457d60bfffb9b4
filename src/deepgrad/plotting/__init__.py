"""Figures: learning curves (``curves``), gradient-check errors (``gradcheck``), probes
(``probe``) and batch-size studies (``batch``). matplotlib is imported only here.

Imports: deepgrad.diagnostics and below.
"""
