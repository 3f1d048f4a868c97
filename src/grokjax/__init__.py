"""grokjax: train whole grids of grokking experiments in one compiled call."""

from importlib.metadata import PackageNotFoundError, version

from grokjax.api import Results, load, run

try:
    __version__ = version("grokjax")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["Results", "__version__", "load", "run"]
