"""Airflow-side logic for the batchml DAGs (the DAG files in ``dags/`` only wire it).

- ``params``: the trigger form's Params and their validation (run date, dataset, override);
- ``tasks``: small Python task callables (resolve the run, record an override, read the gate's
  verdict, turn a monitoring retraining request into an Asset event) and the failure callback;
- ``lake_state``: everything the DAG side reads from or writes to the lake (``DAG_SIDE_ACCESS``);
- ``operators``: ``StageOperator``, one ``jobs/<stage>.py`` entrypoint on Spark, through
  ``spark-submit`` or EMR Serverless as ``orchestration.submit`` in the config says;
- ``demo``: the ``batchml demo`` driver that runs the nightly DAG through Airflow.

Importing this package stays cheap (Airflow and the standard library only): the DAG processor
parses DAG files often, so config, Spark and the lake are loaded inside tasks, never at import.
"""
