/**
 * The job's spec as YAML-like text. The coordinator already masks secret values; this view also
 * leaves them out entirely (names only) and shortens long file contents.
 */
import type { JobSpec } from "../../../src/protocol/index.ts";

const MAX_STRING = 2000;

function scalar(value: unknown): string {
  if (typeof value === "string") {
    const shown = value.length > MAX_STRING ? `${value.slice(0, MAX_STRING)}… (${value.length.toLocaleString()} characters)` : value;
    return /^[\w./:@-][\w ./:@-]*$/.test(shown) && !/^(true|false|null|[\d.]+)$/.test(shown) ? shown : JSON.stringify(shown);
  }
  return JSON.stringify(value);
}

function render(value: unknown, indent: string, lines: string[], key?: string): void {
  const prefix = key === undefined ? indent : `${indent}${key}:`;
  if (Array.isArray(value)) {
    if (value.length === 0) {
      lines.push(`${prefix}${key === undefined ? "" : " "}[]`);
      return;
    }
    if (key !== undefined) lines.push(prefix);
    for (const item of value) {
      if (item !== null && typeof item === "object") {
        const nested: string[] = [];
        render(item, `${indent}  `, nested);
        lines.push(`${indent}- ${(nested[0] ?? "").trimStart()}`, ...nested.slice(1));
      } else {
        lines.push(`${indent}- ${scalar(item)}`);
      }
    }
    return;
  }
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value);
    if (entries.length === 0) {
      lines.push(`${prefix}${key === undefined ? "" : " "}{}`);
      return;
    }
    if (key !== undefined) lines.push(prefix);
    const inner = key === undefined ? indent : `${indent}  `;
    for (const [name, item] of entries) render(item, inner, lines, /^[\w.-]+$/.test(name) ? name : JSON.stringify(name));
    return;
  }
  lines.push(`${prefix}${key === undefined ? "" : " "}${scalar(value)}`);
}

export function specText(spec: JobSpec): string {
  const shown: Record<string, unknown> = { ...spec, secrets: Object.keys(spec.secrets).map((name) => `${name} (value hidden)`) };
  if (spec.registryAuth) {
    shown.registryAuth = Object.fromEntries(Object.entries(spec.registryAuth).map(([host, auth]) => [host, { username: auth.username, password: "(hidden)" }]));
  }
  const lines: string[] = [];
  render(shown, "", lines);
  return lines.join("\n");
}

export function SpecView({ spec }: { spec: JobSpec }) {
  return (
    <details class="card spec">
      <summary>
        <h2 class="inline-heading">Job spec</h2>
      </summary>
      <p class="muted">As stored: durations in milliseconds, sizes in bytes, the commit resolved at submit time. Secret values are never shown.</p>
      <pre class="code-block">{specText(spec)}</pre>
    </details>
  );
}
