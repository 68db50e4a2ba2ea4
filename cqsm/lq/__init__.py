"""The exact continuous-time core: the augmented system, linear-quadratic closed forms, policy
evaluation by the martingale characterisation, Q-score matching, and CQSM on LQ problems.

Everything here is torch and numpy on simulated paths; nothing imports Gymnasium or the deep-RL
harness (:mod:`cqsm.rl`), so that every number it computes can be checked against a closed form.

- :mod:`cqsm.lq.sde`: the augmented system ``z = (x, a)``, its Euler–Maruyama simulation and
  the returns to go of simulated paths;
- :mod:`cqsm.lq.problem`: the LQ problem and its closed forms (Riccati, Lyapunov, Kleinman);
- :mod:`cqsm.lq.critics`, :mod:`cqsm.lq.scores`: function families for ``Q_phi`` and
  ``Psi_theta``;
- :mod:`cqsm.lq.martingale`: the martingale loss, orthogonality conditions and their solves;
- :mod:`cqsm.lq.score_matching`: policy improvement by Q-score matching;
- :mod:`cqsm.lq.evaluation`: iterative policy evaluation compared across methods (chapter 4);
- :mod:`cqsm.lq.cqsm`: CQSM on LQ problems from simulated data alone (chapter 5);
- :mod:`cqsm.lq.intervals`: the control interval in closed form: each method's fixed point at
  step ``dt`` and its exact continuous-time value.
"""
