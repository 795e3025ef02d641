"""lesionkit: a command-line toolkit for skin-lesion image classification research."""

__version__ = "0.1.0"
