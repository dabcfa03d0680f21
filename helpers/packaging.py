"""Packaging Lambda functions: a deterministic zip of a function folder under `lambdas/`, with its
`requirements.txt` vendored offline from this environment's installed distributions (what
`pip install -t` would put there), or the same files as a layer (`python/` prefix), or a layer folder
under `lambdas/layers/` (the record contract the functions share).

Not the lesson of any notebook (they call `packaging.package("ingest_api")` and hand the bytes to
`lambda.create_function`), but exactly what AWS runs: the same zip deploys to a real account.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import sys
import warnings
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterable, Sequence

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from helpers.paths import BUILD_DIR, LAMBDAS_DIR

RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the local Python: what we test with
HANDLER = "app.handler"
PACKAGE_CACHE = BUILD_DIR / "lambda"
LAYERS_DIR = LAMBDAS_DIR / "layers"  # layers the workbook publishes itself (the record contract)
# The Lambda Python runtime ships these; vendoring them would only add megabytes and version skew.
RUNTIME_PROVIDED = frozenset(
    canonicalize_name(n) for n in ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six")
)
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same files give the same bytes and CodeSha256
_EXCLUDED_PARTS = {"__pycache__", "tests", "test", ".pytest_cache"}


class PackagingError(RuntimeError):
    """A function or layer cannot be packaged (a requirement is missing or the wrong version)."""




def function_folder(folder: str | Path) -> Path:
    """`lambdas/<folder>/`, or `folder` itself when it is a path to a directory (tests, experiments)."""
    path = Path(folder)
    if not path.is_absolute():
        path = LAMBDAS_DIR / path
    if not (path / "app.py").is_file():
        raise PackagingError(f"{path} is not a Lambda function folder: it has no app.py with handler(event, context)")
    return path


def source_files(folder: Path) -> dict[str, Path]:
    """The folder's .py files by archive name (tests and caches left out)."""
    files = {}
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder)
        if _EXCLUDED_PARTS & set(relative.parts[:-1]) or relative.name.startswith(("test_", ".")):
            continue
        files[relative.as_posix()] = path
    return files


def read_requirements(source: Path | Iterable[str]) -> list[Requirement]:
    """Requirements from a requirements.txt (comments, blank lines and pip options ignored) or lines."""
    lines = source.read_text().splitlines() if isinstance(source, Path) else list(source)
    requirements = []
    for line in lines:
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            requirements.append(Requirement(text))
        except InvalidRequirement as error:
            raise PackagingError(f"cannot read requirement {text!r}: {error}") from None
    return requirements


def resolve(requirements: Sequence[Requirement]) -> list[metadata.Distribution]:
    """The installed distributions to vendor: each requirement and, recursively, its non-optional
    dependencies, less what the Lambda runtime provides. Offline: this environment is the source, so
    a requirement must be installed here at a version its pin allows."""
    environment = {**default_environment(), "extra": ""}
    found: dict[str, metadata.Distribution] = {}
    pending = [(requirement, "requirements.txt") for requirement in requirements]
    while pending:
        requirement, wanted_by = pending.pop(0)
        key = canonicalize_name(requirement.name)
        if key in RUNTIME_PROVIDED:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue  # an extra or another platform's dependency
        try:
            distribution = found.get(key) or metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise PackagingError(
                f"{requirement} (needed by {wanted_by}) is not installed in this environment ({sys.prefix}); "
                f"packaging is offline and copies installed files: pip install '{requirement}' first"
            ) from None
        if not requirement.specifier.contains(distribution.version, prereleases=True):
            raise PackagingError(
                f"{requirement} (needed by {wanted_by}) is pinned, but {distribution.metadata['Name']} "
                f"{distribution.version} is installed: install the pinned version or change the pin"
            )
        if key in found:
            continue
        found[key] = distribution
        pending += [(Requirement(text), f"{distribution.metadata['Name']} {distribution.version}")
                    for text in distribution.requires or []]
    return [found[key] for key in sorted(found)]


def distribution_files(distribution: metadata.Distribution) -> dict[str, Path]:
    """What `pip install -t` would put in the target folder for this distribution: its package files
    and .dist-info, without compiled caches or scripts outside site-packages."""
    files = {}
    for entry in distribution.files or []:
        relative = entry.as_posix()
        if relative.startswith("..") or "__pycache__" in entry.parts or relative.endswith(".pyc"):
            continue
        path = Path(str(distribution.locate_file(entry)))
        if path.is_file():
            files[relative] = path
    if not _runs_on_lambda(distribution):
        warnings.warn(
            f"{distribution.metadata['Name']} {distribution.version} was installed with compiled extensions for "
            f"another platform than Lambda's ({LAMBDA_PLATFORM}, {RUNTIME}); the function will fail to import it. "
            "Package on linux x86_64, or use a layer built for Lambda",
            stacklevel=4,
        )
    return files


LAMBDA_PLATFORM = "manylinux x86_64"  # the architecture deploy_function creates (Lambda's default)


def _runs_on_lambda(distribution: metadata.Distribution) -> bool:
    """Pure Python, or a wheel tagged for manylinux x86_64 and this CPython (or the stable ABI)."""
    wheel = distribution.read_text("WHEEL") or ""
    if "Root-Is-Purelib: false" not in wheel:
        return True
    abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for line in wheel.splitlines():
        if line.startswith("Tag:"):
            _python, tag_abi, platform = line.split(":", 1)[1].strip().split("-", 2)
            if "linux" in platform and platform.endswith("x86_64") and tag_abi in (abi, "abi3", "none"):
                return True
    return False


def deterministic_zip(files: dict[str, Path | bytes]) -> bytes:
    """A zip of `files` (archive name -> path or bytes), sorted, with fixed timestamps and modes, so
    unchanged content always gives the same bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            content = files[name]
            archive.writestr(info, content if isinstance(content, bytes) else content.read_bytes())
    return buffer.getvalue()


def _vendored(distributions: Sequence[metadata.Distribution], prefix: str = "") -> dict[str, Path]:
    files: dict[str, Path] = {}
    for distribution in distributions:
        for name, path in distribution_files(distribution).items():
            files[prefix + name] = path
    return files


def _cache_key(kind: str, parts: Iterable[bytes]) -> str:
    digest = hashlib.sha256(f"{kind}|{RUNTIME}|".encode())
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


def _cached_build(name: str, key: str, build: Callable[[], bytes]) -> bytes:
    """The zip built before for the same content (build/lambda/<name>-<key>.zip), else a new one."""
    path = PACKAGE_CACHE / f"{name}-{key[:16]}.zip"
    if path.is_file():
        return path.read_bytes()
    data = build()
    PACKAGE_CACHE.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.replace(path)
    return data


def package(folder: str | Path) -> bytes:
    """The deployment zip of a function folder: its .py files plus, when it has a requirements.txt,
    those distributions vendored at the zip root as `pip install -t` would (offline, from this
    environment). Deterministic, so an unchanged function has an unchanged CodeSha256."""
    path = function_folder(folder)
    sources = source_files(path)
    requirements_file = path / "requirements.txt"
    requirements = read_requirements(requirements_file) if requirements_file.is_file() else []
    distributions = resolve(requirements)  # checks pins even when the zip is cached
    key = _cache_key("function", [
        *(name.encode() + b"\0" + file.read_bytes() for name, file in sources.items()),
        *(f"{d.metadata['Name']}=={d.version}".encode() for d in distributions),
    ])

    def build() -> bytes:
        files: dict[str, Path | bytes] = dict(_vendored(distributions))
        clashes = sorted(set(files) & set(sources))
        if clashes:
            raise PackagingError(f"{path.name}: files would overwrite vendored ones: {clashes[:5]}")
        files.update(sources)
        return deterministic_zip(files)

    return _cached_build(path.name, key, build)


def layer_folder(folder: str | Path) -> Path:
    """`lambdas/layers/<folder>/`, a layer's content as Lambda extracts it to /opt (its `python/` folder is
    on the functions' sys.path), or `folder` itself when it is a path."""
    path = Path(folder)
    if not path.is_absolute():
        path = LAYERS_DIR / path
    if not (path / "python").is_dir():
        raise PackagingError(f"{path} is not a layer folder: it has no python/ folder (Lambda adds /opt/python to sys.path)")
    return path


def package_layer_folder(folder: str | Path) -> bytes:
    """The layer zip of a folder under `lambdas/layers/` (its .py files, paths kept: `python/...`).
    Deterministic, so an unchanged layer has an unchanged CodeSha256 and is not published again."""
    path = layer_folder(folder)
    sources = source_files(path)
    key = _cache_key("layer-folder", [name.encode() + b"\0" + file.read_bytes() for name, file in sources.items()])
    return _cached_build(f"layer-{path.name}", key, lambda: deterministic_zip(dict(sources)))


def imported_layers(folder: str | Path) -> list[str]:
    """The folders under `lambdas/layers/` whose package a function's code imports (`import retail_records`):
    the layers it must be deployed with."""
    sources = source_files(function_folder(folder))
    code = "\n".join(path.read_text() for path in sources.values())
    found = []
    for layer in sorted(p for p in LAYERS_DIR.iterdir() if (p / "python").is_dir()) if LAYERS_DIR.is_dir() else []:
        packages = [p.name for p in (layer / "python").iterdir() if (p / "__init__.py").is_file()]
        if any(re.search(rf"^\s*(?:import|from)\s+{package}\b", code, re.MULTILINE) for package in packages):
            found.append(layer.name)
    return found


def package_layer(requirements: Path | Iterable[str]) -> bytes:
    """A layer zip of the requirements (under `python/`, where Lambda puts layers on sys.path)."""
    wanted = read_requirements(requirements if isinstance(requirements, Path) else list(requirements))
    distributions = resolve(wanted)
    key = _cache_key("layer", [f"{d.metadata['Name']}=={d.version}".encode() for d in distributions])
    return _cached_build("layer", key, lambda: deterministic_zip(dict(_vendored(distributions, prefix="python/"))))


def code_sha256(data: bytes) -> str:
    """Lambda's CodeSha256 of a zip: base64 of its sha256."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()
