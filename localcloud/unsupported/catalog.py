"""The calls moto answers without performing them, and that no executor of the local cloud performs.

Each entry names the botocore service, its operations, and what moto would do instead: the reason the
call must fail rather than succeed. Requests are recognised from botocore's own service models (the
JSON target, or the signing name, method and path of a REST operation, or a query `Action`), so the
matching cannot drift from what boto3 sends.

Left out on purpose: Athena, Glue crawlers, CloudWatch alarms, Comprehend and API Gateway v2 (their
executors perform them), Lambda, Kinesis, Firehose, EventBridge rules, Redshift Data (performed), and
calls whose answer is only a record of state (creating a cluster, a queue, a job definition...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

# botocore service name -> (operations, or ("*",) for all of them; what moto does instead)
UNPERFORMED: dict[str, tuple[tuple[str, ...], str]] = {
    "glue": (("StartJobRun", "StartWorkflowRun"),
             "moto records a run that moves to SUCCEEDED without running the job's script"),
    "emr": (("RunJobFlow", "AddJobFlowSteps"), "moto records a cluster and steps that run nothing"),
    "emr-serverless": (("StartJobRun",), "moto records a job run that runs nothing"),
    "emr-containers": (("StartJobRun",), "moto records a job run that runs nothing"),
    "stepfunctions": (("StartExecution",),
                      "moto records an execution without running the state machine's states"),
    "sagemaker": (("CreateTrainingJob", "CreateProcessingJob", "CreateTransformJob",
                   "CreateHyperParameterTuningJob", "CreateAutoMLJobV2", "CreateCompilationJob"),
                  "moto records a job that trains, processes or writes nothing"),
    "sagemaker-runtime": (("InvokeEndpoint", "InvokeEndpointAsync"),
                          "moto answers a canned result, no model runs"),
    "bedrock-runtime": (("InvokeModel",), "moto answers a canned result, no model runs"),
    "batch": (("SubmitJob",), "the local cloud runs no containers"),
    "ecs": (("RunTask", "StartTask"), "moto records tasks whose containers never run"),
    "codebuild": (("StartBuild",), "moto records a build that builds nothing"),
    "datapipeline": (("ActivatePipeline",), "moto marks the pipeline active and runs none of its activities"),
    "datasync": (("StartTaskExecution",), "moto records an execution that copies nothing"),
    "dms": (("StartReplicationTask",), "moto marks the task running and replicates nothing"),
    "rds": (("StartExportTask",), "moto records an export that writes nothing to S3"),
    "rds-data": (("ExecuteStatement",), "moto answers canned empty results, no SQL runs"),
    "textract": (("DetectDocumentText", "StartDocumentTextDetection"),
                 "moto answers canned text, no document is read"),
    "rekognition": (("DetectLabels", "DetectText", "StartFaceSearch"),
                    "moto answers canned labels, no image is read"),
    "polly": (("SynthesizeSpeech",), "moto answers audio that is not speech"),
    "scheduler": (("CreateSchedule",), "moto stores the schedule and never invokes its target"),
    "pipes": (("CreatePipe",), "moto stores the pipe and never moves an event through it"),
    # a whole service moto lacks (it answers an HTML 500 that botocore retries): every operation
    "redshift-serverless": (("*",), "moto has no Redshift Serverless API; locally the warehouse is a provisioned "
                                    "cluster, and redshift-data accepts any WorkgroupName"),
}

NOT_PERFORMED = "NotImplemented"  # the code AWS itself uses for a request it does not implement
STATUS = 501  # Not Implemented: botocore does not retry it (it retries 500, 502, 503, 504)


@dataclass(frozen=True)
class Unperformed:
    """One operation the local cloud refuses, and how its service speaks (for the error's shape)."""

    service: str  # AWS's name of the service (serviceId), e.g. "Glue"
    operation: str
    reason: str
    protocol: str  # "json", "rest-json" or "query"
    json_version: str = "1.1"

    @property
    def message(self) -> str:
        return (f"The local cloud does not perform {self.service} {self.operation}: {self.reason}. "
                "Run it against an AWS account.")


@dataclass(frozen=True)
class Catalog:
    """Lookups built once from botocore's models: JSON targets, REST routes, query actions."""

    targets: dict[str, Unperformed]  # "AWSGlue.StartJobRun" -> entry
    routes: dict[tuple[str, str], list[tuple[re.Pattern[str], Unperformed]]]  # (signing name, method) -> ...
    actions: dict[tuple[str, str], Unperformed]  # (signing name, Action) -> entry

    def find(self, target: str | None, signing_name: str | None, method: str, path: str) -> Unperformed | None:
        if target:
            return self.targets.get(target)
        if signing_name is None:
            return None
        for pattern, entry in self.routes.get((signing_name, method), ()):
            if pattern.fullmatch(path):
                return entry
        return None

    def query_action(self, signing_name: str | None, action: str | None) -> Unperformed | None:
        return self.actions.get((signing_name or "", action or ""))

    @property
    def query_services(self) -> set[str]:
        return {name for name, _ in self.actions}


def _route(request_uri: str) -> re.Pattern[str]:
    """A REST operation's path template as a regex: {Name} is one segment, {Key+} any number."""
    path = request_uri.split("?", 1)[0]
    parts = re.split(r"(\{[^}]+\})", path)
    return re.compile("".join(("[^/]+" if not p.endswith("+}") else ".+") if p.startswith("{") else re.escape(p)
                              for p in parts) + "/?")


def build(entries: Iterable[tuple[str, tuple[tuple[str, ...], str]]] | None = None, loader: Any = None) -> Catalog:
    """The catalog from botocore's models; a protocol this module cannot answer in fails here, loudly."""
    import botocore.session

    session = loader or botocore.session.get_session()
    targets: dict[str, Unperformed] = {}
    routes: dict[tuple[str, str], list[tuple[re.Pattern[str], Unperformed]]] = {}
    actions: dict[tuple[str, str], Unperformed] = {}
    for service_name, (operations, reason) in (entries if entries is not None else UNPERFORMED.items()):
        model = session.get_service_model(service_name)
        protocol = getattr(model, "resolved_protocol", model.protocol)  # what botocore really sends
        for operation in model.operation_names if operations == ("*",) else operations:
            op = model.operation_model(operation)  # an unknown name raises: the list must match botocore
            entry = Unperformed(model.metadata.get("serviceId", service_name), operation, reason, protocol,
                                model.metadata.get("jsonVersion", "1.1"))
            if protocol == "json":
                targets[f"{model.metadata['targetPrefix']}.{operation}"] = entry
            elif protocol == "rest-json":
                key = (model.signing_name, op.http["method"])
                routes.setdefault(key, []).append((_route(op.http["requestUri"]), entry))
            elif protocol == "query":
                actions[(model.signing_name, operation)] = entry
            else:
                raise ValueError(f"{service_name} speaks {protocol}: no error shape for it here")
    return Catalog(targets, routes, actions)
