"""Stream sources over moto's backends: a shard's records by sequence number, in the Lambda event shape."""

from __future__ import annotations

import json
from typing import Any

from localcloud import motoapi
from localcloud.event_sources.mapping import MappingConfig, SourceRecord, _epoch


class KinesisSource:
    """Reads a moto Kinesis stream by sequence number (contiguous per-shard integers)."""

    kind = "kinesis"

    def __init__(self, config: MappingConfig, role: str):
        self.config, self.role = config, role

    def _stream(self) -> Any:
        from localcloud.motoapi import kinesis_backends

        backend = kinesis_backends[self.config.account_id][self.config.region]
        for stream in list(backend.streams.values()):
            if stream.arn == self.config.source_arn:
                return stream
        return None

    def shard_ids(self) -> list[str]:
        stream = self._stream()
        return [] if stream is None else [shard.shard_id for shard in list(stream.shards.values())]

    def _shard(self, shard_id: str) -> Any:
        stream = self._stream()
        if stream is None:
            return None
        return next((s for s in list(stream.shards.values()) if s.shard_id == shard_id), None)

    def initial_position(self, shard_id: str) -> int:
        """The sequence number *before* the first record to deliver."""
        shard = self._shard(shard_id)
        if shard is None or not shard.records:
            return 0
        if self.config.starting_position == "LATEST":
            return shard.get_max_sequence_number()
        if self.config.starting_position == "AT_TIMESTAMP" and self.config.starting_timestamp is not None:
            low, high = shard.get_min_sequence_number(), shard.get_max_sequence_number() + 1
            while low < high:  # binary search: arrival times grow with the (contiguous) sequence number
                middle = (low + high) // 2
                if motoapi.kinesis_record_arrival(shard.records[middle]) < self.config.starting_timestamp:
                    low = middle + 1
                else:
                    high = middle
            return low - 1
        return shard.get_min_sequence_number() - 1

    def last_position(self, shard_id: str) -> int:
        """The sequence number of the newest record (0 when the shard is empty)."""
        shard = self._shard(shard_id)
        return shard.get_max_sequence_number() if shard is not None and shard.records else 0

    def read(self, shard_id: str, after: int, limit: int) -> list[SourceRecord]:
        shard = self._shard(shard_id)
        if shard is None:
            return []
        records = shard.records
        out = []
        seq = after + 1
        if records and seq < (first := next(iter(records), seq)):
            seq = first  # trimmed records
        while len(out) < limit:
            record = records.get(seq)
            if record is None:
                break
            out.append(self._record(shard_id, record))
            seq += 1
        return out

    def _record(self, shard_id: str, record: Any) -> SourceRecord:
        seq, arrival = str(record.sequence_number), motoapi.kinesis_record_arrival(record)
        event = {
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record.partition_key, "sequenceNumber": seq,
                        "data": motoapi.kinesis_record_base64(record), "approximateArrivalTimestamp": round(arrival, 3)},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{seq}",
            "eventName": "aws:kinesis:record", "invokeIdentityArn": self.role, "awsRegion": self.config.region,
            "eventSourceARN": self.config.source_arn,
        }
        return SourceRecord(seq=record.sequence_number, partition_key=record.partition_key, arrival=arrival,
                            event=event, identifier=seq)


class DynamoDBStreamSource:
    """Reads a moto DynamoDB table's stream shard (records numbered from its starting sequence)."""

    kind = "dynamodb"

    def __init__(self, config: MappingConfig, role: str):
        self.config, self.role = config, role

    def _shard(self) -> Any:
        from localcloud.motoapi import dynamodb_backends

        backend = dynamodb_backends[self.config.account_id][self.config.region]
        for table in list(backend.tables.values()):
            if table.stream_shard is not None and self.config.source_arn == f"{table.table_arn}/stream/{table.latest_stream_label}":
                return table.stream_shard
        return None

    def shard_ids(self) -> list[str]:
        shard = self._shard()
        return [] if shard is None else [shard.id]

    def initial_position(self, shard_id: str) -> int:
        shard = self._shard()
        if shard is None:
            return 0
        start = shard.starting_sequence_number - 1
        if self.config.starting_position == "LATEST":
            return start + len(shard.items)
        return start

    def last_position(self, shard_id: str) -> int:
        shard = self._shard()
        return 0 if shard is None else shard.starting_sequence_number - 1 + len(shard.items)

    def read(self, shard_id: str, after: int, limit: int) -> list[SourceRecord]:
        shard = self._shard()
        if shard is None:
            return []
        first = max(after + 1 - shard.starting_sequence_number, 0)
        return [self._record(item) for item in shard.items[first:first + limit]]

    def _record(self, item: Any) -> SourceRecord:
        record = item.to_json()
        dynamodb = dict(record["dynamodb"])
        arrival = _epoch(dynamodb["ApproximateCreationDateTime"])
        dynamodb["ApproximateCreationDateTime"] = int(arrival)
        event = {"eventID": record["eventID"], "eventName": record["eventName"], "eventVersion": "1.1",
                 "eventSource": "aws:dynamodb", "awsRegion": self.config.region, "dynamodb": dynamodb,
                 "eventSourceARN": self.config.source_arn}
        seq = dynamodb["SequenceNumber"]
        keys = json.dumps(dynamodb.get("Keys", {}), sort_keys=True)
        return SourceRecord(seq=int(seq), partition_key=keys, arrival=arrival, event=event, identifier=seq)
