"""spark-submit entrypoint: write one run date's offline features and entity states to the online store.

    spark-submit jobs/materialize.py --run-date 2024-01-05 [--dataset card_transactions] [--env prod]
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("materialize", sys.argv[1:]))
