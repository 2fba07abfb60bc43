"""spark-submit entrypoint: drift and realized-performance monitoring for one run date (exit 0 on alerts).

    spark-submit jobs/monitor.py --run-date 2024-01-05 [--dataset card_transactions] [--env prod]
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("monitor", sys.argv[1:]))
