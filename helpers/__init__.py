"""retail-pipelines helpers: the importable package the notebooks use.

Rooms: `config` (target, region, names, the one boto3 client factory), `localcloud`
(the offline AWS), `dataset` (the retail file and its quality rules), `iam` (execution
roles as code), `notebook` (stable output for nbval).
"""

__version__ = "0.1.0"
