/**
 * The API token for this tab. Session storage: it lives as long as the tab, is never shared with
 * other tabs or written to disk as a cookie, and is sent only as an Authorization header.
 */
const KEY = "airlock.apiToken";

export function readToken(): string | null {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function saveToken(token: string): void {
  sessionStorage.setItem(KEY, token);
}

export function clearToken(): void {
  sessionStorage.removeItem(KEY);
}
