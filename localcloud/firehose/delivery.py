"""Firehose delivery logic, free of threads and HTTP: buffers, S3 keys, Lambda transformation, Redshift COPY.

`firehose.py` (the executor) feeds records in and decides when a buffer is due; everything here works
on plain values and small protocols (`Invoker`, an S3 writer, a warehouse) so unit tests can drive it
with fakes. AWS behaviours reproduced are named where they are implemented.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
import os
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Protocol

from localcloud.executors import Invoker, JSONPayload, LambdaInvokeError

MIB = 1024 * 1024
MAX_LAMBDA_PAYLOAD = 6 * MIB - 64 * 1024  # synchronous invoke limit, with room for the envelope
DEFAULT_S3_HINTS = (5, 300)  # SizeInMBs, IntervalInSeconds (AWS defaults)
DEFAULT_LAMBDA_HINTS = (1, 60)  # BufferSizeInMBs, BufferIntervalInSeconds of the Lambda processor
DEFAULT_LAMBDA_RETRIES = 3
DEFAULT_REDSHIFT_RETRY_S = 3600


# --------------------------------------------------------------------------------------------------
# Records and buffers


class FirehoseRecord(NamedTuple):
    """One record on its way through a delivery stream (kinesis: metadata when read from a stream).
    A tuple: buffers rebuild tens of thousands of them per delivery (a frozen dataclass took 2 us each)."""

    record_id: str
    data: bytes
    arrival: float  # epoch seconds
    kinesis: dict[str, Any] | None = None  # shardId, partitionKey, sequenceNumber, ...


RECORD_ID_BITS = 186  # 2**186 < 10**56: an id is 56 digits, like AWS's
RECORD_ID_SPACE = 10**56


def new_record_id(bits: Callable[[int], int] = secrets.randbits) -> str:
    """An opaque id, numeric like AWS's (56 digits)."""
    return f"{bits(RECORD_ID_BITS):056d}"


def new_record_ids(count: int, bits: Callable[[int], int] = secrets.randbits) -> list[str]:
    """`count` ids for one PutRecordBatch, consecutive from one random draw (AWS promises only that an id
    is unique). The executor draws from moto's random numbers, which the journal records with the request:
    a PutRecordBatch replayed after a crash gives its records the same ids, for one draw, not 500."""
    first = bits(RECORD_ID_BITS)
    return [f"{(first + offset) % RECORD_ID_SPACE:056d}" for offset in range(count)]


class Buffer:
    """Records waiting for SizeInMBs or IntervalInSeconds (counted from the first record in it).

    What it holds is a plain dict (`held`: records as [id, data, arrival, kinesis], their size, when the
    buffer opened) that the executor keeps on moto's delivery stream, so a snapshot of moto's state holds
    the records a buffer held at that moment. Records leave only by `remove` once delivered."""

    def __init__(self, size_mb: float, interval_s: float, held: dict[str, Any] | None = None):
        self.limit_bytes, self.interval_s = size_mb * MIB, interval_s
        self.held = held if held is not None else {}
        self.held.setdefault("records", [])
        self.held.setdefault("size", 0)
        self.held.setdefault("opened_at", None)

    @property
    def records(self) -> list[FirehoseRecord]:
        make = FirehoseRecord._make
        return [make(entry) for entry in self.held["records"]]

    @property
    def count(self) -> int:
        return len(self.held["records"])

    @property
    def size(self) -> int:
        return int(self.held["size"])

    def add(self, records: list[FirehoseRecord], now: float) -> None:
        if records and self.held["opened_at"] is None:
            self.held["opened_at"] = now
        self.held["records"] += [[r.record_id, r.data, r.arrival, r.kinesis] for r in records]
        self.held["size"] += sum(len(r.data) for r in records)

    def due(self, now: float) -> bool:
        if not self.held["records"]:
            return False
        opened = self.held["opened_at"]
        return self.size >= self.limit_bytes or now - (now if opened is None else opened) >= self.interval_s

    def remove(self, record_ids: list[str], now: float) -> list[FirehoseRecord]:
        """Take out the records with these ids (delivered); what is left waits a new interval from `now`."""
        wanted = set(record_ids)
        kept, removed = [], []
        for entry in self.held["records"]:
            (removed if entry[0] in wanted else kept).append(entry)
        self.held["records"] = kept
        self.held["size"] = sum(len(entry[1]) for entry in kept)
        self.held["opened_at"] = now if kept else None
        return list(map(FirehoseRecord._make, removed))


# --------------------------------------------------------------------------------------------------
# Configuration, as moto stores it


def _hints(config: dict[str, Any] | None) -> tuple[float, float]:
    hints = (config or {}).get("BufferingHints") or {}
    return float(hints.get("SizeInMBs", DEFAULT_S3_HINTS[0])), float(hints.get("IntervalInSeconds", DEFAULT_S3_HINTS[1]))


@dataclass(frozen=True)
class Processor:
    """ProcessingConfiguration with one Lambda processor."""

    lambda_arn: str
    size_mb: float = DEFAULT_LAMBDA_HINTS[0]
    interval_s: float = DEFAULT_LAMBDA_HINTS[1]
    retries: int = DEFAULT_LAMBDA_RETRIES

    @classmethod
    def from_config(cls, processing: dict[str, Any] | None) -> "Processor | None":
        if not processing or not processing.get("Enabled", True):
            return None
        for processor in processing.get("Processors") or []:
            if processor.get("Type") != "Lambda":
                continue
            values = {p["ParameterName"]: p["ParameterValue"] for p in processor.get("Parameters") or []}
            if "LambdaArn" in values:
                return cls(values["LambdaArn"], float(values.get("BufferSizeInMBs", DEFAULT_LAMBDA_HINTS[0])),
                           float(values.get("BufferIntervalInSeconds", DEFAULT_LAMBDA_HINTS[1])),
                           int(values.get("NumberOfRetries", DEFAULT_LAMBDA_RETRIES)))
        return None


@dataclass(frozen=True)
class S3Target:
    """Where objects go: an ExtendedS3 destination, or the staging S3Configuration of Redshift."""

    bucket: str
    prefix: str = ""
    error_prefix: str = ""
    compression: str = "UNCOMPRESSED"
    size_mb: float = DEFAULT_S3_HINTS[0]
    interval_s: float = DEFAULT_S3_HINTS[1]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "S3Target":
        size, interval = _hints(config)
        return cls(bucket=config["BucketARN"].split(":")[-1], prefix=config.get("Prefix") or "",
                   error_prefix=config.get("ErrorOutputPrefix") or "",
                   compression=config.get("CompressionFormat") or "UNCOMPRESSED", size_mb=size, interval_s=interval)


@dataclass(frozen=True)
class RedshiftTarget:
    """RedshiftDestinationConfiguration: the table, the COPY options, and the retry duration."""

    jdbc_url: str
    role_arn: str
    table: str
    columns: str = ""
    copy_options: str = ""
    retry_s: float = DEFAULT_REDSHIFT_RETRY_S


@dataclass(frozen=True)
class StreamConfig:
    """One delivery stream, in the terms delivery needs."""

    name: str
    arn: str
    account_id: str
    region: str
    version: str
    created: float
    kind: str  # "DirectPut" | "KinesisStreamAsSource"
    s3: S3Target
    source_arn: str | None = None
    processor: Processor | None = None
    redshift: RedshiftTarget | None = None

    @property
    def key(self) -> str:
        """Identifies this stream across restarts (a re-created stream with the same name starts over)."""
        return hashlib.sha1(f"{self.arn}@{self.created}".encode()).hexdigest()[:16]

    @classmethod
    def from_moto(cls, stream: Any, account_id: str, region: str) -> "StreamConfig | None":
        destination = stream.destinations[0]
        created = stream.create_timestamp.replace(tzinfo=dt.timezone.utc).timestamp()
        common = dict(name=stream.delivery_stream_name, arn=stream.delivery_stream_arn, account_id=account_id,
                      region=region, version=str(stream.version_id), created=created, kind=stream.delivery_stream_type,
                      source_arn=(stream.source or {}).get("KinesisStreamARN"))
        if "Redshift" in destination:
            config = destination["Redshift"]
            staging = config.get("S3DestinationDescription") or config.get("S3Configuration") or {}
            copy = config.get("CopyCommand") or {}
            redshift = RedshiftTarget(
                jdbc_url=config.get("ClusterJDBCURL") or "", role_arn=config.get("RoleARN") or "",
                table=copy.get("DataTableName") or "", columns=copy.get("DataTableColumns") or "",
                copy_options=copy.get("CopyOptions") or "", retry_s=redshift_retry_s(config))
            return cls(**common, s3=S3Target.from_config(staging), redshift=redshift,
                       processor=Processor.from_config(config.get("ProcessingConfiguration")))
        config = destination.get("ExtendedS3") or destination.get("S3")
        if config is None:
            return None  # HTTP endpoint, OpenSearch, ...: not delivered locally
        return cls(**common, s3=S3Target.from_config(config),
                   processor=Processor.from_config(config.get("ProcessingConfiguration")))


def redshift_retry_s(config: dict[str, Any]) -> float:
    """RetryOptions.DurationInSeconds (AWS default 3600); RETAIL_FIREHOSE_RETRY_S overrides it locally."""
    override = os.environ.get("RETAIL_FIREHOSE_RETRY_S")
    if override:
        return float(override)
    return float((config.get("RetryOptions") or {}).get("DurationInSeconds", DEFAULT_REDSHIFT_RETRY_S))


# --------------------------------------------------------------------------------------------------
# S3 prefixes and object names


EXPRESSION = re.compile(r"!\{([^:}]+):([^}]*)\}")
JAVA_FIELDS = {"yyyy": "%Y", "yy": "%y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
DEFAULT_TIME_PREFIX = "%Y/%m/%d/%H/"


class PrefixError(ValueError):
    """A Prefix / ErrorOutputPrefix Firehose would refuse (InvalidArgumentException)."""


def java_format(pattern: str, when: dt.datetime) -> str:
    """The DateTimeFormatter subset Firehose prefixes use (yyyy MM dd HH mm ss, 'quoted' literals)."""
    out = []
    for quoted, letters, other in re.findall(r"'([^']*)'|([A-Za-z]+)|([^A-Za-z']+)", pattern):
        if letters:
            if letters not in JAVA_FIELDS:
                raise PrefixError(f"Unsupported timestamp pattern '{letters}' in '{pattern}'")
            out.append(when.strftime(JAVA_FIELDS[letters]))
        else:
            out.append(quoted or other)
    return "".join(out)


def random_string() -> str:
    """`!{firehose:random-string}`: 11 random alphanumeric characters."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(11))


def expand(template: str, when: dt.datetime, error_type: str | None = None) -> str:
    """Evaluate `!{timestamp:...}` and `!{firehose:...}` expressions."""

    def value(match: re.Match[str]) -> str:
        namespace, argument = match.group(1), match.group(2)
        if namespace == "timestamp":
            return java_format(argument, when)
        if namespace == "firehose" and argument == "random-string":
            return random_string()
        if namespace == "firehose" and argument == "error-output-type":
            if error_type is None:
                raise PrefixError("The expression !{firehose:error-output-type} is only allowed in ErrorOutputPrefix")
            return error_type
        raise PrefixError(f"Unsupported expression !{{{namespace}:{argument}}}")

    return EXPRESSION.sub(value, template)


def validate_prefixes(prefix: str, error_prefix: str) -> None:
    """AWS's rules at CreateDeliveryStream: expressions must be valid, and a Prefix with expressions
    needs an ErrorOutputPrefix."""
    now = dt.datetime.now(dt.timezone.utc)
    expand(prefix, now)
    expand(error_prefix, now, error_type="processing-failed")
    if EXPRESSION.search(prefix) and not error_prefix:
        raise PrefixError("ErrorOutputPrefix cannot be null or empty when Prefix contains expressions.")


def data_prefix(target: S3Target, when: dt.datetime) -> str:
    """Prefix without expressions gets `YYYY/MM/DD/HH/` (UTC) appended, as AWS does."""
    if EXPRESSION.search(target.prefix):
        return expand(target.prefix, when)
    return target.prefix + when.strftime(DEFAULT_TIME_PREFIX)


def error_prefix(target: S3Target, when: dt.datetime, error_type: str) -> str:
    """ErrorOutputPrefix; without expressions `<error-output-type>/YYYY/MM/DD/HH/` is appended
    (an empty one gives AWS's default `processing-failed/YYYY/MM/DD/HH/`)."""
    if EXPRESSION.search(target.error_prefix):
        return expand(target.error_prefix, when, error_type)
    return f"{target.error_prefix}{error_type}/{when.strftime(DEFAULT_TIME_PREFIX)}"


def object_name(config: StreamConfig, when: dt.datetime, compression: str) -> str:
    """`<stream>-<version>-yyyy-MM-dd-HH-mm-ss-<uuid>` (+ `.gz` when GZIP-compressed)."""
    suffix = ".gz" if compression == "GZIP" else ""
    return f"{config.name}-{config.version}-{when.strftime('%Y-%m-%d-%H-%M-%S')}-{uuid.uuid4()}{suffix}"


def utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def encode(body: bytes, compression: str) -> bytes:
    return gzip.compress(body) if compression == "GZIP" else body


# --------------------------------------------------------------------------------------------------
# Data transformation with a Lambda function


@dataclass
class Transformed:
    """The outcome of transforming a batch: records to deliver and error lines for S3."""

    ok: list[FirehoseRecord] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # AWS's processing-failed JSON lines
    dropped: int = 0


def lambda_event(config: StreamConfig, records: list[FirehoseRecord]) -> dict[str, Any]:
    """The event Firehose sends to a transformation function."""
    items = []
    for record in records:
        item: dict[str, Any] = {"recordId": record.record_id, "approximateArrivalTimestamp": int(record.arrival * 1000),
                                "data": base64.b64encode(record.data).decode()}
        if record.kinesis is not None:
            item["kinesisRecordMetadata"] = record.kinesis
        items.append(item)
    event: dict[str, Any] = {"invocationId": str(uuid.uuid4()), "deliveryStreamArn": config.arn,
                             "region": config.region, "records": items}
    if config.source_arn:
        event["sourceKinesisStreamArn"] = config.source_arn
    return event


def lambda_batches(records: list[FirehoseRecord]) -> list[list[FirehoseRecord]]:
    """Invocations stay under Lambda's 6 MB synchronous payload (base64 grows data by 4/3)."""
    out: list[list[FirehoseRecord]] = [[]]
    weight = 0
    for record in records:
        size = len(record.data) * 4 // 3 + 300
        if out[-1] and weight + size > MAX_LAMBDA_PAYLOAD:
            out.append([])
            weight = 0
        out[-1].append(record)
        weight += size
    return [batch for batch in out if batch]


def _failure_line(record: FirehoseRecord, attempts: int, code: str, message: str, lambda_arn: str) -> dict[str, Any]:
    line = {"attemptsMade": attempts, "arrivalTimestamp": int(record.arrival * 1000), "errorCode": code,
            "errorMessage": message, "attemptEndingTimestamp": int(time.time() * 1000),
            "rawData": base64.b64encode(record.data).decode(), "lambdaArn": lambda_arn}
    if record.kinesis is not None:
        line["sequenceNumber"] = record.kinesis.get("sequenceNumber")
        line["subSequenceNumber"] = record.kinesis.get("subsequenceNumber")
    return line


def transform(config: StreamConfig, invoker: Invoker | None, records: list[FirehoseRecord],
              sleep: Callable[[float], None] = time.sleep) -> Transformed:
    """Invoke the processor on each payload-sized batch, retrying failed invocations NumberOfRetries times."""
    assert config.processor is not None
    out = Transformed()
    for batch in lambda_batches(records):
        _transform_batch(config, invoker, batch, out, sleep)
    return out


def _transform_batch(config: StreamConfig, invoker: Invoker | None, batch: list[FirehoseRecord], out: Transformed,
                     sleep: Callable[[float], None]) -> None:
    processor = config.processor
    assert processor is not None
    attempts, code, message = 0, "Lambda.FunctionError", ""
    while attempts <= processor.retries:
        attempts += 1
        response, code, message = _invoke(config, invoker, batch)
        if response is not None:
            _apply_response(batch, response, attempts, processor.lambda_arn, out)
            return
        if attempts <= processor.retries:
            sleep(0.05)
    out.failed += [_failure_line(r, attempts, code, message, processor.lambda_arn) for r in batch]


def _invoke(config: StreamConfig, invoker: Invoker | None, batch: list[FirehoseRecord]) -> tuple[Any, str, str]:
    """(response records, "", "") on success, or (None, errorCode, errorMessage)."""
    processor = config.processor
    assert processor is not None
    if invoker is None:
        return None, "Lambda.InvokeAccessDenied", "No Lambda runtime is running in the local cloud."
    payload = JSONPayload.dumps(lambda_event(config, batch))  # built here: not parsed again to validate
    try:
        result = invoker.invoke(processor.lambda_arn, payload, invocation_type="RequestResponse",
                                account_id=config.account_id, region=config.region)
    except LambdaInvokeError as error:
        code = {"ResourceNotFoundException": "Lambda.FunctionNotFound",
                "TooManyRequestsException": "Lambda.InvokeLimitExceeded"}.get(error.code, "Lambda.InvokeAccessDenied")
        return None, code, error.message
    if result.function_error:
        return None, "Lambda.FunctionError", "The Lambda function was successfully invoked but it returned an error result."
    try:
        response = json.loads(result.payload or b"null")
        records = response["records"]
        assert isinstance(records, list)
    except (ValueError, KeyError, TypeError, AssertionError):
        return None, "Lambda.JsonProcessingException", "The response from the Lambda function is not valid JSON with a records list."
    return records, "", ""


def _apply_response(batch: list[FirehoseRecord], response: list[Any], attempts: int, lambda_arn: str,
                    out: Transformed) -> None:
    """The response contract: every recordId back once, with result Ok / Dropped / ProcessingFailed."""
    answers: dict[str, dict[str, Any]] = {}
    duplicated: set[str] = set()
    for item in response:
        record_id = item.get("recordId") if isinstance(item, dict) else None
        if record_id in answers:
            duplicated.add(record_id)
        if record_id:
            answers[record_id] = item
    for record in batch:
        answer = answers.get(record.record_id)
        if answer is None:
            out.failed.append(_failure_line(record, attempts, "Lambda.MissingRecordId",
                                            "One or more record Ids were not returned.", lambda_arn))
        elif record.record_id in duplicated:
            out.failed.append(_failure_line(record, attempts, "Lambda.DuplicatedRecordId",
                                            "Multiple records were returned with the same record Id.", lambda_arn))
        elif answer.get("result") == "Ok":
            try:
                data = base64.b64decode(answer.get("data") or "", validate=True)
            except ValueError:
                out.failed.append(_failure_line(record, attempts, "Lambda.JsonProcessingException",
                                                "The data returned is not valid base64.", lambda_arn))
                continue
            out.ok.append(FirehoseRecord(record.record_id, data, record.arrival, record.kinesis))
        elif answer.get("result") == "Dropped":
            out.dropped += 1
        else:  # ProcessingFailed, or a result Firehose does not know
            out.failed.append(_failure_line(record, attempts, "Lambda.ProcessingFailedStatus",
                                            "ProcessingFailed status set for record", lambda_arn))


# --------------------------------------------------------------------------------------------------
# Destinations


class S3Writer(Protocol):
    def put(self, bucket: str, key: str, body: bytes) -> None: ...


def error_object(config: StreamConfig, lines: list[dict[str, Any]],
                 error_type: str = "processing-failed") -> tuple[str, bytes] | None:
    """Failed records as JSON lines (one object per batch) under the error output prefix: (key, body)."""
    if not lines:
        return None
    when = utc(min(line["arrivalTimestamp"] for line in lines) / 1000)
    key = error_prefix(config.s3, when, error_type) + object_name(config, when, config.s3.compression)
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    return key, encode(body, config.s3.compression)


def data_object(config: StreamConfig, records: list[FirehoseRecord]) -> tuple[str, bytes] | None:
    """One S3 object per flushed buffer, the records concatenated as sent (no separator added): (key, body)."""
    if not records:
        return None
    when = utc(min(r.arrival for r in records))
    key = data_prefix(config.s3, when) + object_name(config, when, config.s3.compression)
    return key, encode(b"".join(r.data for r in records), config.s3.compression)


def write_data(config: StreamConfig, writer: S3Writer, records: list[FirehoseRecord]) -> str | None:
    """`data_object`, written; its key."""
    planned = data_object(config, records)
    if planned is None:
        return None
    writer.put(config.s3.bucket, *planned)
    return planned[0]


def manifest_key(config: StreamConfig, when: dt.datetime, errors: bool = False) -> str:
    """`<prefix>manifests/YYYY/MM/DD/HH/<object name>`; skipped batches under `<prefix>errors/manifests/`."""
    base = config.s3.prefix if not EXPRESSION.search(config.s3.prefix) else ""
    folder = "errors/manifests/" if errors else "manifests/"
    return f"{base}{folder}{when.strftime(DEFAULT_TIME_PREFIX)}{object_name(config, when, 'UNCOMPRESSED')}"


def manifest_body(bucket: str, keys: list[str]) -> bytes:
    return json.dumps({"entries": [{"url": f"s3://{bucket}/{k}", "mandatory": True} for k in keys]}).encode()


def copy_command(config: StreamConfig, manifest: str) -> str:
    """The COPY Firehose runs: `COPY t (cols) FROM 's3://b/manifest' CREDENTIALS 'aws_iam_role=...' MANIFEST opts`."""
    target = config.redshift
    assert target is not None
    columns = f" ({target.columns})" if target.columns else ""
    options = f" {target.copy_options}" if target.copy_options else ""
    gzip_option = " GZIP" if config.s3.compression == "GZIP" else ""
    return (f"COPY {target.table}{columns} FROM 's3://{config.s3.bucket}/{manifest}' "
            f"CREDENTIALS 'aws_iam_role={target.role_arn}' MANIFEST{options}{gzip_option};")


class Warehouse(Protocol):
    def execute_sql(self, sql: str, *, database: str, account_id: str, region: str, **target: str) -> int: ...


class DeliveryJournal:
    """Redshift batches staged in S3 and what became of them, persisted so a restart never COPYs a
    delivered batch again and resumes the retries of a pending one."""

    def __init__(self, path: Path | None):
        self.path = path
        self.batches: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            self.batches = json.loads(path.read_text()).get("batches", {})

    def record(self, manifest: str, **fields: Any) -> None:
        self.batches.setdefault(manifest, {}).update(fields)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"batches": self.batches}))
            temporary.replace(self.path)

    def pending(self) -> list[str]:
        return [m for m, b in self.batches.items() if b.get("status") == "staged"]


def redshift_objects(config: StreamConfig, records: list[FirehoseRecord]) -> tuple[str, bytes, str, bytes]:
    """The staged data object and its manifest: (data key, data body, manifest key, manifest body)."""
    planned = data_object(config, records)
    assert planned is not None, "a batch has records"
    manifest = manifest_key(config, utc(min(r.arrival for r in records)))
    return planned[0], planned[1], manifest, manifest_body(config.s3.bucket, [planned[0]])


def copy_once(config: StreamConfig, warehouse: Callable[[], Warehouse], journal: DeliveryJournal,
              manifest: str) -> str:
    """One COPY attempt of a staged batch: "copied", "skip" (already delivered) or the error message."""
    if journal.batches.get(manifest, {}).get("status") != "staged":
        return "skip"
    target = config.redshift
    assert target is not None
    entry = journal.batches[manifest]
    try:
        from localcloud.warehouse.executor import jdbc_target

        warehouse().execute_sql(copy_command(config, manifest), **jdbc_target(target.jdbc_url),
                                account_id=config.account_id, region=config.region)
    except Exception as error:  # WarehouseError, a missing warehouse executor, a bad URL
        journal.record(manifest, attempts=entry.get("attempts", 0) + 1, last_error=str(error))
        return str(error) or type(error).__name__
    journal.record(manifest, status="copied", attempts=entry.get("attempts", 0) + 1)
    return "copied"


def error_manifest(config: StreamConfig, journal: DeliveryJournal, manifest: str) -> tuple[str, bytes]:
    """Where a batch skipped after RetryOptions.DurationInSeconds goes: (`errors/manifests/` key, body)."""
    entry = journal.batches[manifest]
    when = utc(entry.get("first_attempt", time.time()))
    return manifest_key(config, when, errors=True), manifest_body(config.s3.bucket, entry.get("objects", []))
