"""mixsup: whole-slide image classification from mixed supervision."""

__version__ = "0.1.0"
