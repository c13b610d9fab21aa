"""Ways to run the same tagging work: ``ramtag run`` itself is the local engine (``cli/run.py``);
this package holds what scaling out needs.

- ``units``: the work cut into units that are tagged and committed whole (a tar shard, or a chunk
  of image files), and what a re-run skips; no engine in it.
- ``worker``: one unit tagged exactly as a local run tags (same loader, pipeline and schema) and
  returned as the bytes of one Parquet part; no engine in it either, so it is tested without one.
- ``ray_engine``: the units handed to actors holding the model through Ray Data; the only module
  that imports Ray, and only imported when ``--engine ray`` is asked for.
"""
