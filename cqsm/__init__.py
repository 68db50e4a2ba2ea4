"""cqsm: Continuous Q-Score Matching, the library behind the book.

Modules, one concept each: :mod:`cqsm.sde` (the augmented system and its simulation),
:mod:`cqsm.lq` (linear-quadratic closed forms), :mod:`cqsm.critics` and :mod:`cqsm.scores`
(function families for ``Q_phi`` and ``Psi_theta``), :mod:`cqsm.martingale` (policy evaluation),
:mod:`cqsm.score_matching` (policy improvement), :mod:`cqsm.lq_cqsm` (CQSM on LQ problems),
:mod:`cqsm.plots` (the house style and figure saving).
"""

__version__ = "0.1.0"
