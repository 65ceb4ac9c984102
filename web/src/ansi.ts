/**
 * ANSI escape sequences in log lines: SGR (colours, bold, ...) is parsed into styled segments;
 * every other control sequence (cursor moves, erase, OSC titles and hyperlinks) is dropped.
 * Segments are plain text and become DOM text nodes, so log bytes are never parsed as HTML.
 *
 * Styles are immutable and shared: a line without escapes hands its start style to the next
 * line unchanged, which is what makes keeping one style per line of a 100k-line log cheap.
 */

/** A palette index (0-255) or "#rrggbb". */
export type Color = number | string;

export interface Style {
  readonly fg: Color | null;
  readonly bg: Color | null;
  readonly bold: boolean;
  readonly dim: boolean;
  readonly italic: boolean;
  readonly underline: boolean;
  readonly inverse: boolean;
  readonly strike: boolean;
}

export interface Segment {
  text: string;
  style: Style;
}

export const PLAIN: Style = Object.freeze({ fg: null, bg: null, bold: false, dim: false, italic: false, underline: false, inverse: false, strike: false });

const ESC = "\x1b";

function hex(value: number): string {
  return Math.max(0, Math.min(255, value)).toString(16).padStart(2, "0");
}

/** The xterm 256-colour palette beyond the 16 named colours, as "#rrggbb". */
export function paletteColor(index: number): string {
  if (index >= 232) {
    const level = 8 + (index - 232) * 10;
    return `#${hex(level)}${hex(level)}${hex(level)}`;
  }
  const cube = index - 16;
  const steps = [0, 95, 135, 175, 215, 255];
  const r = steps[Math.floor(cube / 36) % 6] ?? 0;
  const g = steps[Math.floor(cube / 6) % 6] ?? 0;
  const b = steps[cube % 6] ?? 0;
  return `#${hex(r)}${hex(g)}${hex(b)}`;
}

/** Reads an extended colour (`5;n` or `2;r;g;b`) from params[at...]; returns it and the params used. */
function extendedColor(params: number[], at: number): [Color | null, number] {
  const mode = params[at];
  if (mode === 5) {
    const index = params[at + 1];
    return index === undefined || index < 0 || index > 255 ? [null, 2] : [index < 16 ? index : paletteColor(index), 2];
  }
  if (mode === 2) {
    const [r, g, b] = [params[at + 1] ?? 0, params[at + 2] ?? 0, params[at + 3] ?? 0];
    return [`#${hex(r)}${hex(g)}${hex(b)}`, 4];
  }
  return [null, 1];
}

/** Applies one SGR parameter list ("1;31", "38;5;208", "") to a style. */
export function applySgr(style: Style, paramText: string): Style {
  // Colon sub-parameters ("38:2::255:0:0") are read like semicolons, minus the empty colour-space id.
  const params = paramText === "" ? [0] : paramText.replace(/(38|48):2::/g, "$1:2:").split(/[;:]/).map((part) => (part === "" ? 0 : Number(part)));
  let next: { -readonly [K in keyof Style]: Style[K] } = { ...style };
  for (let index = 0; index < params.length; index += 1) {
    const code = params[index] ?? 0;
    if (code === 0) next = { ...PLAIN };
    else if (code === 1) next.bold = true;
    else if (code === 2) next.dim = true;
    else if (code === 3) next.italic = true;
    else if (code === 4) next.underline = true;
    else if (code === 7) next.inverse = true;
    else if (code === 9) next.strike = true;
    else if (code === 21 || code === 22) next = { ...next, bold: false, dim: false };
    else if (code === 23) next.italic = false;
    else if (code === 24) next.underline = false;
    else if (code === 27) next.inverse = false;
    else if (code === 29) next.strike = false;
    else if (code >= 30 && code <= 37) next.fg = code - 30;
    else if (code === 39) next.fg = null;
    else if (code >= 40 && code <= 47) next.bg = code - 40;
    else if (code === 49) next.bg = null;
    else if (code >= 90 && code <= 97) next.fg = code - 90 + 8;
    else if (code >= 100 && code <= 107) next.bg = code - 100 + 8;
    else if (code === 38 || code === 48) {
      const [color, used] = extendedColor(params, index + 1);
      if (color !== null) {
        if (code === 38) next.fg = color;
        else next.bg = color;
      }
      index += used;
    }
  }
  return sameStyle(next, style) ? style : sameStyle(next, PLAIN) ? PLAIN : Object.freeze(next);
}

function sameStyle(a: Style, b: Style): boolean {
  return (
    a.fg === b.fg && a.bg === b.bg && a.bold === b.bold && a.dim === b.dim && a.italic === b.italic && a.underline === b.underline && a.inverse === b.inverse && a.strike === b.strike
  );
}

/**
 * Where the escape sequence starting at `at` (an ESC) ends, and its SGR parameters when it is
 * one. An unterminated sequence runs to the end of the line.
 */
function readEscape(line: string, at: number): { end: number; sgr: string | undefined } {
  const kind = line[at + 1];
  if (kind === "[") {
    let index = at + 2;
    while (index < line.length) {
      const code = line.charCodeAt(index);
      if (code >= 0x40 && code <= 0x7e) return { end: index + 1, sgr: line[index] === "m" ? line.slice(at + 2, index) : undefined };
      index += 1;
    }
    return { end: line.length, sgr: undefined };
  }
  if (kind === "]" || kind === "P" || kind === "_" || kind === "^") {
    // OSC/DCS/APC/PM run to BEL or ST (ESC \).
    for (let index = at + 2; index < line.length; index += 1) {
      if (line[index] === "\x07") return { end: index + 1, sgr: undefined };
      if (line[index] === ESC && line[index + 1] === "\\") return { end: index + 2, sgr: undefined };
    }
    return { end: line.length, sgr: undefined };
  }
  // Character set and similar selections take one more byte ("ESC ( B").
  const width = kind !== undefined && "()*+-./#%".includes(kind) ? 3 : 2;
  return { end: Math.min(line.length, at + width), sgr: undefined };
}

// C0 controls other than TAB (and ESC, CR, handled apart) are dropped from what is shown.
// eslint-disable-next-line no-control-regex
const OTHER_CONTROLS = /[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g;

/**
 * Splits one line (no "\n") into styled segments, starting from `start`. A carriage return
 * followed by more text starts the line over, as a terminal would show a progress bar.
 */
export function parseLine(line: string, start: Style): { segments: Segment[]; end: Style } {
  if (!line.includes(ESC) && !line.includes("\r")) {
    const text = line.replace(OTHER_CONTROLS, "");
    return { segments: text ? [{ text, style: start }] : [], end: start };
  }
  let segments: Segment[] = [];
  let style = start;
  let text = "";
  const flush = (): void => {
    const clean = text.replace(OTHER_CONTROLS, "");
    if (clean) segments.push({ text: clean, style });
    text = "";
  };
  let index = 0;
  while (index < line.length) {
    const char = line[index];
    if (char === ESC) {
      const { end, sgr } = readEscape(line, index);
      if (sgr !== undefined) {
        const next = applySgr(style, sgr);
        if (next !== style) {
          flush();
          style = next;
        }
      }
      index = end;
    } else if (char === "\r") {
      flush();
      if (index + 1 < line.length) segments = [];
      index += 1;
    } else {
      text += char;
      index += 1;
    }
  }
  flush();
  return { segments, end: style };
}

/** The style after a line, without building its segments (the fast path for lines not shown). */
export function styleAfter(line: string, start: Style): Style {
  let at = line.indexOf(ESC);
  if (at < 0) return start;
  let style = start;
  while (at >= 0) {
    const { end, sgr } = readEscape(line, at);
    if (sgr !== undefined) style = applySgr(style, sgr);
    at = line.indexOf(ESC, end);
  }
  return style;
}

/** CSS classes and inline colours (applied through the CSSOM, which the CSP allows) for a style. */
export function styleToCss(style: Style): { className: string; color: string | undefined; background: string | undefined } {
  if (style === PLAIN) return { className: "", color: undefined, background: undefined };
  let fg = style.fg;
  let bg = style.bg;
  const classes: string[] = [];
  if (style.inverse) {
    [fg, bg] = [bg, fg];
    if (fg === null) classes.push("ansi-fg-inverse");
    if (bg === null) classes.push("ansi-bg-inverse");
  }
  if (typeof fg === "number") classes.push(`ansi-fg-${fg}`);
  if (typeof bg === "number") classes.push(`ansi-bg-${bg}`);
  if (style.bold) classes.push("ansi-bold");
  if (style.dim) classes.push("ansi-dim");
  if (style.italic) classes.push("ansi-italic");
  if (style.underline && style.strike) classes.push("ansi-underline-strike");
  else if (style.underline) classes.push("ansi-underline");
  else if (style.strike) classes.push("ansi-strike");
  return { className: classes.join(" "), color: typeof fg === "string" ? fg : undefined, background: typeof bg === "string" ? bg : undefined };
}
