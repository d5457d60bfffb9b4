"""One module per ``deepgrad`` command (see deepgrad/cli.py)."""
