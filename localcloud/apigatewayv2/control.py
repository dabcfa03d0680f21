"""The parts of the HTTP API control plane moto stores without behaviour, or lacks.

- Deployments (moto 5.2.6 has none): `CreateDeployment` snapshots the API's routes and integrations;
  with `StageName` the stage serves that snapshot. `GetDeployment(s)` / `DeleteDeployment` as AWS.
  A stage with `AutoDeploy` serves the API as it is now (AWS redeploys it on every change); one
  without serves its `DeploymentId`'s snapshot, or nothing (404) before the first deployment. A route
  added after the last deployment is therefore not served until the next `create_deployment`.
  Not modelled: the deployments AWS records for an auto-deployed stage (its GetStage shows no
  DeploymentId, GetDeployments lists only explicit ones).
- `UpdateStage` (moto lacks it): autoDeploy, deploymentId, description, stageVariables, settings.
- `GetStage` shows `deploymentId`; `GetApi`/`CreateApi` show an `ApiEndpoint` that answers locally.
- Quick create (`CreateApi` with `Target`, moto ignores it): an AWS_PROXY (function ARN, payload 2.0)
  or HTTP_PROXY (URL) integration, the route (`RouteKey`, default `$default`) and an auto-deployed
  `$default` stage, as AWS builds them.
Deployments live on moto's Api object, so they are saved and restored with moto's state; these calls
are answered inside moto's dispatcher (`dispatcher`), so the write-ahead journal records and replays
them like moto's own writes (deployment ids are drawn from moto's random source, which it replays).
"""

from __future__ import annotations

import copy
import json
import re
import string
from http import HTTPStatus
from typing import Any, Callable

from werkzeug.wrappers import Request

from localcloud.executors import WSGIApp
from localcloud.persistence import clock

DEPLOYMENTS = "_localcloud_deployments"  # attribute of moto's Api: deployment id -> snapshot
_DEPLOYMENTS_PATH = re.compile(r"^/v2/apis/(?P<api>[^/]+)/deployments(?:/(?P<deployment>[^/]+))?$")
_STAGE_PATH = re.compile(r"^/v2/apis/(?P<api>[^/]+)/stages/(?P<stage>[^/]+)$")
STAGE_FIELDS = {"autoDeploy": "auto_deploy", "description": "description", "stageVariables": "stage_variables",
                "defaultRouteSettings": "default_route_settings", "routeSettings": "route_settings",
                "accessLogSettings": "access_log_settings", "clientCertificateId": "client_certificate_id"}


class ApiError(Exception):
    """An AWS-shaped control-plane error (REST-JSON: status, x-amzn-ErrorType, {"message"})."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def find_api(api_id: str) -> Any | None:
    """moto's HTTP API with this id, in whichever account and region owns it."""
    from localcloud.motoapi import apigatewayv2_backends

    for _account, regions in list(apigatewayv2_backends.items()):
        for _region, backend in list(regions.items()):
            api = backend.apis.get(api_id)
            if api is not None:
                return api
    return None


def deployments_of(api: Any) -> dict[str, dict[str, Any]]:
    found = getattr(api, DEPLOYMENTS, None)
    if found is None:
        found = {}
        setattr(api, DEPLOYMENTS, found)
    return found


def served(api: Any, stage: Any) -> tuple[list[Any], dict[str, Any]] | None:
    """(routes, integrations by id) a stage serves, None when nothing is deployed to it."""
    if stage.auto_deploy:
        return list(api.routes.values()), dict(api.integrations)
    deployment = deployments_of(api).get(stage.config.get("deploymentId") or "")
    if deployment is None:
        return None
    return deployment["routes"], deployment["integrations"]


def _now() -> str:
    return clock.utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")  # the journal's clock: a replay stores the same


def _deployment_json(deployment: dict[str, Any]) -> dict[str, Any]:
    return {key: deployment[key] for key in ("deploymentId", "deploymentStatus", "createdDate", "autoDeployed")} | (
        {"description": deployment["description"]} if deployment.get("description") else {})


def create_deployment(api: Any, description: str | None, stage_name: str | None) -> dict[str, Any]:
    if stage_name and stage_name not in api.stages:
        raise ApiError(404, "NotFoundException", f"Invalid stage identifier specified: {stage_name}")
    if not api.routes:
        raise ApiError(400, "BadRequestException", "Unable to deploy API because no routes exist in this API")
    from localcloud.motoapi import mock_random  # moto's draws: the journal replays them identically

    deployment_id = "".join(mock_random.choice(string.ascii_lowercase + string.digits) for _ in range(6))
    deployment = {"deploymentId": deployment_id, "deploymentStatus": "DEPLOYED", "createdDate": _now(),
                  "autoDeployed": False, "description": description,
                  "routes": copy.deepcopy(list(api.routes.values())),
                  "integrations": copy.deepcopy(dict(api.integrations))}
    deployments_of(api)[deployment_id] = deployment
    if stage_name:
        api.stages[stage_name].config["deploymentId"] = deployment_id
    return _deployment_json(deployment)


def update_stage(api: Any, stage_name: str, changes: dict[str, Any]) -> dict[str, Any]:
    stage = api.stages.get(stage_name)
    if stage is None:
        raise ApiError(404, "NotFoundException", f"Invalid stage identifier specified: {stage_name}")
    if "deploymentId" in changes:
        if changes["deploymentId"] not in deployments_of(api):
            raise ApiError(404, "NotFoundException", f"Invalid deployment identifier specified: "
                                                     f"{changes['deploymentId']}")
        stage.config["deploymentId"] = changes["deploymentId"]
    for field, attribute in STAGE_FIELDS.items():
        if field in changes:
            setattr(stage, attribute, changes[field])
            stage.config[field] = changes[field]
    stage.updated = clock.utcnow().astimezone().replace(tzinfo=None)  # moto's local naive time
    return stage.to_json()


def handle(request: Request) -> tuple[int, Any]:
    """(status, JSON answer) for a control-plane request this module claims."""
    path = request.path
    matched = _DEPLOYMENTS_PATH.match(path) or _STAGE_PATH.match(path)
    assert matched is not None
    api = find_api(matched["api"])
    if api is None:
        raise ApiError(404, "NotFoundException", f"Invalid API identifier specified {matched['api']}")
    if "stage" in matched.groupdict():
        return 200, update_stage(api, matched["stage"], request.get_json(force=True, silent=True) or {})
    deployment_id = matched["deployment"]
    deployments = deployments_of(api)
    if deployment_id is None and request.method == "POST":
        body = request.get_json(force=True, silent=True) or {}
        return 201, create_deployment(api, body.get("description"), body.get("stageName"))
    if deployment_id is None:
        return 200, {"items": [_deployment_json(d) for d in deployments.values()]}
    if deployment_id not in deployments:
        raise ApiError(404, "NotFoundException", f"Invalid deployment identifier specified {deployment_id}")
    if request.method == "DELETE":
        if any(s.config.get("deploymentId") == deployment_id for s in api.stages.values()):
            raise ApiError(400, "BadRequestException", "Active stages pointing to this deployment must be moved "
                                                       "or deleted")
        del deployments[deployment_id]
        return 204, None
    return 200, _deployment_json(deployments[deployment_id])


def claims(method: str, path: str) -> bool:
    """Whether this module answers the request (moto answers the rest of the v2 control plane)."""
    if not path.startswith("/v2/apis/"):
        return False
    if _DEPLOYMENTS_PATH.match(path):
        return method in ("GET", "POST", "DELETE")
    return method == "PATCH" and _STAGE_PATH.match(path) is not None


def dispatcher(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's server, answering these calls here. They pass through moto's dispatcher rather than an
    executor's `route` so that the local cloud's write-ahead journal records them with moto's own
    writes, in one order, and replays them after a crash (acknowledged means stored)."""
    def dispatch(self: Any, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if claims(environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")):
            return app()(environ, start_response)
        return original(self, environ, start_response)
    return dispatch


def app(request_handler: Callable[[Request], tuple[int, Any]] = handle) -> WSGIApp:
    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        headers = [("Content-Type", "application/json")]
        try:
            status, answer = request_handler(Request(environ))
            body = b"" if answer is None else json.dumps(answer).encode()
        except ApiError as error:
            status, body = error.status, json.dumps({"message": error.message}).encode()
            headers.append(("x-amzn-ErrorType", error.code))
        start_response(f"{status} {HTTPStatus(status).phrase}", headers + [("Content-Length", str(len(body)))])
        return [body]

    return wsgi


# --------------------------------------------------------------------------------------------------
# Patches of moto (through the facade): the endpoint, the stage's deployment, quick create


def api_to_json(endpoint: Callable[[], str]) -> Callable[[Any], Any]:
    """Api.to_json with `apiEndpoint` = the local URL that serves the API."""
    def make(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        def to_json(self: Any) -> dict[str, Any]:
            answer = original(self)
            if self.protocol_type == "HTTP":
                answer["apiEndpoint"] = f"{endpoint()}/_localcloud/httpapi/{self.api_id}"
            return answer
        return to_json
    return make


def stage_to_json(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def to_json(self: Any) -> dict[str, Any]:
        answer = original(self)
        for key in ("deploymentId", "apiGatewayManaged"):
            if self.config.get(key):
                answer[key] = self.config[key]
        return answer
    return to_json


def quick_create(original: Callable[..., Any]) -> Callable[..., Any]:
    """moto's CreateApi response, then what AWS's quick create adds when `Target` is given."""
    def create_api(self: Any) -> Any:
        status, headers, body = original(self)
        params = json.loads(self.body or "{}")
        target = params.get("target")
        if not target:
            return status, headers, body
        api = self.apigatewayv2_backend.get_api(json.loads(body)["apiId"])
        is_url = target.startswith(("http://", "https://"))
        integration = api.create_integration(
            connection_type="INTERNET", description="", integration_method="ANY" if is_url else "POST",
            integration_type="HTTP_PROXY" if is_url else "AWS_PROXY", integration_uri=target,
            credentials_arn=params.get("credentialsArn"), payload_format_version="1.0" if is_url else "2.0")
        api.create_route(api_key_required=False, authorization_scopes=[], authorization_type="NONE",
                         route_key=params.get("routeKey") or "$default", target=f"integrations/{integration.id}")
        api.create_stage({"stageName": "$default", "autoDeploy": True, "apiGatewayManaged": True})
        return status, headers, json.dumps(api.to_json())
    return create_api
