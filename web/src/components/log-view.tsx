/**
 * A log, virtualized: every line has the same height, the scroller holds a spacer as tall as the
 * whole log, and only the lines in view (plus a margin) exist in the DOM, so a 100k-line log
 * scrolls like a 100-line one. While the view is at the bottom it follows new output; scrolling
 * up stops following, "Follow" or End resumes.
 */
import { Component } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { parseLine, styleToCss, type Style } from "../ansi.ts";
import type { LogBuffer } from "../log-buffer.ts";

/** Keep in step with .log-line's height in style.css. */
export const LINE_HEIGHT = 18;
const MARGIN = 12;

interface LineProps {
  number: number;
  text: string;
  start: Style;
}

/** One line; redrawn only when its text, start style or number change (styles are shared objects). */
class LogLine extends Component<LineProps> {
  override shouldComponentUpdate(next: LineProps): boolean {
    return next.text !== this.props.text || next.start !== this.props.start || next.number !== this.props.number;
  }

  override render() {
    const { segments } = parseLine(this.props.text, this.props.start);
    return (
      <div class="log-line">
        <span class="log-number" aria-hidden="true">
          {this.props.number}
        </span>
        <span class="log-text">
          {segments.map((segment, position) => {
            const css = styleToCss(segment.style);
            if (!css.className && !css.color && !css.background) return segment.text;
            const style = css.color || css.background ? { color: css.color, backgroundColor: css.background } : undefined;
            return (
              <span key={position} class={css.className || undefined} style={style}>
                {segment.text}
              </span>
            );
          })}
        </span>
      </div>
    );
  }
}

export function LogView({ buffer, version, label, emptyText }: { buffer: LogBuffer; version: number; label: string; emptyText: string }) {
  const scroller = useRef<HTMLDivElement>(null);
  const [view, setView] = useState({ top: 0, height: 480 });
  const [follow, setFollow] = useState(true);
  const following = useRef(true);

  const total = buffer.length;
  const first = Math.max(0, Math.floor(view.top / LINE_HEIGHT) - MARGIN);
  const last = Math.min(total, Math.ceil((view.top + view.height) / LINE_HEIGHT) + MARGIN);

  const measure = (): void => {
    const element = scroller.current;
    if (!element) return;
    const atBottom = element.scrollTop + element.clientHeight >= element.scrollHeight - LINE_HEIGHT;
    if (atBottom !== following.current) {
      following.current = atBottom;
      setFollow(atBottom);
    }
    setView((previous) => (previous.top === element.scrollTop && previous.height === element.clientHeight ? previous : { top: element.scrollTop, height: element.clientHeight }));
  };

  // Browsers fire scroll events once per frame, before painting it: render the new lines now,
  // not a frame later.
  const onScroll = measure;

  const toEnd = (): void => {
    const element = scroller.current;
    if (!element) return;
    following.current = true;
    setFollow(true);
    element.scrollTop = element.scrollHeight;
    measure();
  };

  // New output while following: stay at the bottom (before paint, so nothing jumps).
  useLayoutEffect(() => {
    const element = scroller.current;
    if (element && following.current) {
      element.scrollTop = element.scrollHeight;
      if (element.scrollTop !== view.top) setView({ top: element.scrollTop, height: element.clientHeight });
    }
  }, [version, total]);

  useEffect(() => {
    const element = scroller.current;
    if (!element) return;
    const observer = new ResizeObserver(() => measure());
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const digits = String(buffer.lineNumber(Math.max(0, total - 1))).length;
  const lines = [];
  for (let index = first; index < last; index += 1) {
    const { text, start } = buffer.line(index);
    const number = buffer.lineNumber(index);
    lines.push(<LogLine key={number} number={number} text={text} start={start} />);
  }

  return (
    <div class="log-panel">
      <div class="log-toolbar">
        <span class="muted" aria-live="off">
          {total.toLocaleString()} {total === 1 ? "line" : "lines"}
        </span>
        <button type="button" class="button small" aria-pressed={follow} onClick={toEnd} title="Scroll to the end and follow new output">
          {follow ? "Following" : "Follow"}
        </button>
      </div>
      {buffer.dropped > 0 ? (
        <p class="notice">
          The first {buffer.dropped.toLocaleString()} lines are not kept in the browser; download the log to see all of it.
        </p>
      ) : null}
      <div ref={scroller} class="log" role="region" aria-label={label} tabIndex={0} onScroll={onScroll} style={{ "--gutter": `${digits + 1}ch` }}>
        {total === 0 ? <p class="log-empty">{emptyText}</p> : null}
        <div class="log-spacer" style={{ height: `${total * LINE_HEIGHT}px` }}>
          <div class="log-window" style={{ transform: `translateY(${first * LINE_HEIGHT}px)` }}>
            {lines}
          </div>
        </div>
      </div>
    </div>
  );
}
