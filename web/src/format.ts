/** Durations, ages, sizes and times as the UI shows them. */
import { formatSize as formatSizeWith } from "../../src/protocol/format-size.ts";

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "–";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  const minutes = Math.floor(ms / 60_000);
  const seconds = Math.floor((ms % 60_000) / 1000);
  if (minutes < 60) return seconds ? `${minutes}m ${seconds}s` : `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 ? `${hours}h ${minutes % 60}m` : `${hours}h`;
  return `${Math.floor(hours / 24)}d`;
}

/** "3m ago" from an ISO time, against `now`. */
export function formatAge(iso: string | null, now: number): string {
  if (!iso) return "–";
  const ms = now - Date.parse(iso);
  return ms < 1000 ? "just now" : `${formatDuration(ms)} ago`;
}

export function formatSize(bytes: number): string {
  return formatSizeWith(bytes, " ");
}

export function formatTime(iso: string | null): string {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

/** How long something ran: start to end, or start to now while it runs. */
export function elapsed(startedAt: string | null, finishedAt: string | null, now: number): number | null {
  if (!startedAt) return null;
  return (finishedAt ? Date.parse(finishedAt) : now) - Date.parse(startedAt);
}

export function shortSha(sha: string | null): string {
  return sha ? sha.slice(0, 12) : "–";
}
