"""``mixsup view``: a local web viewer of a prediction folder's slides, maps and regions."""
