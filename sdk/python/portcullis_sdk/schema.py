"""JSON Schemas from Python type hints: what a tool's signature says becomes its inputSchema.

Supported: str, int, float, bool, None, list[T], dict[str, T], Optional[T] / T | None,
Literal[...], Enum subclasses, TypedDict and dataclasses (nested), and Annotated[T, ...] whose
metadata is a description string, a :class:`Field` (pydantic's argument names:
``Annotated[int, Field(ge=1, le=100)]``), or constraint objects of the same names
(``annotated_types.Ge(1)``, a pydantic ``Field``'s constraints, read without importing
pydantic, which does not run inside a component). Anything else is refused when the plugin is
described, naming the parameter, so a schema never silently says less than the code expects.
"""

import dataclasses
import enum
import inspect
import types
import typing


class SchemaError(TypeError):
    """A type hint this SDK cannot turn into a JSON Schema."""


# Constraint names (pydantic's and annotated_types') and their JSON Schema keywords; the
# lengths depend on the type they constrain.
_NUMERIC = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum",
            "lt": "exclusiveMaximum", "multiple_of": "multipleOf"}
_LENGTHS = {"string": ("minLength", "maxLength"), "array": ("minItems", "maxItems"),
            "object": ("minProperties", "maxProperties")}
_DOCUMENTING = ("description", "title", "examples", "pattern", "format")


class Field:
    """Constraints and documentation for one value, by pydantic's names::

        limit: Annotated[int, Field(ge=1, le=100, description="How many")] = 20

    ``ge``/``gt``/``le``/``lt``/``multiple_of`` bound numbers; ``min_length``/``max_length``
    bound strings, lists and dicts; ``pattern`` (a regular expression the whole-or-part of a
    string must match, as JSON Schema's ``pattern``), ``format``, ``title``, ``description``
    and ``examples`` go into the schema as they are. The gateway enforces every one before the
    plugin runs."""

    def __init__(self, description=None, *, title=None, examples=None, ge=None, gt=None,
                 le=None, lt=None, multiple_of=None, min_length=None, max_length=None,
                 pattern=None, format=None):
        self.description, self.title, self.examples = description, title, examples
        self.ge, self.gt, self.le, self.lt, self.multiple_of = ge, gt, le, lt, multiple_of
        self.min_length, self.max_length = min_length, max_length
        self.pattern, self.format = pattern, format

    def __repr__(self):
        given = {k: v for k, v in vars(self).items() if v is not None}
        return f"Field({', '.join(f'{k}={v!r}' for k, v in given.items())})"


_CONSTRAINT_NAMES = set(_NUMERIC) | {"min_length", "max_length"} | set(_DOCUMENTING)


def _constrain(schema, meta, where):
    """Apply one piece of ``Annotated`` metadata to ``schema``; refuse what is not understood."""
    if isinstance(meta, str):
        schema.setdefault("description", meta)
        return
    # A pydantic FieldInfo: its constraints are in `metadata`, its documentation beside them.
    nested = getattr(meta, "metadata", None)
    if isinstance(nested, list) and hasattr(meta, "description"):
        for inner in nested:
            _constrain(schema, inner, where)
        for name in ("description", "title", "examples"):
            value = getattr(meta, name, None)
            if value is not None:
                schema[name] = value
        return
    given = {n: getattr(meta, n) for n in _CONSTRAINT_NAMES
             if getattr(meta, n, None) is not None}
    if not given and not isinstance(meta, Field):
        raise SchemaError(
            f"{where}: Annotated metadata {meta!r} is not understood; use a description string "
            "or portcullis_sdk.Field(ge=..., le=..., min_length=..., pattern=..., ...)")
    for name, value in given.items():
        if name in ("description", "title", "examples"):
            schema[name] = value
            continue
        # Optional[T]: the constraint is T's (null stays allowed).
        targets = [b for b in schema.get("anyOf", []) if b.get("type") != "null"] or [schema]
        for target in targets:
            _bound(target, name, value, where)


def _bound(schema, name, value, where):
    kind = schema.get("type")
    if name in _NUMERIC:
        if kind not in ("integer", "number"):
            raise SchemaError(f"{where}: `{name}` bounds numbers, not {kind or 'this type'}")
        schema[_NUMERIC[name]] = value
    elif name in ("min_length", "max_length"):
        keywords = _LENGTHS.get(kind)
        if keywords is None:
            raise SchemaError(f"{where}: `{name}` bounds strings, lists and dicts, not "
                              f"{kind or 'this type'}")
        schema[keywords[0] if name == "min_length" else keywords[1]] = value
    elif name == "pattern":
        if kind != "string":
            raise SchemaError(f"{where}: `pattern` applies to strings, not {kind or 'this type'}")
        schema["pattern"] = value.pattern if hasattr(value, "pattern") else str(value)
    else:
        schema[name] = value


def schema_of(hint, where):
    """The JSON Schema (a dict) of the type `hint`; `where` names it in errors."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema = schema_of(args[0], where)
        for meta in args[1:]:
            _constrain(schema, meta, where)
        return schema
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if hint is type(None) or hint is None:
        return {"type": "null"}
    if hint is typing.Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        inner = [schema_of(a, where) for a in present]
        if len(present) < len(args):
            inner.append({"type": "null"})
        return inner[0] if len(inner) == 1 else {"anyOf": inner}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (list, typing.List) or hint is list:
        items = schema_of(args[0], where) if args else {}
        return {"type": "array", "items": items}
    if origin in (dict, typing.Dict) or hint is dict:
        if args and args[0] is not str:
            raise SchemaError(f"{where}: only dict[str, T] has a JSON Schema")
        values = schema_of(args[1], where) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": values}
    if inspect.isclass(hint) and issubclass(hint, enum.Enum):
        return {"enum": [m.value for m in hint]}
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        required = [k for k in hints if k in hint.__required_keys__]
        return _object(hints, required, where)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint, include_extras=True)
        required = [
            f.name
            for f in dataclasses.fields(hint)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return _object({f.name: hints[f.name] for f in dataclasses.fields(hint)}, required, where)
    raise SchemaError(f"{where}: no JSON Schema for the type {hint!r}")


def _object(hints, required, where):
    return {
        "type": "object",
        "properties": {name: schema_of(h, f"{where}.{name}") for name, h in hints.items()},
        "required": list(required),
        "additionalProperties": False,
    }


def parameters_schema(function):
    """The inputSchema of `function(ctx, **arguments)`: one property per parameter after the
    first; parameters without a default are required, a default is the property's
    ``default``; no other properties are allowed."""
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function, include_extras=True)
    properties = {}
    required = []
    for i, (name, parameter) in enumerate(signature.parameters.items()):
        if i == 0:
            continue  # the Context
        if name not in hints:
            raise SchemaError(f"{function.__name__}: parameter `{name}` has no type hint")
        where = f"{function.__name__}({name})"
        properties[name] = schema_of(hints[name], where)
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        else:
            properties[name]["default"] = _json_default(parameter.default, where)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _json_default(value, where):
    """A parameter's default as JSON (an Enum member as its value)."""
    import json
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value)
    except TypeError:
        raise SchemaError(f"{where}: the default {value!r} is not JSON") from None
    return value


def output_schema(function):
    """``(schema, wrapped)``: the outputSchema of `function`'s return annotation and whether
    its value is wrapped as ``{"result": value}`` (MCP's structured content is an object, so a
    list, number or boolean travels wrapped, as the official Python SDK does). ``(None,
    False)`` for text results (str), content (Output, Image, ...) or no annotation."""
    hint = typing.get_type_hints(function, include_extras=True).get("return")
    where = f"{function.__name__} -> return"
    bare = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Annotated else hint
    if hint is None or bare is str or bare is type(None) or (
            inspect.isclass(bare) and getattr(bare, "_portcullis_content", False)):
        return None, False
    if typing.is_typeddict(bare) or dataclasses.is_dataclass(bare):
        return schema_of(hint, where), False
    if typing.get_origin(bare) in (dict, typing.Dict) or bare is dict:
        return schema_of(hint, where), False
    inner = schema_of(hint, where)
    return ({"type": "object", "properties": {"result": inner}, "required": ["result"],
             "additionalProperties": False}, True)
