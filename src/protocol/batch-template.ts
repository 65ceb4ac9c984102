/**
 * The batch template engine: `${{ expression }}` in step commands, env, files, outputs, `if:`
 * conditions and the changeset template. Pure TypeScript (no imports), so the coordinator (static
 * checks, the cache key, the changeset template), the executor (between steps) and the CLI's
 * local mode evaluate templates identically.
 *
 * Expressions: variables (`repository.name`, `outputs.NAME.field`, `steps.modified_files[0]`),
 * string literals ('x' or "x"), numbers, true/false/null, function calls (`join(list, ",")`),
 * `==`, `!=`, `&&`, `||`, `!` and parentheses. A value renders as text: lists joined by single
 * spaces, objects as JSON, null as "". Variables:
 *   repository.name, repository.branch, batch.name, batch.description       (static)
 *   steps.path                                 the workspace directory ("." at the root; static)
 *   steps.modified_files / added_files / deleted_files    changes so far, repository-relative
 *   previous_step.stdout / stderr / exit_code / modified_files / added_files / deleted_files
 *   step.stdout / step.stderr                  the step's own output (in its `outputs:` only)
 *   outputs.NAME                               an output of an earlier step
 */
import { FUNCTIONS, toText, truthy, type TemplateValue } from "./batch-template-values.ts";

export { globToRegExp, hasGlob, toText, truthy, type TemplateValue } from "./batch-template-values.ts";

/** The artifact holding a batch job's step outputs ({"outputs": {...}}), as JSON. */
export const BATCH_OUTPUTS_ARTIFACT = "batch-outputs.json";

export interface TemplateContext {
  repository?: { name: string; branch: string };
  batch?: { name: string; description: string };
  steps?: { path: string; modified_files?: string[]; added_files?: string[]; deleted_files?: string[] };
  previous_step?: { stdout: string; stderr: string; exit_code: number | null; modified_files: string[]; added_files: string[]; deleted_files: string[] };
  step?: { stdout: string; stderr: string };
  outputs?: Record<string, TemplateValue>;
}

/** A template that does not parse or names something unknown; `column` is 1-based in the text. */
export class TemplateError extends Error {
  readonly column: number;
  constructor(message: string, column: number) {
    super(message);
    this.name = "TemplateError";
    this.column = column;
  }
}

type Expr =
  | { kind: "literal"; value: TemplateValue; at: number }
  | { kind: "var"; path: (string | number)[]; at: number }
  | { kind: "call"; name: string; args: Expr[]; at: number }
  | { kind: "not"; operand: Expr; at: number }
  | { kind: "binary"; op: "==" | "!=" | "&&" | "||"; left: Expr; right: Expr; at: number };

type Segment = { kind: "text"; text: string } | { kind: "expr"; expr: Expr; source: string; at: number };

/** The variables each root offers; `*` means any name (outputs). */
const ROOTS: Record<string, readonly string[]> = {
  repository: ["name", "branch"],
  batch: ["name", "description"],
  steps: ["path", "modified_files", "added_files", "deleted_files"],
  previous_step: ["stdout", "stderr", "exit_code", "modified_files", "added_files", "deleted_files"],
  step: ["stdout", "stderr"],
  outputs: ["*"],
};

/** Variables known before any step ran: what the cache key and a partial render may use. */
function isStatic(path: readonly (string | number)[]): boolean {
  const [root, name] = path;
  return root === "repository" || root === "batch" || (root === "steps" && name === "path");
}

/** Where a template appears decides which variables it may use. */
export interface TemplateScope {
  /** Roots allowed here, e.g. ["repository", "batch", "steps", "outputs", "previous_step"]. */
  roots: readonly string[];
  /** Output names declared by earlier steps (checked when `outputs` is allowed). */
  outputs?: readonly string[];
}

/** Splits a template into text and `${{ }}` segments; throws TemplateError. Cached: templates repeat. */
const parsedCache = new Map<string, Segment[]>();
function parseTemplate(text: string): Segment[] {
  const cached = parsedCache.get(text);
  if (cached) return cached;
  const segments: Segment[] = [];
  let position = 0;
  while (position < text.length) {
    const open = text.indexOf("${{", position);
    if (open < 0) {
      segments.push({ kind: "text", text: text.slice(position) });
      break;
    }
    if (open > position) segments.push({ kind: "text", text: text.slice(position, open) });
    const close = findClose(text, open + 3);
    if (close < 0) throw new TemplateError("unclosed ${{ (expected }})", open + 1);
    const source = text.slice(open + 3, close);
    const expr = new Parser(source, open + 3).parseWhole();
    segments.push({ kind: "expr", expr, source: text.slice(open, close + 2), at: open + 1 });
    position = close + 2;
  }
  if (parsedCache.size > 5000) parsedCache.clear();
  parsedCache.set(text, segments);
  return segments;
}

/** The index of the `}}` closing an expression, skipping string literals. */
function findClose(text: string, from: number): number {
  let quote: string | undefined;
  for (let index = from; index < text.length; index += 1) {
    const char = text[index];
    if (quote) {
      if (char === "\\") index += 1;
      else if (char === quote) quote = undefined;
    } else if (char === "'" || char === '"') quote = char;
    else if (char === "}" && text[index + 1] === "}") return index;
  }
  return -1;
}

class Parser {
  private index = 0;
  private readonly text: string;
  private readonly offset: number;

  constructor(text: string, offset: number) {
    this.text = text;
    this.offset = offset;
  }

  private fail(message: string, at = this.index): never {
    throw new TemplateError(message, this.offset + at + 1);
  }

  private skip(): void {
    while (/\s/.test(this.text[this.index] ?? "")) this.index += 1;
  }

  private eat(token: string): boolean {
    this.skip();
    if (this.text.startsWith(token, this.index)) {
      this.index += token.length;
      return true;
    }
    return false;
  }

  parseWhole(): Expr {
    this.skip();
    if (this.index >= this.text.length) this.fail("empty expression in ${{ }}");
    const expr = this.parseOr();
    this.skip();
    if (this.index < this.text.length) this.fail(`unexpected "${this.text.slice(this.index, this.index + 10)}"`);
    return expr;
  }

  private parseOr(): Expr {
    let left = this.parseAnd();
    for (let at = this.index; this.eat("||"); at = this.index) left = { kind: "binary", op: "||", left, right: this.parseAnd(), at };
    return left;
  }

  private parseAnd(): Expr {
    let left = this.parseComparison();
    for (let at = this.index; this.eat("&&"); at = this.index) left = { kind: "binary", op: "&&", left, right: this.parseComparison(), at };
    return left;
  }

  private parseComparison(): Expr {
    const left = this.parseUnary();
    const at = this.index;
    if (this.eat("==")) return { kind: "binary", op: "==", left, right: this.parseUnary(), at };
    if (this.eat("!=")) return { kind: "binary", op: "!=", left, right: this.parseUnary(), at };
    return left;
  }

  private parseUnary(): Expr {
    this.skip();
    const at = this.index;
    if (this.text[this.index] === "!" && this.text[this.index + 1] !== "=") {
      this.index += 1;
      return { kind: "not", operand: this.parseUnary(), at };
    }
    return this.parsePrimary();
  }

  private parsePrimary(): Expr {
    this.skip();
    const at = this.index;
    const char = this.text[this.index] ?? "";
    if (char === "(") {
      this.index += 1;
      const inner = this.parseOr();
      if (!this.eat(")")) this.fail("expected )");
      return inner;
    }
    if (char === "'" || char === '"') return { kind: "literal", value: this.parseString(char), at };
    const number = /^-?\d+(\.\d+)?/.exec(this.text.slice(this.index));
    if (number) {
      this.index += number[0].length;
      return { kind: "literal", value: Number(number[0]), at };
    }
    const name = this.identifier();
    if (name === undefined) this.fail(char ? `unexpected "${char}"` : "expression ends too early");
    if (name === "true" || name === "false") return { kind: "literal", value: name === "true", at };
    if (name === "null") return { kind: "literal", value: null, at };
    if (this.eat("(")) {
      const fn = FUNCTIONS[name];
      if (!fn) this.fail(`unknown function ${name}() (known: ${Object.keys(FUNCTIONS).join(", ")})`, at);
      const args: Expr[] = [];
      if (!this.eat(")")) {
        do args.push(this.parseOr());
        while (this.eat(","));
        if (!this.eat(")")) this.fail("expected , or ) in the arguments");
      }
      if (args.length < fn.min || args.length > fn.max) this.fail(`${name}() takes ${fn.min === fn.max ? fn.min : `${fn.min} to ${fn.max}`} arguments, not ${args.length}`, at);
      return { kind: "call", name, args, at };
    }
    const path: (string | number)[] = [name];
    for (;;) {
      if (this.text[this.index] === ".") {
        this.index += 1;
        const part = this.identifier();
        if (part === undefined) this.fail("expected a name after '.'");
        path.push(part);
      } else if (this.text[this.index] === "[") {
        this.index += 1;
        this.skip();
        const subscript = /^\d+/.exec(this.text.slice(this.index));
        if (subscript) {
          this.index += subscript[0].length;
          path.push(Number(subscript[0]));
        } else if (this.text[this.index] === "'" || this.text[this.index] === '"') {
          path.push(this.parseString(this.text[this.index] ?? ""));
        } else this.fail("expected a number or a string in [ ]");
        if (!this.eat("]")) this.fail("expected ]");
      } else break;
    }
    return { kind: "var", path, at };
  }

  private identifier(): string | undefined {
    const match = /^[A-Za-z_][A-Za-z0-9_-]*/.exec(this.text.slice(this.index));
    if (!match) return undefined;
    this.index += match[0].length;
    return match[0];
  }

  private parseString(quote: string): string {
    let value = "";
    for (this.index += 1; this.index < this.text.length; this.index += 1) {
      const char = this.text[this.index] ?? "";
      if (char === "\\") {
        const next = this.text[this.index + 1] ?? "";
        value += next === "n" ? "\n" : next === "t" ? "\t" : next;
        this.index += 1;
      } else if (char === quote) {
        this.index += 1;
        return value;
      } else value += char;
    }
    return this.fail("unclosed string");
  }
}

function variables(expr: Expr, into: { path: (string | number)[]; at: number }[] = []): { path: (string | number)[]; at: number }[] {
  switch (expr.kind) {
    case "var":
      into.push({ path: expr.path, at: expr.at });
      break;
    case "call":
      for (const arg of expr.args) variables(arg, into);
      break;
    case "not":
      variables(expr.operand, into);
      break;
    case "binary":
      variables(expr.left, into);
      variables(expr.right, into);
      break;
    case "literal":
      break;
  }
  return into;
}

/**
 * Checks a template's syntax and that every variable it names exists in `scope`; throws
 * TemplateError. Returns true when the template uses only static variables.
 */
export function checkTemplate(text: string, scope: TemplateScope): boolean {
  let onlyStatic = true;
  for (const segment of parseTemplate(text)) {
    if (segment.kind !== "expr") continue;
    for (const variable of variables(segment.expr)) {
      const column = segment.at + 3 + variable.at;
      const [root, name] = variable.path;
      const rootName = String(root);
      if (!(rootName in ROOTS)) throw new TemplateError(`unknown variable "${rootName}" (known: ${Object.keys(ROOTS).join(", ")})`, column);
      if (!scope.roots.includes(rootName)) throw new TemplateError(`"${rootName}" is not available here (available: ${scope.roots.join(", ")})`, column);
      if (name === undefined) throw new TemplateError(`"${rootName}" needs a field, e.g. ${rootName}.${ROOTS[rootName]?.[0] === "*" ? "NAME" : ROOTS[rootName]?.[0]}`, column);
      const known = ROOTS[rootName] ?? [];
      if (rootName === "outputs") {
        if (scope.outputs && !scope.outputs.includes(String(name))) {
          throw new TemplateError(`output "${String(name)}" is not declared by an earlier step${scope.outputs.length ? ` (declared: ${scope.outputs.join(", ")})` : ""}`, column);
        }
      } else if (!known.includes(String(name))) {
        throw new TemplateError(`unknown variable "${rootName}.${String(name)}" (known: ${known.map((field) => `${rootName}.${field}`).join(", ")})`, column);
      }
      if (!isStatic(variable.path)) onlyStatic = false;
    }
  }
  return onlyStatic;
}

class Deferred extends Error {}

function lookup(context: TemplateContext, path: readonly (string | number)[], partial: boolean): TemplateValue {
  if (partial && !isStatic(path)) throw new Deferred();
  let value: unknown = context;
  for (const part of path) {
    if (value === null || value === undefined || typeof value !== "object") return null;
    value = (value as Record<string | number, unknown>)[part];
  }
  return value === undefined ? null : (value as TemplateValue);
}

function evaluate(expr: Expr, context: TemplateContext, partial: boolean): TemplateValue {
  switch (expr.kind) {
    case "literal":
      return expr.value;
    case "var":
      return lookup(context, expr.path, partial);
    case "not":
      return !truthy(evaluate(expr.operand, context, partial));
    case "call": {
      const fn = FUNCTIONS[expr.name];
      if (!fn) throw new TemplateError(`unknown function ${expr.name}()`, expr.at + 1);
      return fn.fn(...expr.args.map((arg) => evaluate(arg, context, partial)));
    }
    case "binary": {
      const left = evaluate(expr.left, context, partial);
      if (expr.op === "&&") return truthy(left) ? evaluate(expr.right, context, partial) : left;
      if (expr.op === "||") return truthy(left) ? left : evaluate(expr.right, context, partial);
      const right = evaluate(expr.right, context, partial);
      return expr.op === "==" ? toText(left) === toText(right) : toText(left) !== toText(right);
    }
  }
}

/**
 * Renders a template. With `partial`, expressions that need anything beyond the static variables
 * stay as written (for the cache key, computed before any step ran).
 */
export function renderTemplate(text: string, context: TemplateContext, options: { partial?: boolean } = {}): string {
  if (!text.includes("${{")) return text;
  let out = "";
  for (const segment of parseTemplate(text)) {
    if (segment.kind === "text") {
      out += segment.text;
      continue;
    }
    try {
      out += toText(evaluate(segment.expr, context, options.partial ?? false));
    } catch (error) {
      if (error instanceof Deferred) out += segment.source;
      else throw error;
    }
  }
  return out;
}

/** Evaluates a step's `if:`: the step runs when the rendered condition is exactly "true". */
export function conditionHolds(condition: string | undefined, context: TemplateContext): boolean {
  if (condition === undefined) return true;
  return renderTemplate(condition, context).trim() === "true";
}

/** The scope of a template in step `index` (0-based) given the outputs earlier steps declare. */
export function stepScope(index: number, earlierOutputs: readonly string[], options: { own?: boolean } = {}): TemplateScope {
  return {
    roots: ["repository", "batch", "steps", "outputs", ...(index > 0 ? ["previous_step"] : []), ...(options.own ? ["step"] : [])],
    outputs: earlierOutputs,
  };
}
