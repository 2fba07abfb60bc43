"""spark-submit entrypoint: build one run date's partition of the point-in-time feature table.

    spark-submit jobs/build_features.py --run-date 2024-01-05 [--dataset card_transactions] [--env prod]
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("features", sys.argv[1:]))
