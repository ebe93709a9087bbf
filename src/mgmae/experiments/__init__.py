"""Experiments built on the engine, kept out of the library core.

* :mod:`~mgmae.experiments.study`: ``mgmae study`` (the command), with
  :mod:`~mgmae.experiments.plan` (the recipe), :mod:`~mgmae.experiments.runs` (running and
  caching), :mod:`~mgmae.experiments.report` (tables, plots, Markdown);
* :mod:`~mgmae.experiments.compare`: ``mgmae finetune CK --compare-scratch [--seeds N]``;
* :mod:`~mgmae.experiments.stats`: the one significance test both use (paired t-test).

Nothing is imported here: ``import mgmae.experiments`` stays cheap.
"""
