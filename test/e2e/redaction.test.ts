/**
 * A step prints its secret in every usual encoding, split across writes, into its log, a diff
 * and an output file: the secret shows nowhere.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { secretForms } from "../../src/executor/redactor.ts";
import { makeRepo, startCluster, waitForJob, type Cluster } from "../helpers/cluster.ts";

const SECRET = "pa55/word+with=odd&chars";

/** Shell that prints `text` in pieces with pauses, so the secret straddles output chunks. */
function printSplit(text: string): string {
  const third = Math.ceil(text.length / 3);
  const pieces = [text.slice(0, third), text.slice(third, 2 * third), text.slice(2 * third)];
  return pieces.map((piece) => `printf '%s' '${piece.replace(/'/g, "'\\''")}'; sleep 0.2`).join("; ");
}

describe("secret redaction", () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster();
    await cluster.api.addRepository("acme/secrets", await makeRepo(join(cluster.dir, "repo"), { "README.md": "readme\n" }));
  });
  after(async () => {
    await cluster.close();
  });

  it("keeps a secret out of logs and artifacts in every encoding, also when split across writes", async () => {
    const encodings = {
      raw: SECRET,
      base64: Buffer.from(SECRET).toString("base64"),
      base64shift1: Buffer.from(`x${SECRET}`).toString("base64"),
      base64shift2: Buffer.from(`xy${SECRET}`).toString("base64"),
      url: encodeURIComponent(SECRET),
      json: JSON.stringify({ password: SECRET }),
    };
    const commands = Object.entries(encodings).flatMap(([name, text]) => [`printf '${name}: '`, printSplit(text), "echo"]);
    commands.push('echo "from env: $DB_PASSWORD"', 'echo "$DB_PASSWORD" > leaked.txt', 'printf "%s" "$DB_PASSWORD" | base64 > leaked.b64');
    const submitted = await cluster.api.submit({
      repository: "acme/secrets",
      isolation: "none",
      secrets: { DB_PASSWORD: SECRET },
      steps: [{ key: "leak", commands }],
      outputs: { diff: true, paths: ["leaked.txt", "leaked.b64"] },
    });
    const job = await waitForJob(cluster.api, submitted.id);
    assert.equal(job.state, "completed", job.failureMessage ?? "");
    const log = (await cluster.api.readLog(job.id, "leak")).toString();
    for (const name of Object.keys(encodings)) assert.match(log, new RegExp(`${name}: .*\\[REDACTED\\]`), `${name} line is present and masked`);
    const texts = {
      log,
      diff: (await cluster.api.artifactBytes(job.id, "diff")).toString(),
      "leaked.txt": (await cluster.api.artifactBytes(job.id, "leaked.txt")).toString(),
      "leaked.b64": (await cluster.api.artifactBytes(job.id, "leaked.b64")).toString(),
    };
    for (const [where, text] of Object.entries(texts)) {
      for (const form of [SECRET, ...secretForms(SECRET).map(String)]) assert.ok(!text.includes(form), `${where} contains ${form}:\n${text}`);
    }
    assert.match(texts["leaked.txt"], /\[REDACTED\]/);
    const view = JSON.stringify(await cluster.api.getJob(job.id));
    assert.ok(!view.includes(SECRET), "the job view masks secret values");
  });
});
