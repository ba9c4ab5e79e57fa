"""Data in the YouTube-VIS format.

Modules: `ytvis` (read and validate annotation files), `results` (write / read prediction lists),
`synthetic` (generate a synthetic dataset; also `python -m bench.data.synthetic`), `dataset` and
`transforms` (torch clips for training and inference). This package imports only the torch-free
modules, so that the generator's worker processes start quickly.
"""

from bench.data.results import check_results, load_results, masks_to_rles, save_results
from bench.data.ytvis import YTVIS, YTVISFormatError, load_ytvis

__all__ = [
    "YTVIS",
    "YTVISFormatError",
    "check_results",
    "load_ytvis",
    "load_results",
    "masks_to_rles",
    "save_results",
]
