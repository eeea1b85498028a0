"""spark-submit entry point of the sweep job.

    spark-submit spark_jobs/sweep.py --config examples/sweep.toml \
        [--input PATH] [--output PATH] [--run-date YYYY-MM-DD] [--tracking BACKEND]

Parses the arguments and calls :func:`spark_clustering.jobs.sweep.main`. The library must be
importable: installed on the cluster (EMR bootstrap action), shipped with ``--py-files``, or
found in ``lib/`` next to this folder when run from a checkout.
"""

from __future__ import annotations

import os
import sys

try:
    import spark_clustering  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

from spark_clustering.jobs.sweep import main

if __name__ == "__main__":
    sys.exit(main())
