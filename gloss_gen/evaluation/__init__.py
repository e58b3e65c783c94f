"""``vgloss eval``: accuracy of description methods side by side on a labelled image set.

- :mod:`.datasets` — the data layouts (class folders, wnid file names, labels CSV, STL-10 and
  CIFAR-10 binaries) and mapping their labels onto a class set;
- :mod:`.runner` — embedding every image once (cached), building or loading each method's
  classifier, scoring with :class:`gloss_gen.classify.scoring.ScoringHead`;
- :mod:`.metrics` — top-1/top-5 accuracy, Wilson score intervals, per-class accuracy, confusions;
- :mod:`.report` — the console table, ``results.json`` and the ``top1.png`` chart.
"""
