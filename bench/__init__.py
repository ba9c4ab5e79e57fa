"""visbench: data, evaluation, harnesses and reports for attention in video instance segmentation."""
