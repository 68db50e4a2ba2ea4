"""cqsm: Continuous Q-Score Matching, the library behind the book.

Three layers, each importing only those below it (a test walks every import):

- :mod:`cqsm.lq`: the exact continuous-time core (the augmented system, LQ closed forms,
  martingale policy evaluation, Q-score matching, CQSM on LQ problems);
- :mod:`cqsm.rl`: the deep-RL harness (environments at a control interval, five agents, one
  training loop, sweeps, studies, comparisons);
- :mod:`cqsm.pipeline`: the figure manifest, chapter execution, the book build and the plots;

with two utilities at the bottom that every layer uses, :mod:`cqsm.atomic` (atomic writes) and
:mod:`cqsm.settings` (settings checks and their command-line options), and the ``cqsm``
command on top (:mod:`cqsm.cli`).
"""

__version__ = "0.1.0"
