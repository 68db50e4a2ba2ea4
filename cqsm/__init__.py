"""cqsm: Continuous Q-Score Matching, the library behind the book.

Modules, one concept each:

- :mod:`cqsm.sde`: the augmented system ``z = (x, a)`` and its Euler–Maruyama simulation;
- :mod:`cqsm.lq`: linear-quadratic closed forms (Riccati, Lyapunov, Kleinman iteration);
- :mod:`cqsm.critics`, :mod:`cqsm.scores`: function families for ``Q_phi`` and ``Psi_theta``;
- :mod:`cqsm.martingale`: policy evaluation by the martingale characterisation;
- :mod:`cqsm.score_matching`: policy improvement by Q-score matching;
- :mod:`cqsm.policy_evaluation`, :mod:`cqsm.lq_cqsm`: the LQ experiments of chapters 4 and 5;
- :mod:`cqsm.envs` (the control interval, the action-diffusion wrapper), :mod:`cqsm.agents`,
  :mod:`cqsm.replay`, :mod:`cqsm.train`, :mod:`cqsm.evaluation`, :mod:`cqsm.results`,
  :mod:`cqsm.migrate`, :mod:`cqsm.presets`, :mod:`cqsm.sweep`, :mod:`cqsm.study`,
  :mod:`cqsm.bench`, :mod:`cqsm.compare`, :mod:`cqsm.diagnostics`, :mod:`cqsm.deep_lq`: the
  deep-RL harness, one training loop for every algorithm;
- :mod:`cqsm.settings`: settings dataclasses, their checks and their command-line options;
- :mod:`cqsm.plots`: the house style and figure saving; :mod:`cqsm.atomic`: atomic writes;
- :mod:`cqsm.manifest`, :mod:`cqsm.figures`, :mod:`cqsm.book`, :mod:`cqsm.cli`: the figure
  pipeline, the book build and the ``cqsm`` command.
"""

__version__ = "0.1.0"
