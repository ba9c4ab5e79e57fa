"""Data in the YouTube-VIS format.

Modules: `ytvis` (read and validate annotation files; `layout`, the directory layout), `results`
(write / read prediction lists), `synthetic` (generate a synthetic dataset, identified by a
`SyntheticSpec`; also `python -m bench.data.synthetic`), `source` (`resolve_data`: the paths a
`--data` option names), `dataset` and `transforms` (torch clips for training and inference), `cli`
(command-line helpers). This package imports only the torch-free modules, and not `synthetic`
(which `python -m bench.data.synthetic` runs as a script), so that the generator's worker
processes start quickly.
"""

from bench.data.results import check_results, load_results, save_results
from bench.data.source import resolve_data
from bench.data.ytvis import YTVIS, YTVISFormatError, layout, load_ytvis

__all__ = [
    "YTVIS",
    "YTVISFormatError",
    "check_results",
    "layout",
    "load_ytvis",
    "load_results",
    "resolve_data",
    "save_results",
]
