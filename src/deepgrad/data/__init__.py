"""Examples and tables: the epoch order of every engine (block shuffle for memory maps),
synthetic and memory-mapped data sets (``arrays``), the bundled data sets (``bundled``),
CSV/TSV tables (``tables``), preprocessing and its record in the model file.

Imports: deepgrad.core only (pandas and scikit-learn inside the functions that need them).
"""
