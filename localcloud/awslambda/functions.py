"""What a Lambda function version is to the local runtime, and its code on disk.

`FunctionSpec` holds everything that decides how a version runs (warm workers are keyed by it, so an
update of code or configuration starts fresh ones); `CodeStore` extracts the *deployed* zip and its
layers once per content hash, and builds the folder of packages AWS's Python runtime provides;
`aws_paths` maps those folders to where AWS has them (`/var/task`, `/opt`, `/var/lang`), for stack traces.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from localcloud.executors import LambdaInvokeError

RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


# --------------------------------------------------------------------------------------------------
# What runs: one function version with its configuration


@dataclass(frozen=True)
class FunctionSpec:
    """Everything that decides how a function version runs; workers are keyed by it."""

    account: str
    region: str
    name: str
    version: str
    arn: str  # unqualified
    handler: str
    runtime: str
    code_sha: str
    timeout: int
    memory: int
    environment: tuple[tuple[str, str], ...]
    layers: tuple[str, ...]
    reserved_concurrency: int | None = field(compare=False)

    @property
    def qualified_arn(self) -> str:
        return f"{self.arn}:{self.version}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


def spec_of(fn: Any) -> FunctionSpec:
    """The FunctionSpec of moto's function version `fn`."""
    reserved = fn.reserved_concurrency
    return FunctionSpec(
        account=fn.account_id, region=fn.region, name=fn.function_name, version=str(fn.version),
        arn=fn.function_arn.split(":function:")[0] + f":function:{fn.function_name}",
        handler=fn.handler or "", runtime=fn.run_time or "python3.11", code_sha=fn.code_sha_256,
        timeout=int(fn.timeout), memory=int(fn.memory_size),
        environment=tuple(sorted((fn.environment_vars or {}).items())),
        layers=tuple(layer["Arn"] for layer in fn.layers),
        reserved_concurrency=None if reserved in (None, "") else int(reserved),
    )


def split_function(function: str, qualifier: str | None, account: str, region: str) -> tuple[str, str | None, str, str]:
    """(name, qualifier, account, region) from a name, `name:qualifier`, partial or full ARN."""
    function = unquote(function)
    if function.startswith("arn:"):
        parts = function.split(":")  # arn:aws:lambda:region:account:function:name[:qualifier]
        if len(parts) < 7 or parts[5] != "function":
            raise LambdaInvokeError("ValidationException", f"1 validation error detected: Value '{function}' at 'functionName' failed to satisfy constraint", 400)
        region, account, name = parts[3] or region, parts[4] or account, parts[6]
        return name, parts[7] if len(parts) > 7 else qualifier, account, region
    parts = function.split(":")
    if len(parts) >= 3 and parts[1] == "function":  # account:function:name[:qualifier]
        return parts[2], parts[3] if len(parts) > 3 else qualifier, parts[0], region
    if len(parts) == 2:
        return parts[0], parts[1], account, region
    return function, qualifier, account, region


# --------------------------------------------------------------------------------------------------
# Code on disk: the deployed zip, its layers and the runtime's own packages


class CodeStore:
    """Extracts deployed zips once per content hash (code and layers) under the state folder."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()

    def code_dir(self, fn: Any, spec: FunctionSpec) -> Path:
        return self._extract("code", spec.code_sha, lambda: fn.code_bytes)

    def layer_dirs(self, spec: FunctionSpec) -> list[Path]:
        from localcloud.motoapi import lambda_backends

        backend = lambda_backends[spec.account][spec.region]
        dirs = []
        for arn in spec.layers:
            layer = backend.layers_versions_by_arn(arn)
            if layer is None:
                raise LambdaInvokeError("ResourceNotFoundException", f"Layer version {arn} does not exist.", 404)
            dirs.append(self._extract("layers", layer.code_sha_256, lambda layer=layer: layer.code_bytes))
        return dirs

    def runtime_site(self) -> Path:
        """A folder holding only what AWS's Python runtime provides (links into this environment)."""
        target = self.root / "runtime-site"
        with self._lock:
            if not target.exists():
                staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".runtime-"))
                for name in RUNTIME_PACKAGES:
                    spec = importlib.util.find_spec(name)
                    if spec is None or spec.origin is None:
                        continue
                    source = Path(spec.origin)
                    source = source.parent if source.name == "__init__.py" else source
                    (staging / source.name).symlink_to(source)
                staging.rename(target)
        return target

    def _extract(self, kind: str, sha: str, read: Any) -> Path:
        target = self.root / kind / sha.replace("/", "_").replace("+", "-").rstrip("=")
        with self._lock:
            if target.exists():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
            data = read()
            if data:
                with zipfile.ZipFile(io.BytesIO(data)) as bundle:
                    bundle.extractall(staging)
            staging.rename(target)
            return target


def aws_paths(task_root: Path, python_path: list[Path]) -> dict[str, str]:
    """Local folder -> where AWS's Python runtime has it: the bundle in /var/task, layers in /opt, the
    runtime's packages and the standard library under /var/lang."""
    import sysconfig

    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths = {str(task_root): "/var/task", str(python_path[-1]): f"/var/lang/lib/{version}/site-packages",
             sysconfig.get_paths()["stdlib"]: f"/var/lang/lib/{version}"}
    for folder in python_path[1:-1]:  # layer/python and layer/python/lib/pythonX.Y/site-packages
        layer = folder.parent if folder.name == "python" else folder.parents[3]
        paths.setdefault(str(layer), "/opt")
    return paths

