"""Check a value against a JSON Schema, natively, as the gateway does before a plugin runs and
after it answers: what ``testing.TestHost`` uses so a test fails where the gateway would
refuse. Covers the keywords this SDK writes and the common hand-written ones (type, enum,
const, properties, required, additionalProperties, items, prefixItems, the bounds on numbers,
strings, lists and objects, pattern, the common string formats, anyOf/oneOf/allOf/not, $ref
within the schema); a keyword or format it does not know is ignored, as JSON Schema says of
unknown keywords.
"""

import datetime
import ipaddress
import math
import re

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def problems(schema, value):
    """Each way ``value`` breaks ``schema``, as ``"at `/path`: what is wrong"`` (empty when
    it fits)."""
    found = []
    _check(schema, value, "", schema, found)
    return found


def _check(schema, value, at, root, found):
    if schema is True or schema == {}:
        return
    if schema is False:
        found.append(f"at `{at or '/'}`: no value is allowed here")
        return
    say = lambda what: found.append(f"at `{at or '/'}`: {what}")  # noqa: E731
    if "$ref" in schema:
        target = _resolve(root, schema["$ref"])
        if target is None:
            say(f"the schema's $ref {schema['$ref']!r} points nowhere in it")
        else:
            _check(target, value, at, root, found)
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_TYPES.get(k, lambda v: False)(value) for k in kinds):
            say(f"{_show(value)} is not of type {' or '.join(kinds)}")
            return
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        say(f"must be one of {', '.join(_show(e) for e in schema['enum'])} (got {_show(value)})")
    if "const" in schema and not _same(value, schema["const"]):
        say(f"must be {_show(schema['const'])} (got {_show(value)})")
    if _TYPES["number"](value):
        for key, bad, words in (("minimum", lambda v, l: v < l, "less than the minimum of"),
                                ("maximum", lambda v, l: v > l, "greater than the maximum of"),
                                ("exclusiveMinimum", lambda v, l: v <= l, "not greater than"),
                                ("exclusiveMaximum", lambda v, l: v >= l, "not less than")):
            if key in schema and bad(value, schema[key]):
                say(f"{_show(value)} is {words} {schema[key]}")
        m = schema.get("multipleOf")
        if m and not math.isclose(value / m, round(value / m)):
            say(f"{_show(value)} is not a multiple of {m}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            say(f"is shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            say(f"is longer than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            say(f"does not match the pattern {schema['pattern']!r}")
        check = _FORMATS.get(schema.get("format"))
        if check is not None and not check(value):
            say(f"{_show(value)} is not a valid {schema['format']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            say(f"has fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            say(f"has more than {schema['maxItems']} items")
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if sub is not None:
                _check(sub, item, f"{at}/{i}", root, found)
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                say(f"{name!r} is a required property")
        if "minProperties" in schema and len(value) < schema["minProperties"]:
            say(f"has fewer than {schema['minProperties']} properties")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            say(f"has more than {schema['maxProperties']} properties")
        extra = schema.get("additionalProperties", True)
        unexpected = []
        for name, item in value.items():
            if name in properties:
                _check(properties[name], item, f"{at}/{name}", root, found)
            elif extra is False:
                unexpected.append(name)
            elif isinstance(extra, dict):
                _check(extra, item, f"{at}/{name}", root, found)
        if unexpected:
            say(f"additional properties are not allowed ({', '.join(map(repr, unexpected))})")
    for key in ("anyOf", "oneOf"):
        if key in schema:
            passing = [s for s in schema[key] if not problems_under(s, value, root)]
            if not passing or (key == "oneOf" and len(passing) > 1):
                consts = [s.get("const") for s in schema[key] if "const" in s]
                if len(consts) == len(schema[key]):
                    say(f"must be one of {', '.join(_show(c) for c in consts)} (got {_show(value)})")
                else:
                    say(f"{_show(value)} matches {'none' if not passing else 'more than one'} of "
                        f"the {len(schema[key])} allowed forms ({key})")
    for sub in schema.get("allOf", []):
        _check(sub, value, at, root, found)
    if "not" in schema and not problems_under(schema["not"], value, root):
        say("matches a schema it must not")


def problems_under(schema, value, root):
    found = []
    _check(schema, value, "", root, found)
    return found


def _resolve(root, ref):
    if not ref.startswith("#"):
        return None
    node = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _same(a, b):
    """JSON equality (1 == 1.0, but True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b


def _show(value):
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:60] + "…"


def _date(v):
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v) is None:
        return False
    try:
        datetime.date.fromisoformat(v)
        return True
    except ValueError:
        return False


_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)")


def _ip(kind):
    def check(v):
        try:
            return isinstance(ipaddress.ip_address(v), kind)
        except ValueError:
            return False
    return check


def _hostname(v):
    labels = v[:-1].split(".") if v.endswith(".") else v.split(".")
    return 0 < len(v) <= 253 and all(
        re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?", label) for label in labels)


# The string formats the gateway enforces that tests most often meet (RFC 3339 dates and
# times, email, hostname, IP addresses, URI, UUID).
_FORMATS = {
    "date": _date,
    "time": lambda v: _TIME.fullmatch(v) is not None,
    "date-time": lambda v: len(v) > 11 and v[10] in "Tt" and _date(v[:10])
    and _TIME.fullmatch(v[11:]) is not None,
    "email": lambda v: re.fullmatch(r"[^@\s]+@[^@\s]+", v) is not None,
    "hostname": _hostname,
    "ipv4": lambda v: re.fullmatch(r"(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}", v) is not None
    and _ip(ipaddress.IPv4Address)(v),
    "ipv6": _ip(ipaddress.IPv6Address),
    "uri": lambda v: re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]*", v) is not None,
    "uuid": lambda v: re.fullmatch(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", v) is not None,
}
