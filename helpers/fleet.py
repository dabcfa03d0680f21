"""A vehicle fleet that streams sensor readings, for notebook 09 and its benchmark.

Seeded and deterministic: the same parameters give the same readings, so the notebook's checks can
compare what the pipeline made with what pandas computes from the same DataFrame. Each vehicle reports
once a second (VIN, its sensor's id, speed, position); a few are speeders, a few carry a buggy device
that sends impossible values (and now and then a truncated line), and drivers send text feedback.
The producers send as the course does (space-separated text records with `firehose.put_record_batch`;
JSON with `kinesis.put_records` for the windowed analytics), retrying only the entries AWS refused,
paced faster than real time if asked, with a progress bar.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

SPEED_LIMIT_KMH = 120.0  # a reading above it is speeding
MAX_PLAUSIBLE_KMH = 300.0  # above it (or below 0) a speed is impossible: a buggy device
FIREHOSE_BATCH = 500  # PutRecordBatch: at most 500 records (and 4 MiB) per call
KINESIS_BATCH = 500  # PutRecords: at most 500 records (and 5 MiB) per call
VIN_CHARACTERS = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"  # VINs never use I, O or Q
COLUMNS = ["ts", "vin", "sensor_id", "speed_kmh", "lat", "lon"]
FEEDBACK = {
    "positive": ["Great trip, the car handled perfectly", "Smooth ride and the navigation was excellent",
                 "Love the new seats, very comfortable"],
    "negative": ["The brakes feel terrible and unsafe", "Awful noise from the engine, very annoying",
                 "The sensor warning keeps flashing, this is frustrating"],
    "neutral": ["Parked at the depot", "Refuelled at the station on the ring road", "Arrived at the warehouse"],
}


@dataclass(frozen=True)
class Vehicle:
    vin: str
    sensor_id: str
    cruise_kmh: float
    speeder: bool = False
    buggy: bool = False


@dataclass(frozen=True)
class Fleet:
    """`vehicles` cars reporting at 1 Hz from `start` (epoch seconds, UTC) for the given seconds."""

    vehicles: int = 20
    seed: int = 7
    speeders: int = 2
    buggy: int = 2
    start: float = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def cars(self) -> list[Vehicle]:
        rng = np.random.default_rng(self.seed)
        cars = []
        for index in range(self.vehicles):
            vin = "".join(VIN_CHARACTERS[i] for i in rng.integers(0, len(VIN_CHARACTERS), 17))
            cars.append(Vehicle(vin=vin, sensor_id=f"SN-{rng.integers(100000, 999999)}",
                                cruise_kmh=float(rng.uniform(50, 105)),
                                speeder=index < self.speeders,
                                buggy=self.speeders <= index < self.speeders + self.buggy))
        return cars

    def readings(self, seconds: int) -> pd.DataFrame:
        """One row a vehicle a second, ordered by time then vehicle: ts, vin, sensor_id, speed_kmh, lat, lon."""
        rng = np.random.default_rng(self.seed + 1)
        cars = self.cars()
        n, frames = len(cars), []
        ticks = np.arange(seconds, dtype=float)
        for car in cars:
            speed = car.cruise_kmh + 8 * np.sin(ticks / 30 + rng.uniform(0, 6)) + rng.normal(0, 2, seconds)
            if car.speeder:  # bursts well above the limit
                speed = np.where((ticks // 20) % 3 == 1, rng.uniform(130, 170, seconds), speed)
            speed = np.clip(speed, 0, None)
            heading = rng.uniform(0, 2 * math.pi)
            metres = np.cumsum(speed / 3.6)
            lat = 51.5 + rng.uniform(-0.2, 0.2) + metres * math.cos(heading) / 111_320
            lon = -0.12 + rng.uniform(-0.3, 0.3) + metres * math.sin(heading) / 69_400
            if car.buggy:  # impossible values in about a third of its readings
                broken = rng.random(seconds) < 0.3
                speed = np.where(broken, rng.choice([-1.0, 999.0], seconds), speed)
                lat = np.where(broken & (rng.random(seconds) < 0.5), 123.0, lat)
            frames.append(pd.DataFrame({"ts": self.start + ticks, "vin": car.vin, "sensor_id": car.sensor_id,
                                        "speed_kmh": np.round(speed, 1), "lat": np.round(lat, 5),
                                        "lon": np.round(lon, 5), "order": np.arange(seconds) * n + len(frames)}))
        out = pd.concat(frames).sort_values("order").drop(columns="order").reset_index(drop=True)
        out["ts"] = out["ts"].astype(int)
        return out

    def reference(self) -> pd.DataFrame:
        """The VIN -> sensor id reference table (what the maintenance system knows)."""
        return pd.DataFrame([(c.vin, c.sensor_id) for c in self.cars()], columns=["vin", "sensor_id"])

    def feedback(self, messages: int) -> pd.DataFrame:
        """Drivers' text messages: ts, vin, text (and the tone they were drawn from, for checks)."""
        rng = np.random.default_rng(self.seed + 2)
        cars = self.cars()
        rows = []
        for i in range(messages):
            tone = ("positive", "negative", "neutral")[int(rng.integers(0, 3))]
            texts = FEEDBACK[tone]
            rows.append((int(self.start) + i, cars[int(rng.integers(0, len(cars)))].vin,
                         texts[int(rng.integers(0, len(texts)))], tone))
        return pd.DataFrame(rows, columns=["ts", "vin", "text", "tone"])


def impossible(frame: pd.DataFrame) -> pd.Series:
    """Readings no working device sends: a speed below 0 or above 300 km/h, a position off the globe."""
    return (frame["speed_kmh"] < 0) | (frame["speed_kmh"] > MAX_PLAUSIBLE_KMH) | (frame["lat"].abs() > 90) | (
        frame["lon"].abs() > 180)


def text_lines(frame: pd.DataFrame, truncate_every: int = 0) -> list[str]:
    """Space-separated text records, one per reading, as the course's producers send them:
    `<ts> <vin> <sensor_id> <speed_kmh> <lat> <lon>\\n`. With `truncate_every`=k, every k-th line of a
    buggy-looking reading is cut short (a transmission error), as the lines a transform must reject."""
    lines = [f"{ts} {vin} {sensor} {speed} {lat} {lon}\n" for ts, vin, sensor, speed, lat, lon in
             frame[COLUMNS].itertuples(index=False, name=None)]
    if truncate_every:
        bad = np.flatnonzero(impossible(frame).to_numpy())
        for index in bad[::truncate_every]:
            lines[index] = " ".join(lines[index].split()[:3]) + "\n"
    return lines


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Readings as JSON-ready dicts (the Kinesis producer's records)."""
    return frame[COLUMNS].to_dict("records")


def paced(items: Sequence[Any], batch: int, timestamps: Sequence[float] | None = None, speedup: float = 0.0,
          progress: bool = True, description: str = "") -> Iterable[Sequence[Any]]:
    """Batches of `items`; with `timestamps` and `speedup` > 0, each batch waits until its first reading's
    simulated time divided by `speedup` has passed (speedup 60: a simulated hour in a minute)."""
    if progress:
        from tqdm.auto import tqdm
    else:  # no bar: tqdm's own (tqdm.auto warns in a notebook without widgets even when disabled)
        from tqdm import tqdm

    began = time.monotonic()
    bar = tqdm(total=len(items), desc=description, unit="rec", disable=not progress, mininterval=0.5)
    try:
        for first in range(0, len(items), batch):
            if speedup > 0 and timestamps is not None:
                due = (timestamps[first] - timestamps[0]) / speedup - (time.monotonic() - began)
                if due > 0:
                    time.sleep(due)
            chunk = items[first:first + batch]
            yield chunk
            bar.update(len(chunk))
    finally:
        bar.close()


def _retrying(call: Callable[[list[Any]], list[bool]], entries: list[Any], attempts: int = 8) -> int:
    """Sends `entries`, then again the ones refused (`call` answers accepted/refused per entry). Returns the
    number accepted; raises when some are still refused after `attempts` tries (never a silent loss)."""
    pending = entries
    for attempt in range(attempts):
        refused = [entry for entry, ok in zip(pending, call(pending)) if not ok]
        if not refused:
            return len(entries)
        pending = refused
        time.sleep(min(0.05 * 2 ** attempt, 1.0))
    raise RuntimeError(f"{len(pending)} of {len(entries)} records still refused after {attempts} attempts")


def send_to_firehose(firehose: Any, stream: str, lines: Sequence[str], timestamps: Sequence[float] | None = None,
                     speedup: float = 0.0, progress: bool = True) -> int:
    """`firehose.put_record_batch` in batches of 500, failed entries retried. Returns records accepted."""
    def put(entries: list[str]) -> list[bool]:
        answer = firehose.put_record_batch(DeliveryStreamName=stream,
                                           Records=[{"Data": line.encode()} for line in entries])
        return ["ErrorCode" not in r for r in answer["RequestResponses"]]

    return sum(_retrying(put, list(chunk)) for chunk in
               paced(lines, FIREHOSE_BATCH, timestamps, speedup, progress, f"firehose {stream}"))


# json.dumps(e, separators=(",", ":")), built once: dumps makes a new encoder per call when given options
# (a quarter of the producer's time at 500 records a call)
_compact = json.JSONEncoder(separators=(",", ":")).encode


def send_to_kinesis(kinesis: Any, stream: str, records: Sequence[dict[str, Any]], key: str = "vin",
                    speedup: float = 0.0, progress: bool = True) -> int:
    """`kinesis.put_records` in batches of 500 keyed by `key` (a vehicle's readings stay in order on one
    shard), failed entries retried. Returns records accepted."""
    def put(entries: list[dict[str, Any]]) -> list[bool]:
        answer = kinesis.put_records(StreamName=stream, Records=[
            {"Data": _compact(e).encode(), "PartitionKey": str(e[key])} for e in entries])
        return ["ErrorCode" not in r for r in answer["Records"]]

    timestamps = [r["ts"] for r in records] if speedup > 0 else None
    return sum(_retrying(put, list(chunk)) for chunk in
               paced(records, KINESIS_BATCH, timestamps, speedup, progress, f"kinesis {stream}"))


def speeders(frame: pd.DataFrame, limit: float = SPEED_LIMIT_KMH) -> pd.DataFrame:
    """What the speeders report should say, computed with pandas: per VIN with a plausible reading over the
    limit, the number of such readings and the top speed, sorted by VIN."""
    plausible = frame[~impossible(frame)]
    fast = plausible[plausible["speed_kmh"] > limit]
    return (fast.groupby("vin").agg(readings=("speed_kmh", "size"), max_speed_kmh=("speed_kmh", "max"))
            .reset_index().sort_values("vin").reset_index(drop=True))
