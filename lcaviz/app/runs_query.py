"""Queries of the runs table: ``optimizer=sgd lr<0.05 momentum>0 mnist`` (pure: no Dash).

A query is whitespace-separated terms, all of which must hold:

* ``field<op>value`` with op one of ``=`` (``==``), ``!=``, ``<``, ``<=``, ``>``, ``>=``,
  ``~`` (contains). ``field`` is a column of the table (``lr``, ``status`` ...) or a config
  field, nested ones with dots (``precision_flags.matmul``, ``betas.0``). Numbers compare as
  numbers (``=`` to 1e-9 relative), ``true`` / ``false`` as booleans, anything else as
  case-insensitive text; ``<`` and friends need a number. A run that lacks the field does not
  match (``!=`` included: "is something other than").
* a plain word: the row's text contains it (case-insensitive).

Spaces around an operator are allowed (``lr < 0.05``); quote values with spaces
(``note="planned 1,000"``). A malformed query raises :class:`QueryError` whose message says
which term and how to write it.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OPERATORS = ("<=", ">=", "!=", "==", "=", "<", ">", "~")
ORDER_OPS = ("<", "<=", ">", ">=")
_OP = "|".join(re.escape(o) for o in OPERATORS)
_TERM = re.compile(rf"^([A-Za-z_][\w.\-]*)({_OP})(.*)$", re.S)
_SPACED = re.compile(rf"\s*({_OP})\s*")
HOW = "write field<op>value, e.g. lr<0.05 or optimizer=sgd (operators: = != < <= > >= ~)"
MISSING = object()


class QueryError(ValueError):
    """A query that cannot be read; the message names the term."""


@dataclass(frozen=True)
class Term:
    """One ``field<op>value`` condition."""

    field: str
    op: str
    value: str

    @property
    def number(self) -> float | None:
        return as_number(self.value)

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value}"


def as_number(v: Any) -> float | None:
    """``v`` as a finite float (numbers and numeric text), else None; booleans are not."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def parse_query(text: str | None) -> tuple[list[Term], list[str]]:
    """``(terms, plain words)`` of a query.

    Raises:
        QueryError: an unclosed quote, a term without a field or value, a doubled operator,
            or an ordering operator with a value that is not a number.
    """
    text = (text or "").strip()
    if not text:
        return [], []
    try:
        tokens = shlex.split(_SPACED.sub(r"\1", text))
    except ValueError as e:
        raise QueryError(f"cannot read the query: {e} (close the quote)") from None
    terms, words = [], []
    for tok in tokens:
        if not re.search(_OP, tok):
            words.append(tok.lower())
            continue
        m = _TERM.match(tok)
        if m is None:
            raise QueryError(f"cannot read “{tok}”: {HOW}")
        field, op, value = m.groups()
        if not value:
            raise QueryError(f"“{tok}” has no value: {HOW}")
        if re.match(_OP, value):
            raise QueryError(f"“{tok}” has two operators: {HOW}")
        if op in ORDER_OPS and as_number(value) is None:
            raise QueryError(f"“{tok}”: {op} needs a number, not “{value}”")
        terms.append(Term(field, "=" if op == "==" else op, value))
    return terms, words


def lookup(record: Mapping[str, Any], field: str) -> Any:
    """``record[field]``, else the dotted path into nested dicts / lists; MISSING if absent."""
    if field in record:
        return record[field]
    node: Any = record
    for part in field.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_text(x) for x in v)
    return "" if v is None else str(v).lower()


def term_matches(term: Term, record: Mapping[str, Any]) -> bool:
    """Whether ``record`` (a row, or a row's config) satisfies ``term``."""
    have = lookup(record, term.field)
    if have is MISSING or have is None:
        return False
    want, got = term.number, as_number(have)
    if term.op in ORDER_OPS:
        if got is None:
            return False
        return {"<": got < want, "<=": got <= want, ">": got > want, ">=": got >= want}[term.op]
    if term.op == "~":
        return term.value.lower() in _text(have)
    if want is not None and got is not None:
        same = math.isclose(want, got, rel_tol=1e-9, abs_tol=0.0) or want == got
    else:
        same = _text(have) == term.value.lower().replace(", ", ",")
    return same if term.op == "=" else not same


def record_matches(terms: Iterable[Term], words: Iterable[str], row: Mapping[str, Any],
                   config: Mapping[str, Any], text: str) -> bool:
    """Every term holds on the row's columns or, for fields not in the row, its config; every
    word is in ``text``."""
    for t in terms:
        source = row if lookup(row, t.field) is not MISSING else config
        if not term_matches(t, source):
            return False
    return all(w in text for w in words)


def unknown_fields(terms: Iterable[Term], records: Iterable[tuple[Mapping, Mapping]]
                   ) -> list[str]:
    """Fields of ``terms`` that no (row, config) pair has: most likely typos."""
    records = list(records)
    return [t.field for t in terms
            if all(lookup(r, t.field) is MISSING and lookup(c, t.field) is MISSING
                   for r, c in records)]


def config_fields(configs: Iterable[Mapping[str, Any]], prefix: str = "") -> list[str]:
    """Sorted dotted names of every scalar field of the configs (for the column chooser)."""
    out: set[str] = set()
    for cfg in configs:
        for k, v in cfg.items():
            if isinstance(v, Mapping):
                out.update(config_fields([v], f"{prefix}{k}."))
            else:
                out.add(f"{prefix}{k}")
    return sorted(out)


def cell(value: Any) -> str | float | int | bool | None:
    """A config value as a table cell (lists and dicts as text)."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, (bool, int, float, str)):
        return value if not isinstance(value, float) or math.isfinite(value) else str(value)
    return _text(value) if isinstance(value, (list, tuple)) else str(value)
