"""The book and figure pipeline: the figure manifest, executing chapters with papermill, the
Jupyter Book build, and the one plotting style every figure uses.

- :mod:`cqsm.pipeline.manifest`: ``paper_figures/manifest.yml`` and its checks;
- :mod:`cqsm.pipeline.figures`: ``cqsm figures`` (run every chapter at a profile);
- :mod:`cqsm.pipeline.book`: ``cqsm book`` (build the HTML from the executed chapters);
- :mod:`cqsm.pipeline.plots`: the house style, figure saving and the shared plot types;
- :mod:`cqsm.pipeline.page`: the page's width and ``say``, a printed sentence wrapped to it.
"""
