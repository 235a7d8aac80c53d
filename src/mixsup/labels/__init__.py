"""What we know about slides: the dataset table and pixel annotations; no torch here. May
import ``render``, ``runtime``, ``config``, ``storage`` and ``errors``; reads no slide."""
