"""A collapsed run: it trained to its last epoch without diverging, yet ends as a network that has
learnt nothing — at chance, or giving one class to almost every test image. Such a run says
"this loss's settings failed here", not "this loss is a few points worse": it is named in the row
(``collapsed``, ``collapse_reason``) and kept out of every mean, test and rank of a report.
"""

from __future__ import annotations

import math

CHANCE_MARGIN = 0.5  # "at chance": last test top-1 below (1 + CHANCE_MARGIN) x chance (15 % with 10 classes)
ONE_CLASS_SHARE = 90.0  # "one class": the most-predicted class given to at least this % of the test images
OLD_ROW_TOLERANCE = 0.5  # points: how far an older row's top-1 / top-5 may sit from a constant prediction's


def collapse_reason(last_top1: float, top_class_share: float, num_classes: int) -> str:
    """Why a run that did not diverge counts as collapsed, from its last test evaluation; "" when it is healthy."""
    chance = 100 / num_classes
    reasons = []
    if last_top1 < (1 + CHANCE_MARGIN) * chance:
        reasons.append(f"last top-1 {last_top1:.2f} % is within {CHANCE_MARGIN:.0%} of chance ({chance:.2f} %)")
    if top_class_share >= ONE_CLASS_SHARE:
        reasons.append(f"one class predicted for {top_class_share:.1f} % of the test images")
    return "; ".join(reasons)


def collapse_reason_of_older_row(last_top1: float, last_top5: float) -> str:
    """For a row written before collapse was recorded (no prediction share, no class count): collapsed when its
    last top-1 and top-5 are what one class predicted for every image of a balanced C-class test set gives
    (top-1 100/C, top-5 min(5, C) x 100/C); "" otherwise."""
    if not last_top1 > 0 or math.isnan(last_top5):
        return ""
    classes = round(100 / last_top1)
    chance = 100 / classes
    if classes < 2 or abs(last_top1 - chance) > OLD_ROW_TOLERANCE or \
            abs(last_top5 - min(5, classes) * chance) > OLD_ROW_TOLERANCE:
        return ""
    return (f"last top-1 / top-5 {last_top1:.2f} / {last_top5:.2f} % are a constant prediction's on {classes} "
            f"classes (classified on read: the row predates the collapse columns)")
