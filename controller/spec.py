"""Spec files, the desired state: models, loading and merging, with FILE:LINE for every error.

Loading is fast on the happy path (libyaml's C parser, no position tracking). Only when a file has
a problem is it parsed again with node marks, to point at the line of the offending key or value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from .current import MAX_QUANTITY
from .errors import SpecError, SpecProblem
from .fastyaml import DECLINED, fast_load_many
from .i18n import _, ngettext
from .ids import CustomerId, Guid
from .perf import paused_gc, share_fields_sets
from .speccache import SpecCache
from .specfiles import read_spec_bytes, spec_file_paths
from .yamlload import Path_, cut, format_field, line_of, load_yaml, locate_lines, short, small


class _SpecModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Commerce = Literal["legacy", "nce", "azure_plan"]
Offboarding = Literal["end_at_term", "cancel_in_window"]


class SubscriptionSpec(_SpecModel):
    """A subscription of a customer that the specs manage."""

    id: Guid
    offer: StrictStr | None = Field(default=None, description="offer / product id (informational)")
    name: StrictStr | None = Field(default=None, description="friendly name")
    quantity: StrictInt | None = Field(
        default=None, ge=1, le=MAX_QUANTITY, description="reconciled when given"
    )
    commerce: Commerce | None = Field(
        default=None,
        description="legacy | nce (new commerce) | azure_plan; needed for status: cancelled "
        "and auto_renew (reconcile import writes it)",
    )
    status: Literal["active", "suspended", "cancelled"] = Field(
        default="active", description="cancelled: new commerce only, irreversible"
    )
    auto_renew: StrictBool | None = Field(
        default=None, description="new commerce only; reconciled when given"
    )

    @field_validator("status")
    @classmethod
    def _cancelled_is_new_commerce(cls, value: str, info: ValidationInfo) -> str:
        if value == "cancelled" and info.data.get("commerce", "nce") != "nce":
            raise ValueError(_new_commerce_only("status: cancelled", info.data.get("commerce")))
        return value

    @field_validator("auto_renew")
    @classmethod
    def _auto_renew_is_new_commerce(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value is not None and info.data.get("commerce", "nce") != "nce":
            raise ValueError(_new_commerce_only("auto_renew", info.data.get("commerce")))
        return value


def _new_commerce_only(setting: str, commerce: str | None) -> str:
    if commerce is None:
        return _(
            "{} is for new-commerce subscriptions only: add commerce: nce to say this is one"
        ).format(setting)
    return _(
        "{} is for new-commerce subscriptions only, and this one is commerce: {} "
        "(a legacy subscription is suspended instead)"
    ).format(setting, commerce)


class CustomerSpec(_SpecModel):
    """A customer with which a reseller relationship is desired."""

    id: Guid
    name: StrictStr = Field(min_length=1)
    domain: StrictStr | None = None
    protected: StrictBool | None = Field(
        default=None, description="true: no plan may ever remove this relationship"
    )
    offboarding: Offboarding | None = Field(
        default=None, description="overrides the partner's offboarding for this customer"
    )
    subscriptions: tuple[SubscriptionSpec, ...] = ()

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


class PartnerSpec(_SpecModel):
    """The partner the specs are written for, and how absences are treated."""

    id: Guid | None = None
    name: StrictStr | None = None
    prune: Literal["managed", "none"] = "managed"
    offboarding: Offboarding = Field(
        default="end_at_term",
        description="end_at_term: never cancel; turn auto-renewal off and wait for the term end. "
        "cancel_in_window: cancel new-commerce subscriptions still inside their window",
    )


class SpecFile(_SpecModel):
    """One spec file. Every file under the specs directory is one of these; they are merged."""

    model_config = ConfigDict(title="partner-reconciler spec file")

    partner: PartnerSpec | None = None
    customers: tuple[CustomerSpec, ...] = ()

    @field_validator("customers", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return () if value is None else value


@dataclass(frozen=True)
class Desired:
    """The merged desired state of every spec file."""

    partner: PartnerSpec = field(default_factory=PartnerSpec)
    customers: Mapping[CustomerId, CustomerSpec] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    # Each customer's spec file and index in its ``customers``, for problems found after loading
    # (a mistyped id); the line itself is looked up only then (``customer_line``).
    origins: Mapping[CustomerId, tuple[str, int]] = field(default_factory=dict, compare=False)


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of one spec file, for editors (yaml-language-server) and CI linters."""
    schema = SpecFile.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


# --- validation messages ------------------------------------------------------------------------

_KEYS_BY_PARENT: dict[str, type[BaseModel]] = {
    "subscriptions": SubscriptionSpec,
    "customers": CustomerSpec,
    "partner": PartnerSpec,
}


def _allowed_keys(path: Path_) -> str:
    model: type[BaseModel] = SpecFile
    for part in reversed(path):
        if isinstance(part, str) and part in _KEYS_BY_PARENT:
            model = _KEYS_BY_PARENT[part]
            break
    return ", ".join(model.model_fields)


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {short(value)}"


def _message(error: Mapping[str, Any]) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    loc = tuple(error["loc"])
    simple = {
        "missing": _("is required"),
        "string_type": _("must be a string, got {}").format(_describe(value)),
        "int_type": _("must be a whole number, got {}").format(_describe(value)),
        "bool_type": _("must be true or false, got {}").format(_describe(value)),
        "tuple_type": _("must be a list, got {}").format(_describe(value)),
        "model_type": _("must be a mapping, got {}").format(_describe(value)),
        "model_attributes_type": _("must be a mapping, got {}").format(_describe(value)),
        "string_too_short": _("must not be empty"),
    }
    if kind in simple:
        return simple[kind]
    if kind == "extra_forbidden":
        return _("unknown key; allowed keys are: {}").format(_allowed_keys(loc[:-1]))
    if kind == "greater_than_equal":
        return _("must be >= {}, got {}").format(ctx.get("ge"), short(value))
    if kind == "less_than_equal":
        return _("must be <= {:,}, got {}").format(ctx.get("le"), short(value))
    if kind == "literal_error":
        return _("must be one of {}, got {}").format(ctx.get("expected"), short(value))
    if kind == "string_pattern_mismatch" and loc and loc[-1] in ("id", "customer_id"):
        return _("must be a GUID like 7d3c1a52-0b0e-4c1e-9f5e-2a1c3b4d5e6f, got {}").format(
            short(value)
        )
    if kind == "value_error":
        return cut(str(ctx.get("error", error["msg"])), 200)
    return cut(str(error["msg"]), 200)


# --- loading --------------------------------------------------------------------------------


@dataclass
class _SourceFile:
    """A spec file being loaded; its line map is computed only if a problem needs it."""

    name: str
    text: str
    _lines: dict[Path_, int] | None = None

    def line(self, path: Path_) -> int:
        if self._lines is None:
            try:
                self._lines = locate_lines(self.text)
            except (yaml.YAMLError, ValueError, RecursionError):
                self._lines = {}
        return line_of(self._lines, path)

    def problem(self, path: Path_, message: str) -> SpecProblem:
        return SpecProblem(self.name, self.line(path), format_field(path), message)


def _parse(source: _SourceFile, read: Any = None) -> tuple[SpecFile, bytes | None]:
    """The spec of ``source`` and its document as JSON (what the parse cache keeps), or None if
    that cannot be had. ``read``: what ``fast_load_many`` made of it (a document and its JSON,
    or ``DECLINED``), or None when it has not been offered to it."""
    if read is None or read is DECLINED:
        raw_spec, serialized = load_yaml(source.text, source.name, fast=read is None), None
    else:
        raw_spec, serialized = read
    if raw_spec is None:
        raw_spec, serialized = {}, b"{}"
    if not isinstance(raw_spec, dict):
        message = _("must be a mapping with the keys partner and customers")
        raise SpecError([SpecProblem(source.name, 1, "", message)])
    try:
        spec = SpecFile.model_validate(raw_spec)
    except ValidationError as exc:
        raise SpecError(_validation_problems(source, raw_spec, exc)) from exc
    _check_subscription_ids(source, spec)
    if serialized is None:  # read by PyYAML: valid, it holds only what JSON holds (strict types)
        try:
            serialized = orjson.dumps(raw_spec)
        except TypeError:  # a lone surrogate (a YAML escape): not cached, read every time
            return spec, None
    return spec, serialized


# A file may hold hundreds of thousands of mistakes (a list of 400,000 numbers where customers go):
# building every message would take seconds and a gigabyte, and help nobody.
MAX_PROBLEMS = 50
_LISTS: dict[type[BaseModel], tuple[str, type[BaseModel]]] = {
    SpecFile: ("customers", CustomerSpec),
    CustomerSpec: ("subscriptions", SubscriptionSpec),
}


def _validation_problems(
    source: _SourceFile, raw_spec: dict[Any, Any], exc: ValidationError
) -> list[SpecProblem]:
    """One problem each for the first ``MAX_PROBLEMS`` validation errors, and a last line for
    the rest, if any."""
    total = exc.error_count()
    errors = exc.errors() if total <= MAX_PROBLEMS else _first_errors(SpecFile, raw_spec)
    problems = sorted(
        (source.problem(tuple(e["loc"]), _message(e)) for e in errors), key=lambda p: p.line
    )
    if total > len(problems):
        line = problems[-1].line if problems else 1
        more = total - len(problems)
        message = ngettext(
            "… and {:,} more problem in this file", "… and {:,} more problems in this file", more
        ).format(more)
        problems.append(SpecProblem(source.name, line, "", message))
    return problems


def _first_errors(
    model: type[BaseModel], raw: Any, loc: Path_ = (), limit: int = MAX_PROBLEMS
) -> list[dict[str, Any]]:
    """At most ``limit`` validation errors of ``raw``, found part by part (unknown keys, then
    the model without its list, then the list item by item), so that only those are built."""
    if not isinstance(raw, dict):
        return _errors_of(model, raw, loc, limit)
    fields = model.model_fields
    errors: list[dict[str, Any]] = [
        {"type": "extra_forbidden", "loc": (*loc, key), "msg": "unknown key", "input": None}
        for key in [k for k in raw if k not in fields][:limit]
    ]
    known = {k: v for k, v in raw.items() if k in fields}
    key, item_model = _LISTS.get(model, ("", model))
    items = known.get(key)
    if not key or not isinstance(items, list):
        return (errors + _errors_of(model, known, loc, limit))[:limit]
    errors += _errors_of(model, {**known, key: None}, loc, limit)
    for index, item in enumerate(items):
        if len(errors) >= limit:
            break
        errors += _first_errors(item_model, item, (*loc, key, index), limit - len(errors))
    return errors[:limit]


def _errors_of(model: type[BaseModel], raw: Any, loc: Path_, limit: int) -> list[dict[str, Any]]:
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        return [{**e, "loc": (*loc, *e["loc"])} for e in exc.errors()[:limit]]
    return []


def _check_subscription_ids(source: _SourceFile, spec: SpecFile) -> None:
    problems = []
    for c_index, customer in enumerate(spec.customers):
        subscriptions = customer.subscriptions
        if len(subscriptions) < 2 or len({s.id for s in subscriptions}) == len(subscriptions):
            continue  # the usual case, without a loop in Python
        seen: set[str] = set()
        for s_index, subscription in enumerate(customer.subscriptions):
            if subscription.id in seen:
                path = ("customers", c_index, "subscriptions", s_index, "id")
                message = _("duplicate subscription id {} in customer {}")
                problems.append(source.problem(path, message.format(subscription.id, customer.id)))
            seen.add(subscription.id)
    if problems:
        raise SpecError(problems)


def _decode(raw: bytes, name: str) -> _SourceFile:
    try:
        return _SourceFile(name, raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError([SpecProblem(name, 1, "", _("not UTF-8 text"))]) from exc


# Files are read in batches of about this many bytes, their texts checked together by the faster
# YAML reader (``fast_load_many``), and each batch parsed before the next is read: the texts and
# documents of all files at once would cost as much memory as the models.
BATCH_BYTES = 512 * 1024


@dataclass
class _Read:
    """A spec file read: its text and content hash, and its spec when the cache had it."""

    source: _SourceFile
    digest: str
    spec: SpecFile | None


def _parse_all(
    paths: list[str], cache: SpecCache
) -> Iterator[tuple[_SourceFile, SpecFile] | SpecError]:
    batch: list[_Read | SpecError] = []
    size = 0
    for path in paths:
        try:
            raw = read_spec_bytes(path)
            cache.count(len(raw))
            digest = hashlib.sha256(raw).hexdigest()
            source = _decode(raw, path)
        except SpecError as exc:
            batch.append(exc)
            continue
        spec = _cached(cache, source, digest)
        batch.append(_Read(source, digest, spec))
        size += 0 if spec is not None else len(raw)
        if size >= BATCH_BYTES:
            yield from _parsed(batch, cache)
            batch, size = [], 0
    yield from _parsed(batch, cache)


def _parsed(
    batch: list[_Read | SpecError], cache: SpecCache
) -> Iterator[tuple[_SourceFile, SpecFile] | SpecError]:
    """The files of ``batch`` in order, those not cached parsed (and cached)."""
    texts = [
        r.source.text
        for r in batch
        if isinstance(r, _Read) and r.spec is None and small(r.source.text)
    ]
    fast = iter(fast_load_many(texts))
    for read in batch:
        if isinstance(read, SpecError):
            yield read
            continue
        source, spec = read.source, read.spec
        if spec is not None:
            yield source, spec
            continue
        try:
            spec, serialized = _parse(source, next(fast) if small(source.text) else None)
        except SpecError as exc:
            yield exc
            continue
        if serialized is not None:
            cache.put(source.name, read.digest, serialized)
        yield source, spec


def _cached(cache: SpecCache, source: _SourceFile, digest: str) -> SpecFile | None:
    """The cached spec of ``source`` after exactly the checks a parsed one passes, or None
    (then the file is parsed): a cached entry is never trusted over them."""
    document = cache.get(source.name, digest)
    if document is None:
        return None
    try:
        # From the document as Python objects, as a parsed one is: validating JSON costs half
        # as much again, as pydantic builds the Python objects for the "before" validators.
        spec = SpecFile.model_validate(orjson.loads(document))
        _check_subscription_ids(source, spec)
    except (ValidationError, SpecError, orjson.JSONDecodeError):
        cache.drop(source.name)
        return None
    return spec


def load_specs(specs_dir: Path, *, cache: Path | None = None) -> Desired:
    """Load, validate and merge every spec file under ``specs_dir``; raise SpecError listing all
    problems (each ``FILE:LINE: field: message``) if any file is invalid. With ``cache`` (see
    ``speccache``), files unchanged since a previous load are taken from it instead of being
    parsed again."""
    spec_cache = SpecCache(cache, specs_dir)
    with paused_gc():
        desired = _merge(_parse_all(spec_file_paths(specs_dir), spec_cache))
    spec_cache.save()
    return desired


def _merge(parsed_files: Iterator[tuple[_SourceFile, SpecFile] | SpecError]) -> Desired:
    problems: list[SpecProblem] = []
    partner: tuple[_SourceFile, PartnerSpec] | None = None
    customers: dict[CustomerId, CustomerSpec] = {}
    # Each customer's file name and index, not the file: the text of every file held to the end
    # would cost as much memory as the specs' YAML (a duplicate's line is read again instead).
    origins: dict[CustomerId, tuple[str, int]] = {}
    files: list[str] = []
    for parsed in parsed_files:
        if isinstance(parsed, SpecError):
            problems.extend(parsed.problems)
            continue
        source, spec = parsed
        files.append(source.name)
        if spec.partner is not None:
            if partner is not None:
                first = partner[0]
                where = f"{first.name}:{first.line(('partner',))}"
                message = _("partner is defined more than once; first in {}").format(where)
                problems.append(source.problem(("partner",), message))
            else:
                partner = (source, spec.partner)
        for index, customer in enumerate(spec.customers):
            customer_id = CustomerId(customer.id)
            if customer_id in origins:
                first_file, first_index = origins[customer_id]
                where = f"{first_file}:{customer_line(first_file, first_index)}"
                message = _("duplicate customer id {}, also in {}").format(customer_id, where)
                problems.append(source.problem(("customers", index, "id"), message))
                continue
            origins[customer_id] = (source.name, index)
            customers[customer_id] = customer
    if problems:
        raise SpecError(problems)
    share_fields_sets(customers.values())
    share_fields_sets(s for c in customers.values() for s in c.subscriptions)
    return Desired(
        partner=partner[1] if partner else PartnerSpec(),
        customers=customers,
        files=tuple(files),
        origins=origins,
    )


def customer_line(file: str, index: int) -> int:
    """The line of ``customers[index].id`` in ``file``, read again: only an error needs it."""
    try:
        return _decode(read_spec_bytes(Path(file)), file).line(("customers", index, "id"))
    except SpecError:
        return 1


def dump_schema() -> str:
    """The spec JSON Schema as indented text."""
    return json.dumps(spec_json_schema(), indent=2)
