/**
 * Values of the batch template engine (batch-template.ts): how a value renders as text, counts as
 * true, and the functions an expression may call. Pure TypeScript, no imports.
 */

export type TemplateValue = string | number | boolean | null | TemplateValue[] | { [key: string]: TemplateValue };

/** The functions an expression may call, with their arity. */
export const FUNCTIONS: Record<string, { min: number; max: number; fn: (...args: TemplateValue[]) => TemplateValue }> = {
  join: { min: 1, max: 2, fn: (list, sep) => asList(list).map(toText).join(sep === undefined ? " " : toText(sep)) },
  split: { min: 2, max: 2, fn: (text, sep) => toText(text).split(toText(sep)).filter((part) => part !== "") },
  replace: { min: 3, max: 3, fn: (text, from, to) => toText(text).split(toText(from)).join(toText(to)) },
  trim: { min: 1, max: 1, fn: (text) => toText(text).trim() },
  lower: { min: 1, max: 1, fn: (text) => toText(text).toLowerCase() },
  upper: { min: 1, max: 1, fn: (text) => toText(text).toUpperCase() },
  contains: { min: 2, max: 2, fn: (haystack, needle) => (Array.isArray(haystack) ? haystack.some((item) => toText(item) === toText(needle)) : toText(haystack).includes(toText(needle))) },
  startsWith: { min: 2, max: 2, fn: (text, prefix) => toText(text).startsWith(toText(prefix)) },
  endsWith: { min: 2, max: 2, fn: (text, suffix) => toText(text).endsWith(toText(suffix)) },
  matches: { min: 2, max: 2, fn: (text, glob) => globToRegExp(toText(glob)).test(toText(text)) },
  eq: { min: 2, max: 2, fn: (a, b) => toText(a) === toText(b) },
  ne: { min: 2, max: 2, fn: (a, b) => toText(a) !== toText(b) },
  not: { min: 1, max: 1, fn: (value) => !truthy(value) },
  len: { min: 1, max: 1, fn: (value) => (Array.isArray(value) ? value.length : toText(value).length) },
  json: { min: 1, max: 1, fn: (value) => JSON.stringify(value ?? null) },
  default: { min: 2, max: 2, fn: (value, fallback) => (truthy(value) ? value : fallback) },
};

export function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let index = 0; index < glob.length; index += 1) {
    const char = glob[index] ?? "";
    if (char === "*" && glob[index + 1] === "*") {
      source += ".*";
      index += 1;
    } else if (char === "*") source += "[^/]*";
    else if (char === "?") source += "[^/]";
    else source += char.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

export function hasGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

export function toText(value: TemplateValue | undefined): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (Array.isArray(value)) return value.map(toText).join(" ");
  return JSON.stringify(value);
}

export function asList(value: TemplateValue | undefined): TemplateValue[] {
  if (Array.isArray(value)) return value;
  if (value === undefined || value === null || value === "") return [];
  return [value];
}

export function truthy(value: TemplateValue | undefined): boolean {
  if (value === undefined || value === null || value === false || value === "" || value === 0) return false;
  if (value === "false" || value === "0") return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}
