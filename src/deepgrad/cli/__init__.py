"""The ``deepgrad`` command: ``main`` parses, one module per command calls the library and
writes files. Nothing imports cli.
"""
