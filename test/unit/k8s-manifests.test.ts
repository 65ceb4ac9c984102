/**
 * deploy/k8s/*.yaml checked offline (no cluster runs here, and kubectl's dry run needs one for the
 * schemas): each object against the Kubernetes OpenAPI schemas (kubernetes-models' validators),
 * then as typed TypeScript literals so a misspelt or unknown field fails (the schemas allow any),
 * then against Airlock itself: the flags parse with the commands' own config parsers, images are
 * this release's, the executor and its DinD sidecar share what they must, and nothing mounts the
 * node's container runtime.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { Deployment, type IDeployment } from "kubernetes-models/apps/v1/Deployment";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { Secret, type ISecret } from "kubernetes-models/v1/Secret";
import { Service, type IService } from "kubernetes-models/v1/Service";
import { parseAllDocuments } from "yaml";
import { resolveCoordinatorConfig } from "../../src/coordinator/config.ts";
import { resolveExecutorConfig } from "../../src/executor/config.ts";
import { AIRLOCK_VERSION } from "../../src/protocol/index.ts";
import { ROOT } from "../helpers/cluster.ts";

const exec = promisify(execFile);
const DIR = join(ROOT, "deploy", "k8s");

/** kind -> the model that validates it, and the type its literal is checked against. */
const MODELS: Record<string, { model: new (data: never) => { validate(): void }; type: string; from: string }> = {
  "v1/Namespace": { model: Namespace, type: "INamespace", from: "kubernetes-models/v1/Namespace" },
  "v1/Secret": { model: Secret, type: "ISecret", from: "kubernetes-models/v1/Secret" },
  "v1/Service": { model: Service, type: "IService", from: "kubernetes-models/v1/Service" },
  "apps/v1/Deployment": { model: Deployment, type: "IDeployment", from: "kubernetes-models/apps/v1/Deployment" },
};

interface Doc {
  file: string;
  object: Record<string, unknown> & { apiVersion: string; kind: string; metadata: { name: string } };
}

/** Typechecks the objects as literals of their kinds' types; returns tsc's complaints. */
async function typecheck(dir: string, docs: Doc[]): Promise<string> {
  const lines = docs.map((doc, index) => {
    const entry = MODELS[`${doc.object.apiVersion}/${doc.object.kind}`]!;
    return `import type { ${entry.type} as T${index} } from "${entry.from}";\nexport const doc${index}: T${index} = ${JSON.stringify(doc.object, null, 2)};`;
  });
  const file = join(dir, "manifests.ts");
  await writeFile(file, `${lines.join("\n")}\n`);
  const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
  try {
    await exec(process.execPath, [tsc, "--ignoreConfig", "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext", "--target", "es2022", "--types", "node", file], { cwd: ROOT, timeout: 120_000 });
    return "";
  } catch (error) {
    return `${(error as { stdout?: string }).stdout ?? ""}${(error as { stderr?: string }).stderr ?? String(error)}`;
  }
}

/** `--key=value` args as the flags object commander would hand the config parsers. */
function flagsOf(args: readonly string[]): Record<string, string> {
  const flags: Record<string, string> = {};
  for (const arg of args) {
    const match = /^--([a-z-]+)=(.*)$/.exec(arg);
    if (!match) continue;
    flags[match[1]!.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase())] = match[2]!;
  }
  return flags;
}

describe("Kubernetes manifests (deploy/k8s)", () => {
  const docs: Doc[] = [];
  let tmp: string;

  before(async () => {
    await mkdir(join(ROOT, ".test-tmp"), { recursive: true });
    tmp = await mkdtemp(join(ROOT, ".test-tmp", "k8s-"));
    for (const file of (await readdir(DIR)).filter((name) => name.endsWith(".yaml")).sort()) {
      for (const parsed of parseAllDocuments(await readFile(join(DIR, file), "utf8"))) {
        assert.deepEqual(parsed.errors, [], `${file}: YAML errors`);
        docs.push({ file, object: parsed.toJS() as Doc["object"] });
      }
    }
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const find = (kind: string, name: string) => {
    const doc = docs.find((entry) => entry.object.kind === kind && entry.object.metadata.name === name);
    assert.ok(doc, `${kind} ${name} in deploy/k8s`);
    return doc.object;
  };

  it("holds well-formed objects of known kinds, valid against the Kubernetes schemas", () => {
    assert.deepEqual(
      docs.map((doc) => `${doc.file}: ${doc.object.kind}/${doc.object.metadata.name}`),
      ["coordinator.yaml: Deployment/airlock-coordinator", "coordinator.yaml: Service/airlock-coordinator", "executor.yaml: Deployment/airlock-executor", "namespace.yaml: Namespace/airlock", "secret.example.yaml: Secret/airlock"],
    );
    for (const doc of docs) {
      const entry = MODELS[`${doc.object.apiVersion}/${doc.object.kind}`];
      assert.ok(entry, `${doc.file}: no schema for ${doc.object.apiVersion} ${doc.object.kind}`);
      assert.doesNotThrow(() => new entry.model(doc.object as never).validate(), `${doc.file}: ${doc.object.kind} ${doc.object.metadata.name}`);
    }
    // The validators are real: a wrong type fails them.
    const broken = structuredClone(find("Deployment", "airlock-coordinator")) as unknown as IDeployment;
    (broken.spec!.template.spec!.containers[0]!.ports![0] as { containerPort: unknown }).containerPort = "seventy-seven-eighty";
    assert.throws(() => new Deployment(broken).validate(), /containerPort must be integer/);
  });

  it("has no field the Kubernetes types do not know (typechecked as literals)", async () => {
    assert.equal(await typecheck(tmp, docs), "");
    const typo = structuredClone(docs);
    const pod = (typo.find((doc) => doc.object.metadata.name === "airlock-executor")!.object as unknown as IDeployment).spec!.template.spec!;
    (pod.containers[0] as unknown as Record<string, unknown>).imagePullPolcy = "IfNotPresent";
    assert.match(await typecheck(tmp, typo), /imagePullPolcy/, "a misspelt field fails the check");
  });

  it("runs this release's images with flags the commands accept", async () => {
    const tokens = join(tmp, "tokens");
    await mkdir(tokens);
    await writeFile(join(tokens, "api-tokens"), "aat_test-token-for-the-manifest-check\n");
    await writeFile(join(tokens, "executor-tokens"), "aet_test-token-for-the-manifest-check\n");
    const local = (args: readonly string[]) => args.map((arg) => arg.replace("/etc/airlock/tokens/", `${tokens}/`));

    const coordinator = (find("Deployment", "airlock-coordinator") as unknown as IDeployment).spec!.template.spec!.containers[0]!;
    assert.equal(coordinator.image, `airlock:${AIRLOCK_VERSION}`);
    assert.equal(coordinator.args?.[0], "server");
    const server = resolveCoordinatorConfig(flagsOf(local(coordinator.args)), { AIRLOCK_DATABASE_URL: "postgres://airlock@db/airlock" });
    assert.equal(server.port, 7780);
    assert.deepEqual(server.apiTokens.files, [join(tokens, "api-tokens")]);

    const pod = (find("Deployment", "airlock-executor") as unknown as IDeployment).spec!.template.spec!;
    const executor = pod.containers.find((container) => container.name === "executor")!;
    const dind = pod.initContainers?.find((container) => container.name === "dind");
    assert.equal(executor.image, `airlock:${AIRLOCK_VERSION}`);
    assert.equal(dind?.image, `airlock-dind:${AIRLOCK_VERSION}`);
    assert.deepEqual(executor.args?.slice(0, 2), ["executor", "run"]);
    const config = resolveExecutorConfig(flagsOf(local(executor.args)), {});
    assert.equal(config.token, "aet_test-token-for-the-manifest-check", "the executor presents the first token of the Secret's list");
    assert.ok(config.urls[0]?.startsWith("http://airlock-coordinator."), "the executors reach the coordinators' Service");
    assert.ok((pod.terminationGracePeriodSeconds ?? 30) >= config.maxRuntimeMs / 1000 + 60, "the pod waits for a drain: running jobs finish");
  });

  it("gives the executor its own privileged dockerd, sharing socket and workspaces, and never the node's", () => {
    const pod = (find("Deployment", "airlock-executor") as unknown as IDeployment).spec!.template.spec!;
    const executor = pod.containers.find((container) => container.name === "executor")!;
    const dind = pod.initContainers!.find((container) => container.name === "dind")!;
    assert.equal(dind.restartPolicy, "Always", "a native sidecar: up before the executor, down after its drain");
    assert.equal(dind.securityContext?.privileged, true);
    assert.notEqual(executor.securityContext?.privileged, true, "only the sidecar is privileged");
    assert.equal(executor.securityContext?.allowPrivilegeEscalation, false);
    const mounts = (container: typeof executor) => new Map((container.volumeMounts ?? []).map((mount) => [mount.name, mount.mountPath]));
    for (const shared of ["dind-socket", "executor-data"]) {
      assert.ok(mounts(executor).get(shared), `${shared} mounted in the executor`);
      assert.equal(mounts(dind).get(shared), mounts(executor).get(shared), `${shared} at the same path in both: bind mounts resolve alike`);
    }
    const dockerHost = flagsOf(executor.args!).dockerHost ?? "";
    assert.ok(dockerHost.startsWith(`unix://${mounts(executor).get("dind-socket")}/`), `--docker-host ${dockerHost} is in the shared socket dir`);
    const volumes = pod.volumes ?? [];
    for (const container of [executor, dind]) {
      for (const name of mounts(container).keys()) assert.ok(volumes.some((volume) => volume.name === name), `volume ${name} is defined`);
    }
    assert.deepEqual(volumes.filter((volume) => volume.hostPath), [], "no hostPath: the node's runtime socket and files are out of reach");
  });

  it("wires the Service to the coordinators and every secret reference to a key of the Secret", () => {
    const service = find("Service", "airlock-coordinator") as unknown as IService;
    const coordinator = find("Deployment", "airlock-coordinator") as unknown as IDeployment;
    const labels = coordinator.spec!.template.metadata!.labels!;
    for (const [key, value] of Object.entries(service.spec!.selector!)) assert.equal(labels[key], value, `selector ${key}`);
    const secret = find("Secret", "airlock") as unknown as ISecret;
    const keys = new Set(Object.keys(secret.stringData ?? {}));
    const referenced: string[] = [];
    for (const name of ["airlock-coordinator", "airlock-executor"]) {
      const pod = (find("Deployment", name) as unknown as IDeployment).spec!.template.spec!;
      for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
        for (const env of container.env ?? []) if (env.valueFrom?.secretKeyRef) referenced.push(env.valueFrom.secretKeyRef.key);
      }
      for (const volume of pod.volumes ?? []) for (const item of volume.secret?.items ?? []) referenced.push(item.key);
    }
    assert.ok(referenced.length >= 4);
    for (const key of referenced) assert.ok(keys.has(key), `Secret key ${key}`);
    // Applied unchanged, the example accepts no token: its token lists hold only comments.
    for (const key of ["api-tokens", "executor-tokens"]) assert.match(secret.stringData![key]!, /^#[^\n]*\n$/);
  });
});
