"""IAM enforced in the local cloud: every AWS API request is authenticated (SigV4) and authorized with the
caller's policies before an executor or moto sees it, so a policy that would fail on AWS fails here.

authn.py (keys, signatures), credentials.py (the Lambda runtime's role sessions), asks.py / json_asks.py /
s3_asks.py / rest_asks.py (request -> action, resource, condition keys), resources.py (resource
policies), decide.py (AWS's evaluation), service_checks.py (event sources, PassRole, trust policies),
errors.py (each service's refusal), gate.py (the request path). `RETAIL_LOCALCLOUD_IAM=off` turns it off.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

ENV = "RETAIL_LOCALCLOUD_IAM"


def enabled() -> bool:
    return os.environ.get(ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def check(environ: dict[str, Any]) -> Any:
    """None to let a request through, else the WSGI answer refusing it (see gate.py)."""
    if not enabled():
        return None
    from localcloud.persistence import REPLAY_DONE

    if not REPLAY_DONE.is_set():  # journaled requests were authorized when acknowledged
        return None
    from localcloud.iam.enforcement.gate import check as gate_check

    try:
        return gate_check(environ)
    except Exception as error:  # noqa: BLE001 - an enforcement bug refuses the request, never lets it pass
        logging.getLogger("localcloud.iam.enforcement").exception("enforcement failed")
        from localcloud.executor_base import respond

        message = (f"The local cloud's IAM enforcement failed on {environ.get('REQUEST_METHOD')} "
                   f"{environ.get('PATH_INFO')}: {type(error).__name__}: {error}")
        return respond(500, json.dumps({"__type": "InternalFailure", "message": message}).encode(),
                       "application/json", request_id=True, headers=[("x-amzn-ErrorType", "InternalFailure")])
