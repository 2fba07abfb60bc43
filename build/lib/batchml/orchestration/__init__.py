"""Airflow-side logic for the batchml DAGs (the DAG files in ``dags/`` only wire it).

- ``params``: the trigger form's Params and their validation (run date, dataset, override);
- ``tasks``: small Python task callables (resolve the run, record an override, read the gate's
  verdict, turn a monitoring retraining request into an Asset event) and the failure callback;
- ``operators``: ``StageSubmitOperator``, one ``jobs/<stage>.py`` entrypoint on Spark through the
  Spark provider's ``SparkSubmitOperator`` (connection ``spark_default``);
- ``demo``: the ``batchml demo`` driver that runs the nightly DAG through Airflow.

Importing this package stays cheap (Airflow and the standard library only): the DAG processor
parses DAG files often, so config, Spark and the lake are loaded inside tasks, never at import.
"""
