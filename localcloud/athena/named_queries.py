"""Athena's named queries and workgroup deletion as AWS answers them. moto stores named queries and
workgroups but has no DeleteNamedQuery, UpdateNamedQuery or BatchGetNamedQuery (they answered a bare 500),
and its DeleteWorkGroup ignored RecursiveDeleteOption, leaving the workgroup's named queries behind.

- GetNamedQuery / DeleteNamedQuery / UpdateNamedQuery / BatchGetNamedQuery on moto's records; an unknown
  id is `InvalidRequestException` (moto's GetNamedQuery failed with a 500) (BatchGet lists it under `UnprocessedNamedQueryIds`);
- DeleteWorkGroup: `primary` cannot be deleted; a workgroup holding named queries or query executions is
  deleted only with `RecursiveDeleteOption`, which removes them with it ("delete the workgroup and its
  contents even if the workgroup contains any named queries, query executions, or notebooks")."""

from __future__ import annotations

from typing import Any

from localcloud.athena.queries import queries_of
from localcloud.glue.lake import ApiError


def _described(named: Any) -> dict[str, Any]:
    return {"Name": named.name, "Description": named.description or "", "Database": named.database,
            "QueryString": named.query_string, "NamedQueryId": named.id, "WorkGroup": named.workgroup.name}


class NamedQueryApi:
    """Mixed into the Athena executor: the `_api_*` handlers of these operations."""

    @staticmethod
    def _athena(account_id: str, region: str) -> Any:
        from localcloud.motoapi import athena_backends

        return athena_backends[account_id][region]

    def _named(self, params: dict[str, Any], account_id: str, region: str) -> Any:
        query_id = str(params.get("NamedQueryId") or "")
        named = self._athena(account_id, region).named_queries.get(query_id)
        if named is None:
            raise ApiError("InvalidRequestException", f"NamedQuery {query_id} was not found")
        return named

    def _api_get_named_query(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        return {"NamedQuery": _described(self._named(params, account_id, region))}

    def _api_delete_named_query(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        named = self._named(params, account_id, region)
        del self._athena(account_id, region).named_queries[named.id]
        return {}

    def _api_update_named_query(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        named = self._named(params, account_id, region)
        name, sql = params.get("Name"), params.get("QueryString")
        if not name or not sql:
            raise ApiError("InvalidRequestException", "Name and QueryString are required")
        named.name, named.query_string = str(name), str(sql)
        if "Description" in params:
            named.description = params["Description"]
        return {}

    def _api_batch_get_named_query(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        found, missing = [], []
        for query_id in params.get("NamedQueryIds") or []:
            named = self._athena(account_id, region).named_queries.get(query_id)
            if named is None:
                missing.append({"NamedQueryId": query_id, "ErrorCode": "INVALID_INPUT",
                                "ErrorMessage": f"NamedQuery {query_id} was not found"})
            else:
                found.append(_described(named))
        return {"NamedQueries": found, "UnprocessedNamedQueryIds": missing}

    def _api_delete_work_group(self, params: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
        backend = self._athena(account_id, region)
        name = str(params.get("WorkGroup") or "")
        if name == "primary":
            raise ApiError("InvalidRequestException", "The primary workgroup cannot be deleted.")
        if name not in backend.work_groups:
            raise ApiError("InvalidRequestException", f"WorkGroup {name} is not found.")
        named = [query_id for query_id, query in backend.named_queries.items() if query.workgroup.name == name]
        executions = [query_id for query_id, query in queries_of(backend).items() if query.workgroup == name]
        if (named or executions) and not params.get("RecursiveDeleteOption"):
            raise ApiError("InvalidRequestException",
                           f"WorkGroup {name} is not empty ({len(named)} named queries, {len(executions)} query "
                           "executions): set RecursiveDeleteOption to delete it with its contents")
        for query_id in named:
            del backend.named_queries[query_id]
        for query_id in executions:
            del queries_of(backend)[query_id]
        del backend.work_groups[name]
        return {}
