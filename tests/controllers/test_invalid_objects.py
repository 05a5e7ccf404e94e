"""Generated invalid and extreme objects of the three kinds, applied through a real API server with the
operator running (issue 12: fault tests).

hypothesis draws each object from the CRDs the API models generate (crds/): a valid value for every field
from its schema (type, enum, pattern, bounds), or an example manifest with one field broken or pushed to an
edge (a wrong type, a missing required field, boundary and huge numbers, floats where integers go, unicode,
empty and over-long strings, empty and over-long lists, unknown enum values, odd names). Each one is created
once; then:

- one refused is refused by the schema or a CEL rule: 422 Invalid, with causes that name a field;
- one accepted parses into the API model as the operator parses it (else the schema has a gap pydantic
  catches, and the operator could only call it InvalidSpec);
- every accepted one gets a Ready condition, with a reason the operator documents, within a bounded time
  (each object's condition is waited for, so a slow operator fails the test rather than passing it);
- the operator never logs a traceback and never exits.

The test runs on a sandbox of its own with no PersistentVolumes: claims stay Pending, so no download or
serving pod of an extreme object (1000 replicas) ever runs, and the session sandbox's volume pool is not used
up by a hundred claims.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kopf.testing import KopfRunner
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from modelyard.api import GROUP, VERSION, ModelDeployment, ProviderBinding, RoutePolicy
from modelyard.controllers.common import INVALID_SPEC, READY
from modelyard_sandbox import Ports, Sandbox
from tests.conftest import _fresh_namespace
from tests.controllers.conftest import ROOT, condition, install_crds, load_examples

pytestmark = [
    pytest.mark.sandbox,
    # hypothesis notices the global random state move while it draws: the operator's and moto's threads in
    # this process use it, not the strategies
    pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies"),
]

KINDS = (ModelDeployment, ProviderBinding, RoutePolicy)
#: objects applied (hypothesis examples); each is one create request
OBJECTS = 200
#: every accepted object has a Ready condition within this (the first pass of ~100 objects takes seconds)
FIRST_CONDITION_S = 90
MISSING = object()  #: a mutation that deletes the field

#: Ready reasons the operator documents, by kind: invalid specs, plans that cannot fit, and the progress of a
#: valid object whose weights are still downloading (claims stay Pending here), whose backends are missing,
#: or whose cloud refuses. A child the API server refuses (<Kind>Failed) is not among them: a spec that
#: leads to one must be refused by the CRD first.
READY_REASONS: dict[str, set[str]] = {
    "ModelDeployment": {
        INVALID_SPEC,
        "InsufficientGPUMemory",
        "InsufficientMemory",  # engine: ollama on CPU
        "Downloading",
        "ClaimNotFound",
    },
    "RoutePolicy": {INVALID_SPEC, "BackendNotFound", "NoEligibleBackend"},
    "ProviderBinding": {
        INVALID_SPEC,
        "StaticCredentialsNotAllowed",
        "IdentityConflict",
        "VerificationUnavailable",
        # cloud verdicts (cloud/aws.py, cloud/azure.py) and the clouds' own error codes
        "AccountNotFound",
        "AccountUnreadable",
        "TokenExchangeFailed",
        "CallerIdentityFailed",
        "VpcEndpointNotFound",
        "NoVpcEndpoint",
        "VpcEndpointUnreadable",
        "InvocationLoggingUnverified",
        "AccessDenied",
        "InvalidIdentityToken",
        # public-API keys (controllers/verification.py): the generated Secret names do not exist
        "SecretNotFound",
        "SecretKeyMissing",
    },
}


# --- strategies from the CRD schema -------------------------------------------------------------------
def crd_spec_schema(kind: Any) -> dict[str, Any]:
    """The openAPIV3Schema of ``kind``'s spec, as the API server has it (crds/ is generated from the API
    models and applied as it is)."""
    crd = yaml.safe_load((ROOT / "crds" / f"{kind.PLURAL}.{GROUP}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def valid(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the OpenAPI schema accepts (CEL rules aside)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if not props:
            values = valid(schema.get("additionalProperties", {"type": "string"}))
            return st.dictionaries(st.text(max_size=12), values, max_size=3)
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: valid(v) for k, v in props.items() if k in required},
            optional={k: valid(v) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        low = schema.get("minItems", 0)
        keys = schema.get("x-kubernetes-list-map-keys")
        return st.lists(
            valid(schema["items"]),
            min_size=low,
            max_size=min(schema.get("maxItems", low + 3), low + 3),
            unique_by=(lambda item: tuple(item.get(k) for k in keys)) if keys else None,
        )
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: low <= len(s) <= high)
        return st.text(min_size=low, max_size=min(high, 64))
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    return st.just({})


def paths(
    schema: dict[str, Any], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any, bool]]:
    """Every field under ``schema``: (path, its schema, required). ``[]`` is an item, ``{}`` a map value."""
    if schema.get("type") == "object":
        required = set(schema.get("required", []))
        for name, sub in schema.get("properties", {}).items():
            yield (*prefix, name), sub, name in required
            yield from paths(sub, (*prefix, name))
        if "additionalProperties" in schema and not schema.get("properties"):
            yield (*prefix, "{}"), schema["additionalProperties"], False
    elif schema.get("type") == "array":
        yield (*prefix, "[]"), schema["items"], False
        yield from paths(schema["items"], (*prefix, "[]"))


WRONG_TYPES: dict[str, Any] = {
    "string": "text",
    "integer": 7,
    "number": 0.5,
    "boolean": True,
    "array": ["x"],
    "object": {"x": "y"},
}
UNICODE = st.text(st.characters(min_codepoint=0x80, exclude_categories=["Cs"]), min_size=1, max_size=40)


def broken(schema: dict[str, Any], required: bool) -> st.SearchStrategy[tuple[Any, str]]:
    """A value that breaks ``schema`` or sits on its edge, with a label saying which."""
    kind = schema.get("type", "object")
    wrong = [(v, f"{t} where {kind} goes") for t, v in WRONG_TYPES.items() if t != kind]
    options: list[st.SearchStrategy[tuple[Any, str]]] = [st.sampled_from(wrong), st.just((None, "null"))]
    if required:
        options.append(st.just((MISSING, "missing required field")))
    if "enum" in schema:
        unknown = st.one_of(st.text(max_size=20), UNICODE).filter(lambda v: v not in schema["enum"])
        options.append(unknown.map(lambda v: (v, "unknown enum value")))
        first = schema["enum"][0]
        if isinstance(first, str) and first.upper() != first:
            options.append(st.just((first.upper(), "enum value in the wrong case")))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        edges: list[float] = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 10**30, -(2**63) - 1]
        edges += [b for b in (low, high) if b is not None]
        edges += [b - 1 for b in (low,) if b is not None] + [b + 1 for b in (high,) if b is not None]
        if kind == "integer":
            edges += [1.5, 1.0, 1e300]
        else:
            edges += [5e-324, 1e308]
        options.append(st.sampled_from(edges).map(lambda v: (v, f"boundary number {v!r}")))
    if kind == "string":
        high = schema.get("maxLength")
        longer = (high or 4096) + 1
        options += [
            st.just(("", "empty string")),
            UNICODE.map(lambda v: (v, "unicode string")),
            st.just(("a" * longer, f"string of {longer} characters")),
            st.just(("x" * 100_000, "string of 100000 characters")),
            st.sampled_from(["\x00", " leading space", "line\nbreak", "../../etc"]).map(
                lambda v: (v, "odd string")
            ),
        ]
    if kind == "array":
        item = valid(schema["items"])
        high = schema.get("maxItems")
        keys = schema.get("x-kubernetes-list-map-keys", [])
        options += [
            st.just(([], "empty list")),
            item.map(lambda one: (copies(one, high or 1000, keys), "longest list")),
        ]
        if high is not None:
            options.append(item.map(lambda one: (copies(one, high + 1, keys), "list too long")))
    if kind == "object":
        options.append(st.just(({}, "empty object")))
        if "additionalProperties" in schema and not schema.get("properties"):
            big = {f"key-{i}": "v" for i in range(500)}
            options += [
                st.just((big, "map of 500 entries")),
                st.dictionaries(UNICODE, UNICODE, min_size=1, max_size=2).map(lambda m: (m, "unicode map")),
            ]
    return st.one_of(options)


def copies(item: Any, count: int, keys: list[str]) -> list[Any]:
    """``count`` copies of ``item``; in a list that is a map, each with its own key (the original's with a
    number appended, e.g. 64 routes chat-0, chat-1, ...)."""
    if not keys or not isinstance(item, dict):
        return [copy.deepcopy(item) for _ in range(count)]
    return [{**copy.deepcopy(item), **{k: f"{item.get(k, 'k')}-{i}" for k in keys}} for i in range(count)]


@dataclass
class Case:
    """One generated object, and what was done to it."""

    kind: str
    body: dict[str, Any]
    label: str
    path: str = ""  #: the field that was broken (dotted, from spec), "" for a generated object
    name_suffix: str | None = None  #: a generated name (made unique with a suffix)


def _place(
    draw: st.DrawFn, container: Any, schema: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    """Put ``value`` at ``path`` in ``container``, creating valid parents where they are missing."""
    key, rest = path[0], path[1:]
    if key in ("[]", "{}"):
        sub = schema["items"] if key == "[]" else schema.get("additionalProperties", {})
        if key == "[]":
            if not container:
                container.append(draw(valid(sub)))
            slot: Any = draw(st.integers(0, len(container) - 1))
        else:
            if not container:
                container["k"] = draw(valid(sub))
            slot = draw(st.sampled_from(sorted(container)))
    else:
        sub, slot = schema["properties"][key], key
    if not rest:
        if value is MISSING:
            container.pop(slot, None)
        else:
            container[slot] = value
        return
    current = container.get(slot) if isinstance(container, dict) else container[slot]
    if not isinstance(current, dict | list):
        container[slot] = draw(valid(sub))
    _place(draw, container[slot], sub, rest, value)


def strategies() -> st.SearchStrategy[Case]:
    """Cases of the three kinds: a broken or edged field of an example, a name, or a generated spec."""
    schemas = {kind.KIND: crd_spec_schema(kind) for kind in KINDS}
    fields = {kind: sorted(paths(schema)) for kind, schema in schemas.items()}
    examples: dict[str, list[dict[str, Any]]] = {kind.KIND: [] for kind in KINDS}
    for body in load_examples():
        if body["kind"] in examples:
            examples[body["kind"]].append(body)

    @st.composite
    def field_broken(draw: st.DrawFn, kind: str) -> Case:
        body = copy.deepcopy(draw(st.sampled_from(examples[kind])))
        path, schema, required = draw(st.sampled_from(fields[kind]))
        value, label = draw(broken(schema, required))
        _place(draw, body["spec"], schemas[kind], path, value)
        dotted = ".".join(("spec", *path)).replace(".[]", "").replace(".{}", "")
        return Case(kind, body, f"spec.{'.'.join(path)}: {label}", dotted)

    @st.composite
    def generated(draw: st.DrawFn, kind: str) -> Case:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {}}
        body["spec"] = draw(valid(schemas[kind]))
        return Case(kind, body, "spec generated from the schema")

    @st.composite
    def named(draw: st.DrawFn, kind: str) -> Case:
        body = copy.deepcopy(draw(st.sampled_from(examples[kind])))
        name = draw(
            st.one_of(
                st.from_regex(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", fullmatch=True),
                UNICODE,
                st.just("x" * 300),
                st.just("-" + "y" * 70),
                st.sampled_from(["UPPER", "under_score", "dot.", "a..b"]),
            )
        )
        return Case(kind, body, f"metadata.name {name[:40]!r}", "metadata.name", name_suffix=name)

    kinds = [kind.KIND for kind in KINDS]
    return st.one_of(
        st.sampled_from(kinds).flatmap(field_broken),
        st.sampled_from(kinds).flatmap(generated),
        st.sampled_from(kinds).flatmap(named),
    )


# --- the sandbox and the operator ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of this module's own, with modelyard's CRDs and no volumes (claims stay Pending)."""
    env = Sandbox(tmp_path_factory.mktemp("invalid-objects") / "cluster", ports=Ports.free())
    try:
        env.up(gpu_nodes=1, gpus_per_node=8, cpu_nodes=1, volumes=0)
        install_crds(env)
        yield env
    finally:
        env.down()


@pytest.fixture
def api(bare: Sandbox) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(bare.kubeconfig))


@pytest.fixture
def bare_namespace(request: pytest.FixtureRequest, api: client.ApiClient) -> Iterator[str]:
    yield from _fresh_namespace(request, api)


@contextmanager
def operator_in(namespace: str) -> Iterator[KopfRunner]:
    """The operator, watching ``namespace`` only; it must neither exit early nor fail."""
    args = ["run", "--standalone", "--namespace", namespace, "-m", "modelyard.controllers"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner
        assert not runner.future.done(), "the operator exited during the test"
    assert runner.exit_code == 0, runner.output[-5000:]
    assert runner.exception is None, runner.output[-5000:]


# --- the test -----------------------------------------------------------------------------------------
@dataclass
class Outcome:
    refused: list[tuple[Case, str]] = field(default_factory=list)
    accepted: dict[tuple[str, str], Case] = field(default_factory=dict)
    gaps: list[str] = field(default_factory=list)  #: accepted, but the API model refuses the stored object
    unclear: list[str] = field(default_factory=list)  #: refused without 422 Invalid naming a field
    named_broken: int = 0  #: refusals that name the very field a case broke
    stricter: list[str] = field(default_factory=list)  #: refused, but the API model accepts the object


def apply_case(
    custom: client.CustomObjectsApi, namespace: str, number: int, case: Case, out: Outcome
) -> None:
    """Create one case's object and judge the API server's answer."""
    kind = next(k for k in KINDS if case.kind == k.KIND)
    body = copy.deepcopy(case.body)
    prefix = f"o{number:03d}"
    name = f"{case.name_suffix}-{number:03d}" if case.name_suffix is not None else prefix
    body["metadata"] = {"name": name}
    try:
        stored = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, kind.PLURAL, body)
    except ApiException as exc:
        answer = json.loads(exc.body) if exc.body else {}
        causes = (answer.get("details") or {}).get("causes") or []
        what = f"{case.label}: {exc.status} {answer.get('reason')}: {answer.get('message')}"
        # the field each cause names, without list indices (spec.routes[1].model -> spec.routes.model)
        named = [re.sub(r"\[\d+\]", "", c["field"]) for c in causes if c.get("field") and c.get("message")]
        if exc.status != 422 or answer.get("reason") != "Invalid":
            out.unclear.append(f"not 422 Invalid: {what}")
        elif not named:
            out.unclear.append(f"no field named: {what}")
        elif case.path and any(case.path.startswith(f) or f.startswith(case.path) for f in named):
            out.named_broken += 1  # else the edge was valid, or a generated parent was refused first
        try:
            kind.model_validate(body)
        except ValidationError:
            pass
        else:
            out.stricter.append(what)
        out.refused.append((case, what))
        return
    try:
        kind.model_validate(stored)
    except ValidationError as exc:
        out.gaps.append(f"{case.kind}/{name} {case.label}: {exc}")
    out.accepted[(case.kind, name)] = case


def ready_conditions(
    custom: client.CustomObjectsApi, namespace: str
) -> dict[tuple[str, str], dict[str, Any] | None]:
    found: dict[tuple[str, str], dict[str, Any] | None] = {}
    for kind in KINDS:
        for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, kind.PLURAL)["items"]:
            found[(kind.KIND, item["metadata"]["name"])] = condition(item, READY)
    return found


def test_generated_invalid_and_extreme_objects(
    bare: Sandbox,
    api: client.ApiClient,
    bare_namespace: str,
    clouds: Callable[[str, str], None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every generated object is refused by the schema or CEL with a message naming the field, or accepted,
    parsed by the operator and given a documented Ready reason; the operator never fails."""
    monkeypatch.setenv("KUBECONFIG", str(bare.kubeconfig))
    # moto's server runs in this process: its tracebacks (an action moto does not implement) are not the
    # operator's, and would land in the runner's output
    monkeypatch.setattr(logging.getLogger("werkzeug"), "disabled", True)
    namespace, custom = bare_namespace, client.CustomObjectsApi(api)
    out = Outcome()
    numbers = iter(range(10_000))

    @settings(
        max_examples=OBJECTS,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.generate,),  # no shrinking: each example is a create request; every verdict is kept
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategies())
    def apply_all(case: Case) -> None:
        apply_case(custom, namespace, next(numbers), case, out)

    started = time.monotonic()
    with operator_in(namespace) as runner:
        apply_all()
        applied = time.monotonic() - started
        deadline = time.monotonic() + FIRST_CONDITION_S
        while True:
            ready = ready_conditions(custom, namespace)
            missing = sorted(k for k in out.accepted if ready.get(k) is None)
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        converged = time.monotonic() - started
    (tmp_path / "operator.log").write_text(runner.output)
    generated = next(numbers)
    reasons = Counter(f"{k[0]}:{(ready.get(k) or {}).get('reason')}" for k in out.accepted)
    report = (
        f"{generated} generated, {len(out.refused)} refused by schema/CEL, {len(out.accepted)} accepted "
        f"(applied in {applied:.1f} s, every Ready condition after {converged:.1f} s); "
        f"Ready reasons: {dict(sorted(reasons.items()))}; {out.named_broken} refusals name the field the "
        f"case broke; refused although the API model accepts: {len(out.stricter)}"
    )
    print(report)
    for what in out.stricter:
        print("  stricter:", what[:300])
    assert generated >= OBJECTS * 0.9, report
    if out.unclear:
        print("UNCLEAR\n" + "\n".join(u[:600] for u in out.unclear))
    if out.gaps:
        print("GAPS\n" + "\n".join(out.gaps))
    assert not missing, f"no Ready condition after {FIRST_CONDITION_S} s: " + "\n".join(
        f"{key}: {out.accepted[key].label}: {json.dumps(out.accepted[key].body['spec'])[:2000]}; log: "
        + " | ".join(line for line in runner.output.splitlines() if f"/{key[1]}]" in line)[-3000:]
        for key in missing
    )
    unexpected = {
        k: (ready[k] or {}).get("message")
        for k in out.accepted
        if (ready[k] or {}).get("reason") not in READY_REASONS[k[0]]
    }
    assert not unexpected, "\n".join(f"{k}: {v}" for k, v in unexpected.items())
    assert not out.unclear
    assert not out.gaps
    assert "Traceback" not in runner.output, runner.output[-5000:]
    assert "failed with an exception" not in runner.output
