"""The optimal-transport family of distillation losses, and the OT distances behind them.

``losses.ot.functional`` holds differentiable OT distances between point clouds (exact EMD,
IPOT, Sinkhorn and its debiased divergence, sliced and max-sliced Wasserstein, Gaussian W2),
checked against POT in the tests. The loss modules of this package use them:

* ``embedding``: Lohit & Jones (WACV 2022), batch OT of penultimate embeddings, one loss name per
  solver (``ot-ipot`` alias ``ot``, ``ot-emd``, ``ot-sinkhorn``, ``ot-sinkdiv``, ``ot-sliced``,
  ``ot-maxsliced``);
* ``feature``: the same distances on an intermediate stage's spatial features (``ot-feature``);
* ``wkd``: Wasserstein KD, Lv et al. (NeurIPS 2024), on logits (``wkd-l``) and features (``wkd-f``);
* ``sinkd``: batch-wise Sinkhorn KD, Cui et al. (2024) (``sinkd``).
"""

from losses.ot import embedding, feature, sinkd, wkd  # noqa: F401  (importing registers the losses)
from losses.ot import functional
from losses.ot.functional import *  # noqa: F403

__all__ = list(functional.__all__)
