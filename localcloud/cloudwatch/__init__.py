"""CloudWatch for the local cloud: metric and composite alarms evaluated on a clock with SNS actions,
Embedded Metric Format lines in function logs turned into metrics, and metric widgets rendered as PNG.

moto stores alarms, metric data and dashboards; `executor.py` evaluates and acts, `evaluation.py` holds
the pure alarm arithmetic, `api.py` answers the operations moto lacks, `emf.py` and `widget.py` the rest.
"""
