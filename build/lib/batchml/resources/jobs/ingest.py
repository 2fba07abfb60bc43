"""spark-submit entrypoint: land one run date's files into bronze Delta tables.

    spark-submit jobs/ingest.py --run-date 2024-01-05 [--dataset card_transactions] [--env prod]
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("ingest", sys.argv[1:]))
