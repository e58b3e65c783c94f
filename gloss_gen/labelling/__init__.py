"""``vgloss label``: bulk labelling of folders, tar shards and path lists into Parquet.

- :mod:`.sources` — what a SOURCE names, in a fixed order;
- :mod:`.label_options` — the run's options, checked without torch or Ray;
- :mod:`.shards` — the shard plan, the manifest, the Parquet schema and atomic part writes;
- :mod:`.shard_labeller` — the shard function: decode ahead, batched forward, scoring, one part;
- :mod:`.ray_engine` — the same shard function on a Ray cluster (Ray Data actors);
- :mod:`.label_job` — :func:`~.label_job.run_label_job`, the job the CLI and the Python API run.
"""
