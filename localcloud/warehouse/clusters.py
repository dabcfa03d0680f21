"""A cluster's DuckDB files follow the cluster's life in moto: deleted with it, copied by its snapshots.

moto stores Redshift clusters and snapshots as metadata only; the warehouse keeps each cluster's
databases under `<state>/warehouse/<account>/<region>/cluster-<name>/`. Without this, a cluster deleted
and re-created under the same name found its old tables and rows again, which AWS never does. As AWS
documents it:
- DeleteCluster deletes the cluster's data; with a FinalClusterSnapshotIdentifier the data is kept in
  that snapshot first ("you can later restore this snapshot to resume using the cluster");
- CreateClusterSnapshot keeps the data as it is now; RestoreFromClusterSnapshot starts a new cluster
  with it; DeleteClusterSnapshot (and the automated snapshots DeleteCluster removes) forget it.
Snapshots live beside the clusters as `snapshot-<id>/` folders. The files are not wiped when a cluster is
created: without the persistence executor moto forgets its clusters at a restart, and re-creating the
cluster then finds its tables again, as the state folder promises.
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol

from localcloud import motoapi

log = logging.getLogger("localcloud.warehouse")


class ClusterStore(Protocol):
    """What the warehouse executor provides: where files live, and holding a cluster's files still."""

    root: Path

    def cluster_files_still(self, account_id: str, region: str, name: str, *,
                            forget: bool) -> AbstractContextManager[None]: ...


def cluster_folder(root: Path, account_id: str, region: str, name: str) -> Path:
    return root / account_id / region / f"cluster-{name}"


def snapshot_folder(root: Path, account_id: str, region: str, snapshot_id: str) -> Path:
    return root / account_id / region / f"snapshot-{snapshot_id}"


class ClusterFiles:
    """Hooks moto's Redshift cluster and snapshot calls (installed at start, undone at stop)."""

    def __init__(self, store: ClusterStore):
        self.store = store
        self._undo: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def installed(self) -> bool:
        return bool(self._undo)

    def install(self) -> None:
        with self._lock:
            if not self._undo:
                self._install()

    def _install(self) -> None:
        files = self

        def deleting(original: Callable[..., Any]) -> Callable[..., Any]:
            def delete_cluster(backend: Any, **kwargs: Any) -> Any:
                name = kwargs.get("cluster_identifier")
                cluster = original(backend, **kwargs)  # a final snapshot, if asked for, copies the files first
                files.wipe_cluster(backend.account_id, backend.region_name, name)
                files.forget_snapshots(backend)  # the automated snapshots went with the cluster
                return cluster
            return delete_cluster

        def snapshotting(original: Callable[..., Any]) -> Callable[..., Any]:
            def create_cluster_snapshot(backend: Any, cluster_identifier: str, snapshot_identifier: str,
                                        *args: Any, **kwargs: Any) -> Any:
                snapshot = original(backend, cluster_identifier, snapshot_identifier, *args, **kwargs)
                files.copy_to_snapshot(backend.account_id, backend.region_name, cluster_identifier,
                                       snapshot_identifier)
                return snapshot
            return create_cluster_snapshot

        def deleting_snapshot(original: Callable[..., Any]) -> Callable[..., Any]:
            def delete_cluster_snapshot(backend: Any, snapshot_identifier: str, *args: Any, **kwargs: Any) -> Any:
                snapshot = original(backend, snapshot_identifier, *args, **kwargs)
                files.forget_snapshots(backend)
                return snapshot
            return delete_cluster_snapshot

        def restoring(original: Callable[..., Any]) -> Callable[..., Any]:
            def restore_from_cluster_snapshot(backend: Any, **kwargs: Any) -> Any:
                snapshot_id, name = kwargs.get("snapshot_identifier"), kwargs.get("cluster_identifier")
                cluster = original(backend, **kwargs)
                files.restore_snapshot(backend.account_id, backend.region_name, snapshot_id, name)
                return cluster
            return restore_from_cluster_snapshot

        self._undo = [motoapi.replace("redshift.delete_cluster", deleting),
                      motoapi.replace("redshift.create_cluster_snapshot", snapshotting),
                      motoapi.replace("redshift.delete_cluster_snapshot", deleting_snapshot),
                      motoapi.replace("redshift.restore_from_cluster_snapshot", restoring)]

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []

    # what each call does to the files ---------------------------------------------------------------
    def wipe_cluster(self, account_id: str, region: str, name: str) -> None:
        """Every database of the cluster, gone (running statements are interrupted first)."""
        folder = cluster_folder(self.store.root, account_id, region, name)
        with self.store.cluster_files_still(account_id, region, name, forget=True):
            if folder.exists():
                shutil.rmtree(folder)
                log.info("cluster %s deleted: %s removed", name, folder)

    def copy_to_snapshot(self, account_id: str, region: str, name: str, snapshot_id: str) -> None:
        """The cluster's databases as they are now (no connection open while the files are copied)."""
        source = cluster_folder(self.store.root, account_id, region, name)
        target = snapshot_folder(self.store.root, account_id, region, snapshot_id)
        with self.store.cluster_files_still(account_id, region, name, forget=False):
            target.mkdir(parents=True, exist_ok=True)
            for database in sorted(source.glob("*.duckdb")) if source.exists() else []:
                shutil.copy2(database, target / database.name)

    def restore_snapshot(self, account_id: str, region: str, snapshot_id: str, name: str) -> None:
        source = snapshot_folder(self.store.root, account_id, region, snapshot_id)
        target = cluster_folder(self.store.root, account_id, region, name)
        with self.store.cluster_files_still(account_id, region, name, forget=True):
            target.mkdir(parents=True, exist_ok=True)
            for database in sorted(source.glob("*.duckdb")) if source.exists() else []:
                shutil.copy2(database, target / database.name)

    def forget_snapshots(self, backend: Any) -> None:
        """Snapshot folders of snapshots moto no longer has."""
        folder = self.store.root / backend.account_id / backend.region_name
        live = set(backend.snapshots)
        for path in folder.glob("snapshot-*") if folder.exists() else []:
            if path.name[len("snapshot-"):] not in live:
                shutil.rmtree(path, ignore_errors=True)
