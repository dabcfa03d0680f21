"""The function's S3 and DynamoDB clients, shared by its modules, with a connection for each file in flight.

boto3 keeps 10 connections per client; with more files in flight (FILE_THREADS) than that, every extra
request would open a connection and throw it away afterwards ("Connection pool is full").
"""

from __future__ import annotations

import os

import boto3
from botocore.config import Config

FILE_THREADS = max(1, int(os.environ.get("FILE_THREADS") or "16"))
_connections = Config(max_pool_connections=FILE_THREADS)

s3 = boto3.client("s3", config=_connections)
dynamodb = boto3.client("dynamodb", config=_connections.merge(Config(parameter_validation=False)))
