"""Reading slides, finding tissue and tiling; knows nothing of labels or models. May import
``render``, ``runtime``, ``config``, ``storage`` and ``errors``."""

from mixsup.slides.reader import Slide, open_slide
from mixsup.slides.tiling import TileSet, tile_slide

__all__ = ["Slide", "TileSet", "open_slide", "tile_slide"]
