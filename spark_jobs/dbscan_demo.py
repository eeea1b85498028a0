"""spark-submit entry point: DBSCAN on generated blobs (see spark_clustering.jobs.dbscan_demo).

spark-submit --py-files spark_clustering.zip spark_jobs/dbscan_demo.py --points 1000000
"""

import sys

from spark_clustering.jobs.dbscan_demo import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
