"""Glue crawlers that crawl: moto stores crawlers and the Data Catalog, and its StartCrawler only records a
crawl that never ends. Here StartCrawler (moto's, which validates and records the crawl) is followed by a
real crawl in a thread (`crawler.Crawl`): State RUNNING -> STOPPING -> READY, `LastCrawl.Status`
SUCCEEDED, CANCELLED (StopCrawler) or FAILED with its ErrorMessage, as GetCrawler shows them on AWS.
GetCrawlerMetrics (absent from moto) is answered from the runs recorded on the crawler; UpdateCrawler (absent
too) sets the members it names, refused while the crawler runs.

A crawl reads the lake and the catalog in its thread and ends with one effect (persistence/effects.py):
its catalog changes, its run and its final state, applied under the journal's lock and journaled, so a
crawl that finished survives a kill -9 and a replay writes what it decided (a replayed StartCrawler
starts no crawl: the journal holds its end). A crawl cut short by a stop or a crash of the local cloud
is FAILED once the journal is replayed."""

from __future__ import annotations

import logging
import statistics
import threading
import time
from datetime import datetime
from typing import Any, Callable

from werkzeug.wrappers import Request

from localcloud.executors import CloudContext, WSGIApp
from localcloud.glue.crawler import Crawl, CrawlError, Stopped, apply
from localcloud.glue.lake import ApiError, Lake, answer
from localcloud.persistence import REPLAY_DONE, clock
from localcloud.persistence.effects import Effects
from localcloud.persistence.journal import journaled

log = logging.getLogger("localcloud.glue")

TARGET = "AWSGlue.GetCrawlerMetrics"
UPDATE_TARGET = "AWSGlue.UpdateCrawler"  # absent from moto (it answered a bare 500)
# UpdateCrawler's request members -> moto's crawler attributes
UPDATABLE = {"Role": "role", "DatabaseName": "database_name", "Description": "description", "Targets": "targets",
             "Schedule": "schedule", "Classifiers": "classifiers", "TablePrefix": "table_prefix",
             "SchemaChangePolicy": "schema_change_policy", "RecrawlPolicy": "recrawl_policy",
             "LineageConfiguration": "lineage_configuration", "Configuration": "configuration",
             "CrawlerSecurityConfiguration": "crawler_security_configuration"}
ENDED = {"COMPLETED": "SUCCEEDED", "STOPPED": "CANCELLED", "FAILED": "FAILED"}
INTERRUPTED = "the local cloud stopped during the crawl"


def _now() -> datetime:
    """moto's naive UTC time; inside a journaled request (UpdateCrawler) the recorded one."""
    return clock.utcnow().replace(tzinfo=None)


def _runs(crawler: Any) -> list[dict[str, Any]]:
    runs = getattr(crawler, "localcloud_runs", None)
    if runs is None:
        runs = crawler.localcloud_runs = []
    return runs


def _freeze(crawl: Any, status: str) -> None:
    """Set a crawl's status and keep moto's state machine from moving it on its own."""
    crawl._transitions = []
    crawl.status = status


class GlueCrawlers:
    name = "glue"

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live: set[tuple[str, str, str, int]] = set()  # (account, region, crawler, crawl) crawling here
        self.effects = Effects("glue", self._finish)
        self.cloud: CloudContext | None = None

    # -- executor contract

    def start(self, cloud: CloudContext) -> None:
        from localcloud import motoapi

        self.cloud = cloud
        self._closing.clear()
        self._undo = [motoapi.replace("glue.start_crawler", self._start_crawler),
                      motoapi.replace("glue.crawler.as_dict", self._as_dict)]
        self._spawn(self._fail_interrupted, "glue-interrupted")

    def stop(self) -> None:
        self._closing.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    def route(self, request: Request) -> WSGIApp | None:
        claimed = self.effects.claim(request)
        if claimed is not None:
            return claimed
        target = request.environ.get("HTTP_X_AMZ_TARGET")
        if target == UPDATE_TARGET:  # a write to moto's crawler: journaled and replayed through here
            return journaled(answer(self._update, log))  # type: ignore[return-value,arg-type]
        if target != TARGET:
            return None
        return answer(self._metrics, log)

    # -- hooks

    def _start_crawler(self, original: Callable[..., Any]) -> Callable[..., Any]:
        executor = self

        def start_crawler(backend: Any, name: str, *args: Any, **kwargs: Any) -> Any:
            known = backend.crawlers.get(name)
            key = (backend.account_id, backend.region_name, name, len(known.crawls) if known else 0)
            executor._live.add(key)  # before the crawl exists: the interrupted ones are the others
            try:
                result = original(backend, name, *args, **kwargs)  # validates, records the crawl (RUNNING)
            except BaseException:
                executor._live.discard(key)
                raise
            crawler = backend.get_crawler(name)
            crawl = crawler.crawls[-1]
            _freeze(crawl, "RUNNING")
            if REPLAY_DONE.is_set():  # replayed, the crawl's end (an effect) follows in the journal, or never came
                executor._spawn(lambda: executor._crawl(backend, crawler, crawl, key), f"glue-crawl-{name}")
            else:
                executor._live.discard(key)
            return result

        return start_crawler

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    @staticmethod
    def _as_dict(original: Callable[..., Any]) -> Callable[..., Any]:
        def as_dict(crawler: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
            data = original(crawler, *args, **kwargs)
            data.pop("LastCrawl", None)
            finished = [c for c in crawler.crawls if c._status in ENDED]
            if finished:
                last = finished[-1]
                data["LastCrawl"] = {"Status": ENDED[last._status], "LogGroup": last.log_group,
                                     "LogStream": last.log_stream, "MessagePrefix": last.message_prefix,
                                     "StartTime": last.start_time}
                if getattr(last, "localcloud_error", None):
                    data["LastCrawl"]["ErrorMessage"] = last.localcloud_error
            running = crawler.crawls[-1] if crawler.crawls and crawler.crawls[-1]._status not in ENDED else None
            data["CrawlElapsedTime"] = int((_now() - running.start_time).total_seconds() * 1000) if running else 0
            return data

        return as_dict

    # -- the crawl

    def _crawl(self, backend: Any, crawler: Any, crawl: Any, key: tuple[str, str, str, int]) -> None:
        """Crawl (reading only), then end the crawl with its changes in one journaled effect."""
        started, began = time.monotonic(), time.time()
        crawl.localcloud_error = None

        def stopping() -> bool:
            return crawl._status == "STOPPING" or self._closing.is_set()

        changes: list[list[Any]] = []
        counts: dict[str, int] = {}
        try:
            outcome = Crawl(backend, crawler, Lake(backend.account_id), stopping).run()
            final, error = "COMPLETED", None
            changes = outcome.changes
            counts = {"created": outcome.tables_created, "updated": outcome.tables_updated,
                      "deleted": outcome.tables_deleted}
            for message in outcome.messages:
                log.info("crawler %s: %s", crawler.name, message)
        except Stopped:
            final, error = ("FAILED", INTERRUPTED) if self._closing.is_set() else ("STOPPED", None)
        except CrawlError as failure:
            final, error = "FAILED", str(failure)
        except Exception as failure:  # a bug fails the crawl visibly, it does not leave it RUNNING
            log.exception("crawler %s failed", crawler.name)
            final, error = "FAILED", f"Internal error: {type(failure).__name__}: {failure}"
        _freeze(crawl, "STOPPING")  # AWS shows STOPPING while a crawl winds down
        run = {"start": began, **counts, "seconds": round(time.monotonic() - started, 3)}
        try:
            self._end(key, final, error, run, changes)
        finally:
            self._live.discard(key)

    def _end(self, key: tuple[str, str, str, int], final: str, error: str | None, run: dict[str, Any],
             changes: list[list[Any]]) -> None:
        account, region, name, index = key
        content = {"kind": "crawl-end", "account": account, "region": region, "crawler": name, "crawl": index,
                   "final": final, "error": error, "run": run, "changes": changes,
                   "ended": clock.utcnow().replace(tzinfo=None).isoformat()}
        assert self.cloud is not None
        try:
            ended = self.effects.perform(self.cloud, content)
        except Exception:  # e.g. the journal closed as the local cloud stops: the next start fails the crawl
            log.exception("crawler %s: its end could not be recorded", name)
            return
        log.info("crawler %s: %s in %.2f s%s", name, ended.get("status"), run["seconds"],
                 f" ({ended.get('error')})" if ended.get("error") else "")

    def _finish(self, content: dict[str, Any], _blobs: list[bytes]) -> dict[str, Any]:
        """The effect that ends a crawl: its changes into the catalog, its run, its final state. A function
        of the content and of the state it meets, so the journal's replay does the same."""
        from localcloud.motoapi import glue_backends

        backend = glue_backends[content["account"]][content["region"]]
        crawler = backend.crawlers.get(content["crawler"])
        index = int(content["crawl"])
        if crawler is None or index >= len(crawler.crawls) or crawler.crawls[index]._status in ENDED:
            return {"status": None}  # the crawler was deleted meanwhile, or the crawl already ended
        crawl = crawler.crawls[index]
        final, error = content["final"], content.get("error")
        if final == "COMPLETED":
            try:
                apply(backend, content["changes"])
            except Exception as failure:  # the catalog refused a change: the crawl failed, as on AWS
                final, error = "FAILED", f"{type(failure).__name__}: {failure}"
        run = {**content["run"], "status": ENDED[final], "error": error}
        _runs(crawler).append(run)
        crawl.localcloud_error = error
        crawl.end_time = datetime.fromisoformat(content["ended"])
        _freeze(crawl, final)
        return {"status": ENDED[final], "error": error}

    def _fail_interrupted(self) -> None:
        """Crawls left RUNNING by a stop or a crash (in the snapshot, or replayed from the journal without
        their end) are FAILED, once the journal is replayed."""
        from localcloud.motoapi import glue_backends

        REPLAY_DONE.wait()
        for regions in list(glue_backends.values()):
            for backend in list(regions.values()):
                for crawler in list(backend.crawlers.values()):
                    for index, crawl in enumerate(list(crawler.crawls)):
                        key = (backend.account_id, backend.region_name, crawler.name, index)
                        if crawl._status not in ENDED and key not in self._live:
                            self._end(key, "FAILED", INTERRUPTED, {"start": time.time(), "seconds": 0.0}, [])

    # -- UpdateCrawler

    @staticmethod
    def _update(params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        """Set the members the request names, as AWS does; refused while the crawler runs."""
        from localcloud.motoapi import glue_backends

        name = str(params.get("Name") or "")
        crawler = glue_backends[account_id][region].crawlers.get(name)
        if crawler is None:
            raise ApiError("EntityNotFoundException", f"Crawler entry with name {name} does not exist")
        if crawler.crawls and crawler.crawls[-1]._status not in ENDED:
            raise ApiError("CrawlerRunningException", f"Crawler with name {name} has already started")
        for member, attribute in UPDATABLE.items():
            if member in params:
                setattr(crawler, attribute, params[member])
        crawler.version += 1
        crawler.last_updated = _now()
        return {}

    # -- GetCrawlerMetrics

    def _metrics(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        from localcloud.motoapi import glue_backends

        backend = glue_backends[account_id][region]
        names = params.get("CrawlerNameList") or list(backend.crawlers)
        if not isinstance(names, list):
            raise ApiError("InvalidInputException", "CrawlerNameList must be a list of crawler names")
        start = int(params.get("NextToken") or 0)
        limit = int(params.get("MaxResults") or 1000)
        found = []
        for name in names[start:start + limit]:
            crawler = backend.crawlers.get(name)
            if crawler is None:
                continue  # AWS leaves unknown names out of the list
            runs = _runs(crawler)
            done = [r for r in runs if r.get("status") == "SUCCEEDED"]
            running = bool(crawler.crawls) and crawler.crawls[-1]._status not in ENDED
            metrics: dict[str, Any] = {
                "CrawlerName": name,
                "TimeLeftSeconds": 0.0,
                "StillEstimating": running,
                "LastRuntimeSeconds": float(runs[-1]["seconds"]) if runs else 0.0,
                "MedianRuntimeSeconds": float(statistics.median(r["seconds"] for r in runs)) if runs else 0.0,
                "TablesCreated": int(done[-1].get("created", 0)) if done else 0,
                "TablesUpdated": int(done[-1].get("updated", 0)) if done else 0,
                "TablesDeleted": int(done[-1].get("deleted", 0)) if done else 0,
            }
            found.append(metrics)
        out: dict[str, Any] = {"CrawlerMetricsList": found}
        if start + limit < len(names):
            out["NextToken"] = str(start + limit)
        return out


def make_executor() -> GlueCrawlers:
    return GlueCrawlers()
