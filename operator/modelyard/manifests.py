"""Reading modelyard objects from manifest files, with the file and line each came from.

Used offline by ``render``, ``plan`` and ``audit -f``. Objects of other API groups (the Secrets and
Namespaces of a GitOps tree) are skipped; an unknown modelyard kind, malformed YAML or an invalid spec is a
:class:`UserError` naming the file, the object and the field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelyard.api import GROUP, KINDS, ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.errors import UserError

ApiObject = ModelDeployment | ProviderBinding | RoutePolicy
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class Manifest:
    """One parsed modelyard object and where it was written."""

    path: Path
    line: int  #: 1-based line of the document's first key
    obj: ApiObject

    @property
    def ref(self) -> str:
        return f"{self.obj.kind}/{self.obj.metadata.name}"


def format_validation_error(exc: ValidationError) -> str:
    """All errors of ``exc`` on one line, each as ``dotted.path: message``."""
    parts = []
    for error in exc.errors():
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{path}: {message}" if path else message)
    return "; ".join(parts)


def parse_object(body: dict[str, Any], where: str = "") -> ApiObject:
    """Parse one modelyard object; ``where`` prefixes error messages (e.g. ``file.yaml:3``)."""
    kind = body.get("kind")
    name = (body.get("metadata") or {}).get("name", "?")
    prefix = f"{where}: " if where else ""
    cls = KINDS.get(str(kind))
    if cls is None:
        raise UserError(f"{prefix}unknown kind {kind!r} in {GROUP} (known: {', '.join(KINDS)})")
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise UserError(f"{prefix}{kind}/{name}: {format_validation_error(exc)}") from None


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                yield node.start_mark.line + 1, loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{where}: malformed YAML: {problem}") from None
    finally:
        loader.dispose()


def _files(target: Path) -> list[Path]:
    if target.is_dir():
        return sorted(p for p in target.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if target.is_file():
        return [target]
    raise UserError(f"{target}: no such file or directory")


def is_modelyard(body: Any) -> bool:
    return isinstance(body, dict) and str(body.get("apiVersion", "")).startswith(f"{GROUP}/")


def load(target: Path, default_namespace: str = "default") -> list[Manifest]:
    """Every modelyard object in a file or (recursively) a directory, in file order."""
    manifests = []
    for path in _files(target):
        for line, body in _documents(path):
            if not isinstance(body, dict):
                raise UserError(f"{path}:{line}: a manifest must be a mapping, got {type(body).__name__}")
            if not is_modelyard(body):
                continue
            obj = parse_object(body, f"{path}:{line}")
            if not obj.metadata.name:
                raise UserError(f"{path}:{line}: {obj.kind}: metadata.name is required")
            obj.metadata.namespace = obj.metadata.namespace or default_namespace
            manifests.append(Manifest(path, line, obj))
    if not manifests:
        raise UserError(f"{target}: no {GROUP} objects found")
    return manifests
