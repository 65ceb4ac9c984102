/** The web UI's ANSI parser (web/src/ansi.ts): SGR into styles, everything else dropped. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { applySgr, paletteColor, parseLine, PLAIN, styleAfter, styleToCss } from "../../web/src/ansi.ts";

const texts = (line: string) => parseLine(line, PLAIN).segments.map((segment) => segment.text);

describe("ANSI SGR parsing", () => {
  it("splits a line into styled segments and resets", () => {
    const { segments, end } = parseLine("plain \x1b[1;31mred bold\x1b[0m after", PLAIN);
    assert.deepEqual(segments.map((segment) => segment.text), ["plain ", "red bold", " after"]);
    assert.equal(segments[0]?.style, PLAIN);
    assert.equal(segments[1]?.style.fg, 1);
    assert.equal(segments[1]?.style.bold, true);
    assert.equal(segments[2]?.style, PLAIN, "a reset returns the shared plain style");
    assert.equal(end, PLAIN);
  });

  it("reads bright, 256-colour and true-colour forms, with ; or :", () => {
    assert.equal(applySgr(PLAIN, "92").fg, 10);
    assert.equal(applySgr(PLAIN, "104").bg, 12);
    assert.equal(applySgr(PLAIN, "38;5;3").fg, 3);
    assert.equal(applySgr(PLAIN, "38;5;208").fg, paletteColor(208));
    assert.equal(paletteColor(208), "#ff8700");
    assert.equal(paletteColor(244), "#808080");
    assert.equal(applySgr(PLAIN, "38;2;255;0;128").fg, "#ff0080");
    assert.equal(applySgr(PLAIN, "48:2::1:2:3").bg, "#010203");
    const styled = applySgr(PLAIN, "38;5;208;1");
    assert.equal(styled.bold, true, "parameters after an extended colour still apply");
    assert.equal(applySgr(styled, "39;22").fg, null);
    assert.equal(applySgr(applySgr(PLAIN, "1"), ""), PLAIN, "ESC[m is a reset");
  });

  it("drops cursor moves, OSC titles and links, charset selections and stray controls", () => {
    assert.deepEqual(texts("\x1b[2K\x1b[1Gdone"), ["done"]);
    assert.deepEqual(texts("\x1b]0;title\x07see \x1b]8;;https://x.test\x1b\\link\x1b]8;;\x1b\\ here"), ["see link here"]);
    assert.deepEqual(texts("\x1b(Bok\x00\x08!"), ["ok!"]);
    assert.deepEqual(texts("tab\there"), ["tab\there"]);
    assert.deepEqual(texts("cut \x1b[31"), ["cut "], "an unterminated sequence is dropped");
  });

  it("shows what a terminal would after carriage returns", () => {
    assert.deepEqual(texts("10%\r50%\r100% done"), ["100% done"]);
    assert.deepEqual(texts("kept\r"), ["kept"], "a trailing CR clears nothing");
    const { segments } = parseLine("\x1b[32m10%\r100%", PLAIN);
    assert.equal(segments[0]?.style.fg, 2, "style survives the overwrite");
  });

  it("styleAfter agrees with parseLine, and carries styles across lines", () => {
    for (const line of ["a\x1b[31mb", "\x1b[1m\x1b[4mx\x1b[24m", "plain", "\x1b[38;5;200mz\x1b[0m\x1b[45m"]) {
      assert.deepEqual(styleAfter(line, PLAIN), parseLine(line, PLAIN).end, JSON.stringify(line));
    }
    const red = styleAfter("\x1b[31mstart", PLAIN);
    assert.equal(parseLine("continues", red).segments[0]?.style.fg, 1);
    assert.equal(styleAfter("no escapes", red), red, "the same object when nothing changes");
  });

  it("maps styles to CSS classes and CSSOM colours", () => {
    assert.deepEqual(styleToCss(PLAIN), { className: "", color: undefined, background: undefined });
    assert.equal(styleToCss(applySgr(PLAIN, "1;3;4;31;42")).className, "ansi-fg-1 ansi-bg-2 ansi-bold ansi-italic ansi-underline");
    assert.deepEqual(styleToCss(applySgr(PLAIN, "38;2;1;2;3")), { className: "", color: "#010203", background: undefined });
    assert.equal(styleToCss(applySgr(PLAIN, "7")).className, "ansi-fg-inverse ansi-bg-inverse");
    assert.equal(styleToCss(applySgr(PLAIN, "7;31")).className, "ansi-fg-inverse ansi-bg-1");
  });
});
