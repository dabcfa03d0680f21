"""API Gateway REST APIs: where a stage answers, the integration URI of a Lambda function, finding an
API by name, and `ensure_rest_api`, a converging builder of a whole API from a list of routes.

Notebooks 02 and 05 build their APIs call by call (`create_rest_api`, `create_resource`, `put_method`,
`put_integration`, `add_permission`, `create_deployment`): that is their lesson. The builder is for
code whose lesson is elsewhere (the end-to-end benchmark, tests).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Sequence

from botocore.exceptions import ClientError

from helpers import config

PROJECT_TAG = {"project": "retail-pipelines"}


def _error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


class Route(NamedTuple):
    """One method on one path, integrated with a Lambda function (a plain tuple works too)."""

    path: str  # "/invoices/{invoiceNo}"
    method: str  # "GET", "POST", ... or "ANY"
    function_arn: str
    integration: Literal["AWS_PROXY", "AWS"] = "AWS_PROXY"


@dataclass(frozen=True)
class Authorizer:
    """A Lambda authorizer applied to every route of the API."""

    name: str
    function_arn: str
    type: Literal["TOKEN", "REQUEST"] = "TOKEN"
    identity_source: str = "method.request.header.Authorization"
    ttl: int = 300


@dataclass(frozen=True)
class RestApi:
    id: str
    name: str
    stage: str
    url: str  # the stage's invoke URL, without a trailing slash

    def url_for(self, path: str) -> str:
        return self.url + "/" + path.lstrip("/")


def invoke_url(api_id: str, stage: str) -> str:
    """Where a stage answers: the local cloud serves `/restapis/{id}/{stage}/_user_request_`."""
    current = config.settings()
    if current.is_local:
        return f"{current.endpoint_url.rstrip('/')}/restapis/{api_id}/{stage}/_user_request_"
    return f"https://{api_id}.execute-api.{current.region}.amazonaws.com/{stage}"


def lambda_uri(function_arn: str) -> str:
    """The integration URI API Gateway uses to invoke a function."""
    region = function_arn.split(":")[3]
    return f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"


def find_rest_api(name: str) -> str | None:
    """The id of the REST API with this name (the oldest if several)."""
    apis = [api for page in config.client("apigateway").get_paginator("get_rest_apis").paginate()
            for api in page["items"] if api["name"] == name]
    return min(apis, key=lambda api: str(api.get("createdDate", "")))["id"] if apis else None


def _not_found(error: ClientError) -> bool:
    return _error_code(error) in ("NotFoundException", "ResourceNotFoundException")


class _ApiBuilder:
    """Converges one REST API on a list of routes; `changed` says whether a new deployment is due."""

    def __init__(self, api_id: str, created: bool):
        self.api_id, self.changed = api_id, created
        self.apigw = config.client("apigateway")
        self.region, self.account = config.settings().region, config.account_id()
        self.resources = {item["path"]: item["id"] for page in self.apigw.get_paginator("get_resources").paginate(
            restApiId=api_id) for item in page["items"]}

    def resource(self, path: str) -> str:
        """The id of `path`, creating missing parents one part at a time."""
        path = "/" + path.strip("/")
        if path not in self.resources:
            parent_path, _, part = path.rpartition("/")
            parent = self.resource(parent_path or "/")
            self.resources[path] = self.apigw.create_resource(restApiId=self.api_id, parentId=parent,
                                                              pathPart=part)["id"]
            self.changed = True
        return self.resources[path]

    def method(self, resource: str, verb: str, *, api_key_required: bool, authorizer_id: str | None) -> None:
        wanted = {"authorizationType": "CUSTOM" if authorizer_id else "NONE", "apiKeyRequired": api_key_required}
        if authorizer_id:
            wanted["authorizerId"] = authorizer_id
        try:
            current = self.apigw.get_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
            if all(current.get(key) == value for key, value in wanted.items()):
                return
            # update_method is not in every backend; delete + put converges the same way.
            self.apigw.delete_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
        except ClientError as error:
            if not _not_found(error):
                raise
        self.apigw.put_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb, **wanted)
        self.changed = True

    def integration(self, resource: str, route: Route) -> None:
        from localcloud.apigateway.vtl import PASSTHROUGH_TEMPLATE  # AWS's console template

        wanted: dict[str, Any] = {"type": route.integration, "httpMethod": "POST", "uri": lambda_uri(route.function_arn)}
        if route.integration == "AWS":
            wanted["requestTemplates"] = {"application/json": PASSTHROUGH_TEMPLATE}
            wanted["passthroughBehavior"] = "WHEN_NO_TEMPLATES"
        verb = route.method.upper()
        try:
            current = self.apigw.get_integration(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
        except ClientError as error:
            if not _not_found(error):
                raise
            current = {}
        if any(current.get(key) != value for key, value in wanted.items()):
            arguments = {("integrationHttpMethod" if key == "httpMethod" else key): value
                         for key, value in wanted.items()}
            self.apigw.put_integration(restApiId=self.api_id, resourceId=resource, httpMethod=verb, **arguments)
            self.changed = True
            current = {}
        if route.integration == "AWS":
            self._non_proxy_responses(resource, verb, current)

    def _non_proxy_responses(self, resource: str, verb: str, integration: dict[str, Any]) -> None:
        """A non-proxy integration needs a 200 method response and integration response to answer."""
        method = self.apigw.get_method(restApiId=self.api_id, resourceId=resource, httpMethod=verb)
        if "200" not in (method.get("methodResponses") or {}):
            self.apigw.put_method_response(restApiId=self.api_id, resourceId=resource, httpMethod=verb,
                                           statusCode="200", responseModels={"application/json": "Empty"})
            self.changed = True
        if "200" not in (integration.get("integrationResponses") or {}):
            self.apigw.put_integration_response(restApiId=self.api_id, resourceId=resource, httpMethod=verb,
                                                statusCode="200", selectionPattern="")
            self.changed = True

    def authorizer(self, authorizer: Authorizer) -> str:
        wanted = {"type": authorizer.type, "authorizerUri": lambda_uri(authorizer.function_arn),
                  "identitySource": authorizer.identity_source, "authorizerResultTtlInSeconds": authorizer.ttl}
        existing = [a for a in self.apigw.get_authorizers(restApiId=self.api_id).get("items", [])
                    if a["name"] == authorizer.name]
        if existing and all(existing[0].get(key) == value for key, value in wanted.items()):
            authorizer_id = existing[0]["id"]
        else:
            if existing:
                self.apigw.delete_authorizer(restApiId=self.api_id, authorizerId=existing[0]["id"])
            authorizer_id = self.apigw.create_authorizer(restApiId=self.api_id, name=authorizer.name, **wanted)["id"]
            self.changed = True
        self.permission(authorizer.function_arn, f"apigw-{self.api_id}-authorizer-{authorizer.name}",
                        f"{self.execute_arn}/authorizers/{authorizer_id}")
        return authorizer_id

    @property
    def execute_arn(self) -> str:
        return f"arn:aws:execute-api:{self.region}:{self.account}:{self.api_id}"

    def route_permission(self, route: Route) -> None:
        """Let API Gateway invoke the function for this method and path only (path parameters as *)."""
        verb = route.method.upper()
        path = re.sub(r"\{[^/]+\}", "*", "/" + route.path.strip("/"))
        source_arn = f"{self.execute_arn}/*/{'*' if verb == 'ANY' else verb}{path if path != '/' else '/'}"
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", route.path.strip("/")) or "root"
        self.permission(route.function_arn, f"apigw-{self.api_id}-{verb}-{slug}"[:100], source_arn)

    def permission(self, function_arn: str, statement_id: str, source_arn: str) -> None:
        """add_permission unless the statement is already there with this SourceArn (re-added if not)."""
        awslambda = config.client("lambda")
        try:
            statements = json.loads(awslambda.get_policy(FunctionName=function_arn)["Policy"])["Statement"]
        except ClientError as error:
            if _error_code(error) != "ResourceNotFoundException":
                raise
            statements = []
        same_id = [s for s in statements if s.get("Sid") == statement_id]
        if same_id and all(_source_arn(s) == source_arn for s in same_id):
            return
        if same_id:
            awslambda.remove_permission(FunctionName=function_arn, StatementId=statement_id)
        awslambda.add_permission(FunctionName=function_arn, StatementId=statement_id, Action="lambda:InvokeFunction",
                                 Principal="apigateway.amazonaws.com", SourceArn=source_arn)

    def deploy(self, stage: str) -> None:
        try:
            self.apigw.get_stage(restApiId=self.api_id, stageName=stage)
        except ClientError as error:
            if not _not_found(error):
                raise
            self.changed = True
        if self.changed:
            self.apigw.create_deployment(restApiId=self.api_id, stageName=stage,
                                         description="retail-pipelines deploy.ensure_rest_api")


def _source_arn(statement: dict[str, Any]) -> str | None:
    condition = statement.get("Condition", {}).get("ArnLike", {})
    return condition.get("AWS:SourceArn")


def ensure_rest_api(name: str, routes: Sequence[Route | tuple[str, ...]], *, stage: str = "v1",
                    api_key_required: bool = False, authorizer: Authorizer | None = None) -> RestApi:
    """A REST API named `name` whose routes invoke Lambda functions (proxy or non-proxy with AWS's
    passthrough template), with invoke permissions scoped to each method and path, deployed to
    `stage`. Found by name and converged, so a rerun changes (and redeploys) only what differs.
    Routes no longer listed are left in place."""
    apigw = config.client("apigateway")
    api_id = find_rest_api(name)
    created = api_id is None
    if api_id is None:
        config.require_create_allowed(f"API Gateway REST API {name}")
        api_id = apigw.create_rest_api(name=name, description="retail-pipelines", tags=PROJECT_TAG,
                                       endpointConfiguration={"types": ["REGIONAL"]})["id"]
    else:
        config.require_create_allowed(f"changes to API Gateway REST API {name}")
    builder = _ApiBuilder(api_id, created)
    authorizer_id = builder.authorizer(authorizer) if authorizer else None
    for given in routes:
        route = Route(*given)
        resource = builder.resource(route.path)
        builder.method(resource, route.method.upper(), api_key_required=api_key_required, authorizer_id=authorizer_id)
        builder.integration(resource, route)
        builder.route_permission(route)
    builder.deploy(stage)
    return RestApi(id=api_id, name=name, stage=stage, url=invoke_url(api_id, stage))


def ensure_api_key(api: RestApi, name: str) -> str:
    """An API key `name` in a usage plan `name` that covers the API's stage; returns the key's value
    (send it as the x-api-key header)."""
    apigw = config.client("apigateway")
    config.require_create_allowed(f"API key and usage plan {name}")
    plans = [p for page in apigw.get_paginator("get_usage_plans").paginate() for p in page["items"] if p["name"] == name]
    if plans:
        plan = plans[0]
        if not any(s["apiId"] == api.id and s["stage"] == api.stage for s in plan.get("apiStages", [])):
            apigw.update_usage_plan(usagePlanId=plan["id"], patchOperations=[
                {"op": "add", "path": "/apiStages", "value": f"{api.id}:{api.stage}"}])
    else:
        plan = apigw.create_usage_plan(name=name, apiStages=[{"apiId": api.id, "stage": api.stage}],
                                       tags=PROJECT_TAG)
    keys = [k for page in apigw.get_paginator("get_api_keys").paginate(nameQuery=name, includeValues=True)
            for k in page["items"] if k["name"] == name]
    key = keys[0] if keys else apigw.create_api_key(name=name, enabled=True, tags=PROJECT_TAG)
    in_plan = {k["id"] for page in apigw.get_paginator("get_usage_plan_keys").paginate(usagePlanId=plan["id"])
               for k in page["items"]}
    if key["id"] not in in_plan:
        apigw.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return key["value"]


def passthrough_template() -> str:
    """AWS's "Method Request passthrough" mapping template, verbatim (what the console inserts)."""
    from localcloud.apigateway.vtl import PASSTHROUGH_TEMPLATE

    return PASSTHROUGH_TEMPLATE
