/**
 * Small SVG charts drawn by hand (no library): lines for levels (depth, waits, latency) and
 * stacked bars for counts (throughput). Colours come from CSS classes; each chart has a text
 * summary for screen readers and a tooltip per bucket.
 */
import type { ComponentChildren } from "preact";

const WIDTH = 320;
const HEIGHT = 110;
const LEFT = 44;
const RIGHT = 6;
const TOP = 8;
const BOTTOM = 18;
const PLOT_W = WIDTH - LEFT - RIGHT;
const PLOT_H = HEIGHT - TOP - BOTTOM;

export interface Series {
  label: string;
  /** One value per bucket; null where there is none (the line breaks). */
  values: (number | null)[];
  className: string;
}

/** A round upper bound for the axis: 1, 2, 5, 10, 20, 50... (or the unit's step). */
export function niceMax(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function Frame({ max, format, startLabel, children }: { max: number; format: (value: number) => string; startLabel: string; children: ComponentChildren }) {
  return (
    <>
      <line class="chart-grid" x1={LEFT} x2={WIDTH - RIGHT} y1={TOP} y2={TOP} />
      <line class="chart-grid" x1={LEFT} x2={WIDTH - RIGHT} y1={TOP + PLOT_H / 2} y2={TOP + PLOT_H / 2} />
      <line class="chart-axis" x1={LEFT} x2={WIDTH - RIGHT} y1={TOP + PLOT_H} y2={TOP + PLOT_H} />
      <text class="chart-label" x={LEFT - 4} y={TOP + 4} text-anchor="end">
        {format(max)}
      </text>
      <text class="chart-label" x={LEFT - 4} y={TOP + PLOT_H + 4} text-anchor="end">
        {format(0)}
      </text>
      <text class="chart-label" x={LEFT} y={HEIGHT - 4} text-anchor="start">
        {startLabel}
      </text>
      <text class="chart-label" x={WIDTH - RIGHT} y={HEIGHT - 4} text-anchor="end">
        now
      </text>
      {children}
    </>
  );
}

function x(index: number, count: number): number {
  return LEFT + (count <= 1 ? PLOT_W : (index / (count - 1)) * PLOT_W);
}

function y(value: number, max: number): number {
  return TOP + PLOT_H - (value / max) * PLOT_H;
}

export function LineChart({ series, labels, format, summary, startLabel }: { series: Series[]; labels: string[]; format: (value: number) => string; summary: string; startLabel: string }) {
  const max = niceMax(Math.max(0, ...series.flatMap((line) => line.values.filter((value): value is number => value !== null))));
  return (
    <svg class="chart" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={summary}>
      <Frame max={max} format={format} startLabel={startLabel}>
        {series.map((line) => {
          let path = "";
          let pen = false;
          line.values.forEach((value, index) => {
            if (value === null) {
              pen = false;
              return;
            }
            path += `${pen ? "L" : "M"}${x(index, line.values.length).toFixed(1)},${y(value, max).toFixed(1)}`;
            pen = true;
          });
          const dots = line.values.map((value, index) => ({ value, index })).filter(({ value, index }) => value !== null && line.values[index - 1] == null && line.values[index + 1] == null);
          return (
            <g key={line.label} class={line.className}>
              <path class="chart-line" d={path} />
              {dots.map(({ value, index }) => (
                <circle key={index} class="chart-dot" cx={x(index, line.values.length)} cy={y(value ?? 0, max)} r="2" />
              ))}
            </g>
          );
        })}
        {labels.map((label, index) => {
          const width = PLOT_W / Math.max(1, labels.length - 1);
          const values = series.map((line) => `${line.label} ${line.values[index] == null ? "–" : format(line.values[index] ?? 0)}`).join(", ");
          return (
            <rect key={index} class="chart-hit" x={x(index, labels.length) - width / 2} y={TOP} width={width} height={PLOT_H}>
              <title>{`${label}: ${values}`}</title>
            </rect>
          );
        })}
      </Frame>
    </svg>
  );
}

export function BarChart({ series, labels, summary, startLabel }: { series: Series[]; labels: string[]; summary: string; startLabel: string }) {
  const totals = labels.map((_, index) => series.reduce((sum, part) => sum + (part.values[index] ?? 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const slot = PLOT_W / Math.max(1, labels.length);
  const width = Math.max(1, slot - 1);
  return (
    <svg class="chart" viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={summary}>
      <Frame max={max} format={(value) => String(Math.round(value))} startLabel={startLabel}>
        {labels.map((label, index) => {
          let base = 0;
          const parts = series.map((part) => {
            const value = part.values[index] ?? 0;
            const rect =
              value > 0 ? <rect key={part.label} class={part.className} x={LEFT + index * slot} y={y(base + value, max)} width={width} height={(value / max) * PLOT_H} /> : null;
            base += value;
            return rect;
          });
          const detail = series.map((part) => `${part.values[index] ?? 0} ${part.label}`).join(", ");
          return (
            <g key={index}>
              {parts}
              <rect class="chart-hit" x={LEFT + index * slot} y={TOP} width={slot} height={PLOT_H}>
                <title>{`${label}: ${detail}`}</title>
              </rect>
            </g>
          );
        })}
      </Frame>
    </svg>
  );
}

export function Legend({ series }: { series: Series[] }) {
  return (
    <ul class="chart-legend">
      {series.map((item) => (
        <li key={item.label}>
          <span class={`legend-swatch ${item.className}`} aria-hidden="true" />
          {item.label}
        </li>
      ))}
    </ul>
  );
}
