/**
 * The two batch routes the local mode needs: resolve (what a preview would run) and upload (the
 * results, stored as a new version). The replies are validated with the protocol's schemas.
 */
import { readFileSync } from "node:fs";
import { HttpClient } from "../../common/http-client.ts";
import { fromErrorBody } from "../../protocol/index.ts";
import { BatchView, ResolvedBatch, type BatchUpload } from "../../protocol/batch.ts";

export class BatchLocalApi {
  readonly url: string;
  private readonly token: string;
  private readonly http: HttpClient;

  constructor(options: { url: string; token: string; caPath: string | undefined }) {
    this.url = options.url.replace(/\/+$/, "");
    this.token = options.token;
    this.http = new HttpClient({ ca: options.caPath ? readFileSync(options.caPath) : undefined });
  }

  private async post(path: string, body: unknown): Promise<unknown> {
    const response = await this.http.request({
      method: "POST",
      url: `${this.url}${path}`,
      headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      timeoutMs: 10 * 60_000,
    });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error
    }
    if (response.status >= 400) throw fromErrorBody(response.status, parsed);
    return parsed;
  }

  /** The job specs a preview of `specText` would run, one per repository/workspace; nothing is stored. */
  async resolve(specText: string): Promise<ResolvedBatch> {
    return ResolvedBatch.parse(await this.post("/api/batches/resolve", { spec: specText }));
  }

  async upload(body: BatchUpload): Promise<BatchView> {
    return BatchView.parse(await this.post("/api/batches/upload", body));
  }

  close(): void {
    this.http.close();
  }
}
