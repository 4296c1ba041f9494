// Schemas for tool arguments and results: each builder returns a `Schema` that is both its
// JSON Schema (2020-12, `toJSON()`) and a checker of values, so a tool's declared schema
// and the check its arguments pass are one definition. The gateway checks arguments against
// the same JSON Schema before the plugin runs; the SDK's own check makes native tests (and
// hand-written schemas) agree with it.

/** One schema: its JSON Schema and a value check. */
export class Schema {
  constructor(json, check, optional = false) {
    this.json = json;
    this.checkValue = check;
    this.optional = optional;
  }

  /** The JSON Schema object. */
  toJSON() {
    return this.json;
  }

  /** Problems with `value`, each as "path: what is wrong" (empty when it fits). */
  check(value, path = "$") {
    const problems = [];
    this.checkValue(value, path, problems);
    return problems;
  }

  /** The same schema with a description. */
  describe(description) {
    return new Schema({ ...this.json, description }, this.checkValue, this.optional);
  }
}

const typeName = (v) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

function options(opts) {
  return typeof opts === "string" ? { description: opts } : opts || {};
}

function base(type, opts, extra, check) {
  const { description, title, default: dflt, ...rest } = options(opts);
  const json = { type, ...extra(rest) };
  if (title !== undefined) json.title = title;
  if (description !== undefined) json.description = description;
  if (dflt !== undefined) json.default = dflt;
  return new Schema(json, check);
}

function limits(rest, names) {
  const out = {};
  for (const [ours, theirs] of names) {
    if (rest[ours] !== undefined) out[theirs] = rest[ours];
  }
  return out;
}

/** A string: `s.string("what it is")` or `s.string({ description, minLength, maxLength, pattern, format })`. */
export function string(opts) {
  const o = options(opts);
  const pattern = o.pattern === undefined ? null : new RegExp(o.pattern, "u");
  return base(
    "string",
    o,
    (rest) =>
      limits(rest, [
        ["minLength", "minLength"],
        ["maxLength", "maxLength"],
        ["pattern", "pattern"],
        ["format", "format"],
      ]),
    (v, path, problems) => {
      if (typeof v !== "string") return problems.push(`${path}: expected a string, got ${typeName(v)}`);
      const length = [...v].length;
      if (o.minLength !== undefined && length < o.minLength)
        problems.push(`${path}: shorter than ${o.minLength} characters`);
      if (o.maxLength !== undefined && length > o.maxLength)
        problems.push(`${path}: longer than ${o.maxLength} characters`);
      if (pattern && !pattern.test(v)) problems.push(`${path}: does not match ${o.pattern}`);
      const format = FORMATS[o.format];
      if (format && !format(v)) problems.push(`${path}: ${JSON.stringify(v)} is not a valid ${o.format}`);
    },
  );
}

const TIME = /^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/;
const IPV4 = /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/;

function date(v) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const days = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  return mo >= 1 && mo <= 12 && d >= 1 && d <= days;
}

const ipv4 = (v) => IPV4.test(v) && v.split(".").every((o) => Number(o) <= 255);

function ipv6(v) {
  const halves = v.split("::");
  if (halves.length > 2) return false;
  const groups = (h) => (h === "" ? [] : h.split(":"));
  const parts = halves.flatMap(groups);
  let count = parts.length;
  if (parts.length && ipv4(parts[parts.length - 1])) count += 1; // an embedded IPv4 is two groups
  else if (parts.length && parts[parts.length - 1].includes(".")) return false;
  const hex = parts.filter((p, i) => !(i === parts.length - 1 && p.includes(".")));
  if (!hex.every((p) => /^[0-9A-Fa-f]{1,4}$/.test(p))) return false;
  return halves.length === 2 ? count < 8 : count === 8;
}

/** The string formats the gateway enforces that tests most often meet (RFC 3339 dates and
 * times, email, hostname, IP addresses, URI, UUID); another format is not checked here. */
const FORMATS = {
  date,
  time: (v) => TIME.test(v),
  "date-time": (v) => v.length > 11 && "Tt".includes(v[10]) && date(v.slice(0, 10)) && TIME.test(v.slice(11)),
  email: (v) => /^[^@\s]+@[^@\s]+$/.test(v),
  hostname: (v) =>
    v.length > 0 &&
    v.length <= 253 &&
    v.replace(/\.$/, "").split(".").every((l) => /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)),
  ipv4,
  ipv6,
  uri: (v) => /^[A-Za-z][A-Za-z0-9+.-]*:\S*$/.test(v),
  uuid: (v) => /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(v),
};

function numeric(type, opts) {
  const o = options(opts);
  return base(
    type,
    o,
    (rest) =>
      limits(rest, [
        ["minimum", "minimum"],
        ["maximum", "maximum"],
      ]),
    (v, path, problems) => {
      if (typeof v !== "number" || !Number.isFinite(v) || (type === "integer" && !Number.isInteger(v)))
        return problems.push(`${path}: expected ${type === "integer" ? "an integer" : "a number"}, got ${typeName(v)}`);
      if (o.minimum !== undefined && v < o.minimum) problems.push(`${path}: less than ${o.minimum}`);
      if (o.maximum !== undefined && v > o.maximum) problems.push(`${path}: more than ${o.maximum}`);
    },
  );
}

/** A number (`{ minimum, maximum }`). */
export const number = (opts) => numeric("number", opts);
/** An integer (`{ minimum, maximum }`). */
export const integer = (opts) => numeric("integer", opts);

/** A boolean. */
export function boolean(opts) {
  return base("boolean", opts, () => ({}), (v, path, problems) => {
    if (typeof v !== "boolean") problems.push(`${path}: expected a boolean, got ${typeName(v)}`);
  });
}

/** One of the given strings. */
export function oneOf(values, opts) {
  const allowed = new Set(values);
  return base("string", opts, () => ({ enum: [...values] }), (v, path, problems) => {
    if (!allowed.has(v)) problems.push(`${path}: expected one of ${values.map((x) => JSON.stringify(x)).join(", ")}`);
  });
}

/** An array of `items` (`{ minItems, maxItems }`). */
export function array(items, opts) {
  const o = options(opts);
  return base(
    "array",
    o,
    (rest) => ({
      items: items.toJSON(),
      ...limits(rest, [
        ["minItems", "minItems"],
        ["maxItems", "maxItems"],
      ]),
    }),
    (v, path, problems) => {
      if (!Array.isArray(v)) return problems.push(`${path}: expected an array, got ${typeName(v)}`);
      if (o.minItems !== undefined && v.length < o.minItems) problems.push(`${path}: fewer than ${o.minItems} items`);
      if (o.maxItems !== undefined && v.length > o.maxItems) problems.push(`${path}: more than ${o.maxItems} items`);
      v.forEach((item, i) => items.checkValue(item, `${path}[${i}]`, problems));
    },
  );
}

/**
 * An object with these properties; a property is required unless wrapped in `optional`.
 * Other properties are refused (`additionalProperties: false`) unless `{ open: true }`.
 */
export function object(properties, opts) {
  const o = options(opts);
  const required = Object.keys(properties).filter((k) => !properties[k].optional);
  return base(
    "object",
    o,
    () => {
      const json = { properties: Object.fromEntries(Object.entries(properties).map(([k, v]) => [k, v.toJSON()])) };
      if (required.length) json.required = required;
      if (!o.open) json.additionalProperties = false;
      return json;
    },
    (v, path, problems) => {
      if (typeName(v) !== "object") return problems.push(`${path}: expected an object, got ${typeName(v)}`);
      for (const k of required) {
        if (!(k in v)) problems.push(`${path}: missing required property \`${k}\``);
      }
      for (const [k, value] of Object.entries(v)) {
        const schema = properties[k];
        if (schema) schema.checkValue(value, `${path}.${k}`, problems);
        else if (!o.open) problems.push(`${path}: unexpected property \`${k}\``);
      }
    },
  );
}

/** The property may be left out (inside `object`). */
export function optional(schema) {
  return new Schema(schema.json, schema.checkValue, true);
}

/** A JSON Schema written by hand: declared as given, not checked by the SDK (the gateway checks it). */
export function raw(json) {
  return new Schema(json, () => {});
}
