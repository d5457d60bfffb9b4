"""Looking inside a network: gradient checking (``gradcheck``, exact differences in
``diffprop``), the per-layer probe of vanishing and exploding signals (``probe``), LSUV
initialization, the batch-size study (``batchsize``), planted bugs (``bugs``) and metrics.

Imports: deepgrad.model, train and below; never plotting or cli.
"""
