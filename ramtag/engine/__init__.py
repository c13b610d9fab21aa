"""Running a tagging job: what it is (``job``), the loop (``runner``), and where it runs.

- ``job``: every setting of a run, checked without torch, JSON for the Ray actors;
- ``runner``: refs -> batches -> records -> outputs, the one tagging loop;
- ``local``: a job on this machine (``run_job``: ``ramtag run`` without a terminal);
- ``units`` and ``worker``: the work cut into units, and one unit tagged into a Parquet part;
- ``cluster``: a job on a Ray cluster, from the checks to the committed parts;
- ``ray_engine``: the units through Ray Data to the actors (the only module that imports Ray).
"""
