"""CloudWatch for the local cloud: metric and composite alarms evaluated on a clock with SNS actions,
Embedded Metric Format lines in function logs turned into metrics, and metric widgets rendered as PNG.

moto stores alarms, metric data and dashboards; `executor.py` evaluates and acts (through `alarms.py`),
`evaluation.py` holds the pure alarm arithmetic, `messages.py` what a state change sends (SNS, EventBridge,
Lambda), `api.py` answers the operations moto lacks, `emf.py` and `widget.py` the rest.
"""
