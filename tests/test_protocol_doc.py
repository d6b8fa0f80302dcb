"""docs/protocol.md is the contract of TCP protocol v1; these tests keep it true to the code.

Clients are written from the document, so a code, an operation, a field, a limit or a transition
that exists in one and not in the other is a bug in one of them. The tests read the document's
tables and examples and compare them with the registries the server itself runs on:
``railtix.core.errors.CODES``, the request Structs of ``railtix.wire.messages`` (through
``msgspec.inspect``, so bounds and required-ness come from the same ``Meta`` the decoder
enforces), ``railtix.limits``, and the transition table and refund tiers of
``railtix.core.orders``. The JSON Schema in docs/schema/requests.json is generated from the
request Structs; regenerate it with ``python tests/test_protocol_doc.py --write-schema``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, get_args

import msgspec
import msgspec.inspect as mi
import pytest

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a script: make the package importable from the checkout
    sys.path.insert(0, str(ROOT))

from railtix import limits  # noqa: E402
from railtix.core.errors import CODES  # noqa: E402
from railtix.core.orders import REFUND_TIERS, REFUSED, TRANSITIONS  # noqa: E402
from railtix.wire.errors import refusal_for  # noqa: E402
from railtix.wire.messages import OPS, Request  # noqa: E402

DOC = ROOT / "docs" / "protocol.md"
SCHEMA = ROOT / "docs" / "schema" / "requests.json"

#: Fields every request may carry; documented once in the envelope section, not per operation.
ENVELOPE_FIELDS = frozenset({"id"})

_HEADING = re.compile(r"^(#{1,6}) +(.+?) *$", re.MULTILINE)
_OP_HEADING = re.compile(r"^`([a-z_]+)`$")
_BACKTICKED = re.compile(r"^`([^`]+)`$")
_ERROR_CODE_IN_REPLY = re.compile(r'"error":\s*\{\s*"code":\s*"([^"]*)"')


# --- reading the document ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def sections(text: str, level: int) -> dict[str, str]:
    """Heading text -> body, for headings of ``level``; a body runs to the next heading of that
    level or higher."""
    marks = [(m.start(), m.end(), len(m.group(1)), m.group(2)) for m in _HEADING.finditer(text)]
    out: dict[str, str] = {}
    for i, (_, end, lvl, title) in enumerate(marks):
        if lvl != level:
            continue
        stop = next((s for s, _, lv, _ in marks[i + 1 :] if lv <= level), len(text))
        assert title not in out, f"two sections are headed {title!r}"
        out[title] = text[end:stop]
    return out


def section(text: str, level: int, prefix: str) -> str:
    found = [body for title, body in sections(text, level).items() if title.startswith(prefix)]
    assert len(found) == 1, f"expected one section headed {prefix!r}…, found {len(found)}"
    return found[0]


def tables(body: str) -> list[list[list[str]]]:
    """Every Markdown table in ``body``: rows of stripped cells, header first, rule dropped."""
    out: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*body.splitlines(), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                current.append(cells)
        elif current:
            out.append(current)
            current = []
    return out


def table(body: str, first_header: str) -> list[list[str]]:
    """The body rows of the one table whose first header cell is ``first_header``."""
    found = [t for t in tables(body) if t[0][0] == first_header]
    assert len(found) == 1, f"expected one table headed {first_header!r}, found {len(found)}"
    return found[0][1:]


def unquote(cell: str) -> str:
    m = _BACKTICKED.match(cell)
    assert m, f"expected a `name` in backticks, got {cell!r}"
    return m.group(1)


def op_sections(text: str) -> dict[str, str]:
    out = {}
    for title, body in sections(text, 3).items():
        m = _OP_HEADING.match(title)
        if m:
            out[m.group(1)] = body
    return out


def example_lines(text: str, arrow: str) -> list[str]:
    return [line[len(arrow) :].strip() for line in text.splitlines() if line.startswith(arrow)]


# --- reading the code ----------------------------------------------------------------------------
def request_types() -> dict[str, mi.StructType]:
    """op -> the Struct that decodes it, from the Request union itself."""
    out = {}
    for cls in get_args(Request):
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        out[str(info.tag)] = info
    return out


def documented_fields(struct: mi.StructType, prefix: str = "") -> list[tuple[str, mi.Field]]:
    """(path, field) for every field a client sends: nested objects in lists as ``a[].b``."""
    out: list[tuple[str, mi.Field]] = []
    for f in struct.fields:
        if not prefix and f.encode_name in ENVELOPE_FIELDS:
            continue
        path = prefix + f.encode_name
        out.append((path, f))
        t = f.type
        if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StructType):
            out.extend(documented_fields(t.item_type, path + "[]."))
    return out


def without_none(t: mi.Type) -> tuple[mi.Type, bool]:
    """The type without its ``None`` alternative, and whether it had one (and without the
    schema-only metadata a type may carry, such as the id number's pattern)."""
    if isinstance(t, mi.Metadata):
        t = t.type
    if isinstance(t, mi.UnionType):
        rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
        if len(rest) == 1:
            return rest[0], len(rest) != len(t.types)
    return t, False


def json_kind(t: mi.Type) -> str:
    if isinstance(t, mi.StrType):
        return "string"
    if isinstance(t, mi.IntType):
        return "integer"
    if isinstance(t, mi.ListType):
        return "array"
    if isinstance(t, mi.LiteralType) and all(isinstance(v, str) for v in t.values):
        return "string"
    raise AssertionError(f"no JSON kind known for {t!r}; teach this test")


def bounds_in(t: mi.Type) -> list[str]:
    """What the Bounds cell must mention: every numeric bound and every allowed literal."""
    words: list[str] = []
    if isinstance(t, mi.StrType | mi.ListType):
        words += [str(n) for n in (t.min_length, t.max_length) if n is not None]
        if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.LiteralType):
            words += [f"`{v}`" for v in t.item_type.values]
    elif isinstance(t, mi.IntType):
        words += [str(n) for n in (t.ge, t.gt, t.le, t.lt) if n is not None]
    elif isinstance(t, mi.LiteralType):
        words += [f"`{v}`" for v in t.values]
    return words


def generated_schema() -> bytes:
    schema = msgspec.json.schema(Request)
    return msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n"


# --- error codes ---------------------------------------------------------------------------------
def test_error_table_lists_exactly_the_registered_codes(doc: str) -> None:
    rows = table(section(doc, 2, "8. Error codes"), "Code")
    listed = [unquote(r[0]) for r in rows]
    assert len(listed) == len(set(listed)), "a code is listed twice"
    assert set(listed) - set(CODES) == set(), "the doc lists codes the server does not have"
    assert set(CODES) - set(listed) == set(), "codes the server answers are missing from the doc"


def test_error_table_says_which_codes_are_retryable(doc: str) -> None:
    rows = table(section(doc, 2, "8. Error codes"), "Code")
    for row in rows:
        code, retryable = unquote(row[0]), row[1]
        assert retryable in ("yes", "no"), row
        assert (retryable == "yes") == CODES[code][0], f"{code}: retryable is {CODES[code][0]} in CODES"
        assert row[2] and row[3], f"{code}: meaning and ops must be filled in"


def test_the_client_side_codes_are_the_ones_the_client_and_bench_use(doc: str) -> None:
    from pathlib import Path

    rows = table(section(doc, 2, "8. Error codes"), "Client-side code")
    listed = {unquote(r[0]) for r in rows}
    root = Path(__file__).resolve().parent.parent / "railtix"
    sources = "".join(p.read_text() for d in ("client", "bench") for p in (root / d).glob("*.py"))
    used = set(re.findall(r'(?:RailtixError\(|super\(\).__init__\(|error\(kind, )"([a-z_]+)"', sources))
    used -= set(CODES) - listed  # a server code the client also raises itself (unauthorized)
    assert used == listed, f"used but not listed: {used - listed}; listed but not used: {listed - used}"


def test_every_code_the_doc_mentions_exists(doc: str) -> None:
    """Backticked words that look like codes in error contexts, and codes in example replies."""
    in_examples = set(_ERROR_CODE_IN_REPLY.findall(doc)) - {"<code>"}
    assert in_examples, "no example error replies found; has the reply format changed?"
    assert in_examples - set(CODES) == set(), "an example reply carries an unknown code"
    for title, body in op_sections(doc).items():
        for line in body.splitlines():
            if line.startswith("Errors"):
                para = body[body.index(line) :].split("\n\n", 1)[0]
                named = set(re.findall(r"`([a-z_]+)`", para))
                assert named - set(CODES) == set(), f"{title}: its error list names unknown codes"
    keys = section(doc, 2, "5. Idempotency keys")
    remembered = _codes_in_bullet(keys, "**Refusals are remembered")
    forgotten = _codes_in_bullet(keys, "**Errors found before")
    assert remembered and forgotten
    assert (remembered | forgotten) - set(CODES) == set(), "section 5 names unknown codes"
    assert remembered & forgotten == set(), "a code cannot be both remembered and not"


def _codes_in_bullet(body: str, start: str) -> set[str]:
    """Backticked codes in the bullet of ``body`` that begins with ``- {start}``."""
    at = body.index("- " + start)
    end = body.find("\n- ", at + 2)
    return set(re.findall(r"`([a-z_]+)`", body[at : end if end >= 0 else len(body)]))


# --- operations and fields -----------------------------------------------------------------------
def test_ops_registry_matches_the_request_union() -> None:
    assert set(OPS) == set(request_types()), "OPS and the Request union disagree"
    assert len(OPS) == len(set(OPS))


def test_every_op_has_a_section(doc: str) -> None:
    documented = op_sections(doc)
    assert set(OPS) - set(documented) == set(), "operations without a section"
    assert set(documented) - set(OPS) == set(), "sections for operations the server does not answer"


@pytest.mark.parametrize("op", OPS)
def test_every_request_field_is_documented_in_its_section(doc: str, op: str) -> None:
    body = op_sections(doc)[op]
    fields = documented_fields(request_types()[op])
    if not fields:
        assert "Request fields: none." in body, f"{op}: say that it has no fields"
        return
    rows = {unquote(r[0]): r for r in table(body, "Field")}
    assert set(rows) == {p for p, _ in fields}, f"{op}: field table differs from the Struct"
    for path, f in fields:
        _, kind_cell, required_cell, bounds_cell, meaning = rows[path]
        t, nullable = without_none(f.type)
        assert required_cell == ("yes" if f.required else "no"), f"{op}.{path}: required?"
        assert json_kind(t) in kind_cell, f"{op}.{path}: type should be {json_kind(t)}"
        assert ("null" in kind_cell) == nullable, f"{op}.{path}: null allowed is {nullable}"
        for word in bounds_in(t):
            assert word in bounds_cell, f"{op}.{path}: bounds should mention {word}"
        assert meaning, f"{op}.{path}: say what it means"


def test_examples_are_requests_of_their_section(doc: str) -> None:
    decoder = msgspec.json.Decoder(Request)
    for op, body in op_sections(doc).items():
        sent = example_lines(body, "→")
        assert sent, f"{op}: give an example"
        got = [decoder.decode(line.encode()) for line in sent]
        assert {type(r).__struct_config__.tag for r in got} == {op}, f"{op}: examples of another op"
        assert len(example_lines(body, "←")) == len(sent), f"{op}: one reply per request"


def test_example_pairs_agree_with_the_decoder(doc: str) -> None:
    """A request shown with a decoding error must fail to decode with that very code; a request
    shown with any other reply must decode. So the examples of bad lines stay true too."""
    decoder = msgspec.json.Decoder(Request)
    lines = [ln for ln in doc.splitlines() if ln.startswith(("→", "←"))]
    pairs = [(a[1:].strip(), b[1:].strip()) for a, b in zip(lines, lines[1:], strict=False)
             if a.startswith("→") and b.startswith("←")]
    assert len(pairs) == len(example_lines(doc, "→")), "every example request is followed by its reply"
    decode_codes = {"malformed_json", "unknown_op", "missing_field", "invalid_field"}
    for request, reply in pairs:
        if "…" in reply:
            decoder.decode(request.encode())
            continue
        answer = msgspec.json.decode(reply.encode())
        try:
            decoder.decode(request.encode())
        except msgspec.DecodeError as e:
            assert answer["ok"] is False and answer["error"]["code"] == refusal_for(e).code, request
            continue
        assert answer["ok"] or answer["error"]["code"] not in decode_codes, request
        req_id = msgspec.json.decode(request.encode()).get("id")
        assert answer["id"] == req_id, f"the reply must echo the id: {request}"


def test_example_replies_are_replies(doc: str) -> None:
    for line in example_lines(doc, "←"):
        if "…" in line:
            continue  # shortened on purpose, and said so
        reply = msgspec.json.decode(line.encode())
        assert isinstance(reply, dict) and list(reply)[:2] == ["id", "ok"], line
        if reply["ok"] is False:
            assert set(reply["error"]) == {"code", "message", "retry"}, line
            assert reply["error"]["retry"] == CODES[reply["error"]["code"]][0], line


# --- lifecycle, refunds, limits ------------------------------------------------------------------
def test_transition_table_matches_the_code(doc: str) -> None:
    body = section(doc, 3, "6.2 Lifecycle")
    rows = table(body, "From")
    documented = {(unquote(r[0]), unquote(r[1])): unquote(r[2]) for r in rows}
    assert documented == {(s.value, e): t.value for (s, e), t in TRANSITIONS.items()}
    refused = {unquote(r[0].split()[0]): unquote(r[1]) for r in table(body, "Refused event")}
    assert refused == {e: REFUSED[e] for e in ("pay", "cancel", "refund")}


def test_refund_tiers_match_the_code(doc: str) -> None:
    rows = table(section(doc, 3, "6.4 Refunds"), "Time left before departure")
    assert [int(r[1].rstrip(" %")) for r in rows] == [p for _, p in REFUND_TIERS]


def test_limits_table_matches_limits_py(doc: str) -> None:
    rows = table(section(doc, 2, "9. Limits"), "Limit")
    assert rows, "the limits table is empty"
    for row in rows:
        name = unquote(row[0])
        assert hasattr(limits, name), f"{name} is not in railtix/limits.py"
        value = getattr(limits, name)
        assert float(row[1]) == value and ("." in row[1]) == isinstance(value, float), (
            f"{name} is {value!r} in railtix/limits.py, {row[1]} in the doc"
        )
        assert row[2], f"{name}: say why"


def test_planned_ops_are_not_documented_as_available(doc: str) -> None:
    for op in ("change", "waitlist"):
        assert op not in OPS or op in op_sections(doc)
        if op not in OPS:
            assert op not in op_sections(doc), f"{op} is not in v1; it must not have a section"
            assert f"`{op}`" in section(doc, 2, "10. Not yet in version 1")


# --- the generated schema ------------------------------------------------------------------------
def test_request_schema_is_up_to_date() -> None:
    assert SCHEMA.exists(), "run: python tests/test_protocol_doc.py --write-schema"
    assert SCHEMA.read_bytes() == generated_schema(), (
        "docs/schema/requests.json is stale; run: python tests/test_protocol_doc.py --write-schema"
    )


def main(argv: list[str]) -> Any:
    if argv != ["--write-schema"]:
        return "usage: python tests/test_protocol_doc.py --write-schema"
    SCHEMA.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA.write_bytes(generated_schema())
    print(f"wrote {SCHEMA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
