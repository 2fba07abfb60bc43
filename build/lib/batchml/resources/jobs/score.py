"""spark-submit entrypoint: score one run date's events with the champion (exit 3 when fallback rules scored rows).

    spark-submit jobs/score.py --run-date 2024-01-05 [--dataset card_transactions] [--env prod]
    spark-submit jobs/score.py --run-date 2024-01-05 --rescore --reason "rolled back to v3 after incident 42"
"""

import sys

from batchml.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("score", sys.argv[1:]))
