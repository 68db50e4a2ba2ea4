"""The deep-RL harness: environments at a control interval in seconds, five agents on one
interface, one training loop, and the tools that read, compare and study the runs.

It builds on the exact core (:mod:`cqsm.lq`: the LQ problem as an env, the Riccati check) and
never imports the book pipeline (:mod:`cqsm.pipeline`).

- :mod:`cqsm.rl.envs`: ``make`` at a control interval, the action-diffusion wrapper, the LQ env;
- :mod:`cqsm.rl.agents`: CQSM, TD3, SAC, Diffusion-QL and QSM, each in one file;
- :mod:`cqsm.rl.rollout`: the one env-stepping loop that training, evaluation, the bench and
  the diagnostics share;
- :mod:`cqsm.rl.replay`, :mod:`cqsm.rl.train`, :mod:`cqsm.rl.evaluation`: the replay buffer,
  the training loop and the evaluation protocol;
- :mod:`cqsm.rl.results`, :mod:`cqsm.rl.runs`, :mod:`cqsm.rl.migrate`: the run folder (rows,
  settings, checkpoints, provenance), loading and reading runs, migrating old ones;
- :mod:`cqsm.rl.presets`, :mod:`cqsm.rl.sweep`, :mod:`cqsm.rl.study`, :mod:`cqsm.rl.arms`,
  :mod:`cqsm.rl.interval_study`, :mod:`cqsm.rl.four_tasks`: per-task settings, resumable
  sweeps, ablation studies, chapter 8's arms, the control-interval study and the four-task
  comparison;
- :mod:`cqsm.rl.compare`, :mod:`cqsm.rl.bench`, :mod:`cqsm.rl.diagnostics`,
  :mod:`cqsm.rl.smoothness`, :mod:`cqsm.rl.riccati`: returns tables, throughput, what a trained
  agent does, how smooth its actions are (rate and time at the box's faces), and the deep agent
  against the Riccati solution;
- :mod:`cqsm.rl.filmstrip`: frames of a trained policy's evaluation episode, rendered once
  headless and committed;
- :mod:`cqsm.rl.aggregate`: statistics across tasks on ``rliable`` (stratified bootstrap
  intervals, the interquartile mean, performance profiles, the probability of improvement).
"""
