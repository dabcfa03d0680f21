"""Athena's catalog operations over the Glue Data Catalog (AwsDataCatalog *is* Glue on AWS): ListDatabases,
GetDatabase, ListTableMetadata, GetTableMetadata read the databases and tables crawlers and DDL wrote,
not moto's own Athena list (which knows only "default" and CREATE DATABASE)."""

from __future__ import annotations

import fnmatch
from typing import Any

from localcloud.athena import engine
from localcloud.glue.lake import ApiError


class CatalogApi:
    """Mixed into the Athena executor: the `_api_*` handlers of the catalog operations."""

    @staticmethod
    def _glue(account_id: str, region: str) -> Any:
        from localcloud.motoapi import glue_backends

        return glue_backends[account_id][region]

    def _catalog(self, params: dict[str, Any], account_id: str, region: str) -> Any:
        catalog = str(params.get("CatalogName") or "")
        if catalog.lower() != engine.CATALOG:
            raise ApiError("MetadataException", f"Catalog {catalog} not found: the local Athena reads the "
                                                "AwsDataCatalog (the Glue Data Catalog) only")
        glue = self._glue(account_id, region)
        if "default" not in glue.databases:
            glue.create_database("default", {"Name": "default", "Description": "Default Hive database"})
        return glue

    @staticmethod
    def _database(glue: Any, name: str) -> Any:
        database = glue.databases.get(str(name).lower())
        if database is None:
            raise ApiError("MetadataException", f"Database {name} not found. (Service: AmazonDataCatalog; "
                                                "Status Code: 400; Error Code: EntityNotFoundException)")
        return database

    @staticmethod
    def _page(items: list[Any], params: dict[str, Any], key: str, limit_max: int = 50) -> dict[str, Any]:
        start = int(params.get("NextToken") or 0)
        limit = min(int(params.get("MaxResults") or limit_max), limit_max)
        out: dict[str, Any] = {key: items[start:start + limit]}
        if start + limit < len(items):
            out["NextToken"] = str(start + limit)
        return out

    @staticmethod
    def _table_metadata(table: Any) -> dict[str, Any]:
        definition = table.get_version(str(table._current_version))
        descriptor = definition.get("StorageDescriptor") or {}
        metadata: dict[str, Any] = {
            "Name": table.name, "CreateTime": table.created_time.timestamp(),
            "TableType": definition.get("TableType") or "EXTERNAL_TABLE",
            "Columns": [{k: c[k] for k in ("Name", "Type", "Comment") if k in c} for c in descriptor.get("Columns") or []],
            "PartitionKeys": [{k: c[k] for k in ("Name", "Type", "Comment") if k in c}
                              for c in definition.get("PartitionKeys") or []],
            "Parameters": {**(definition.get("Parameters") or {}),
                           **({"location": descriptor["Location"]} if descriptor.get("Location") else {}),
                           **({"inputformat": descriptor["InputFormat"]} if descriptor.get("InputFormat") else {}),
                           **({"outputformat": descriptor["OutputFormat"]} if descriptor.get("OutputFormat") else {}),
                           **({"serde.serialization.lib": descriptor["SerdeInfo"]["SerializationLibrary"]}
                              if (descriptor.get("SerdeInfo") or {}).get("SerializationLibrary") else {})}}
        return metadata

    def _api_list_databases(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        glue = self._catalog(params, account_id, region)
        found = [{"Name": name, "Description": db.input.get("Description") or "",
                  "Parameters": db.input.get("Parameters") or {}} for name, db in sorted(glue.databases.items())]
        return self._page(found, params, "DatabaseList")

    def _api_get_database(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        database = self._database(self._catalog(params, account_id, region), params.get("DatabaseName", ""))
        return {"Database": {"Name": database.name, "Description": database.input.get("Description") or "",
                             "Parameters": database.input.get("Parameters") or {}}}

    def _api_list_table_metadata(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        database = self._database(self._catalog(params, account_id, region), params.get("DatabaseName", ""))
        pattern = str(params.get("Expression") or "*").lower()
        tables = [self._table_metadata(t) for name, t in sorted(database.tables.items())
                  if fnmatch.fnmatch(name, pattern)]
        return self._page(tables, params, "TableMetadataList")

    def _api_get_table_metadata(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        database = self._database(self._catalog(params, account_id, region), params.get("DatabaseName", ""))
        name = str(params.get("TableName") or "").lower()
        if name not in database.tables:
            raise ApiError("MetadataException", f"Table {name} not found. (Service: AmazonDataCatalog; "
                                                "Status Code: 400; Error Code: EntityNotFoundException)")
        return {"TableMetadata": self._table_metadata(database.tables[name])}
