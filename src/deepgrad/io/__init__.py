"""Files: atomic writes and safe .npz reading (``files``). Imports nothing of deepgrad."""
