"""Evaluation of video instance segmentation results with the official YouTube-VIS semantics.

`evaluate(gt, results)` returns the COCO-style summary as a dict; `python -m bench.evaluation
--gt FILE --results FILE` prints it in COCO's layout.
"""

from bench.evaluation.ytvis_eval import evaluate, summary_lines

__all__ = ["evaluate", "summary_lines"]
