"""JSON Schemas from Python type hints: what a tool's signature says becomes its inputSchema.

Supported: str, int, float, bool, None, list[T], dict[str, T], Optional[T] / T | None,
Literal[...], Enum subclasses, TypedDict and dataclasses (nested), and
Annotated[T, "description"]. Anything else is refused when the plugin is described, naming the
parameter, so a schema never silently says less than the code expects.
"""

import dataclasses
import enum
import inspect
import types
import typing


class SchemaError(TypeError):
    """A type hint this SDK cannot turn into a JSON Schema."""


def schema_of(hint, where):
    """The JSON Schema (a dict) of the type `hint`; `where` names it in errors."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema = schema_of(args[0], where)
        described = [a for a in args[1:] if isinstance(a, str)]
        if described:
            schema["description"] = described[0]
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
    first; parameters without a default are required; no other properties are allowed."""
    signature = inspect.signature(function)
    hints = typing.get_type_hints(function, include_extras=True)
    properties = {}
    required = []
    for i, (name, parameter) in enumerate(signature.parameters.items()):
        if i == 0:
            continue  # the Context
        if name not in hints:
            raise SchemaError(f"{function.__name__}: parameter `{name}` has no type hint")
        properties[name] = schema_of(hints[name], f"{function.__name__}({name})")
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def output_schema(function):
    """The outputSchema of `function` when it returns a TypedDict or a dataclass (structured
    output); None for text results (str) or no annotation."""
    hint = typing.get_type_hints(function, include_extras=True).get("return")
    if hint is not None and (typing.is_typeddict(hint) or dataclasses.is_dataclass(hint)):
        return schema_of(hint, f"{function.__name__} -> return")
    return None
