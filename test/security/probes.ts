/**
 * The probe table: each row names one promise, and judges from what the jobs printed and what
 * the host shows afterwards whether it held. A verdict says what broke, in words a reviewer can
 * check against the logs.
 */
import type { JobView } from "../../src/protocol/index.ts";
import { LINK_OUTPUTS, type ProbeContext } from "./scripts.ts";
import type { ProbeTarget } from "./targets.ts";

export interface HostFacts {
  hostname: string;
  /** The host's /etc/shadow root line, when readable. */
  shadowLine: string | undefined;
  tokens: string[];
  /** Paths of the host a step must never see named (data dirs, the checkout, the images). */
  paths: string[];
  /** MAC addresses, product UUID, machine id of the host. */
  identifiers: string[];
}

export interface Evidence {
  target: ProbeTarget;
  context: ProbeContext;
  host: HostFacts;
  explore: { job: JobView; logs: Record<string, string>; diff: string; artifacts: Record<string, Buffer> };
  checker: { job: JobView; logs: Record<string, string>; otherWorkspace: string };
  files: { job: JobView; log: string; touched: string[] };
  hostSleepers: string[];
  leftovers: string[];
  plantedOnHost: string[];
  gitMarkersFound: string[];
  /** The host lists its own abstract socket in /proc/net/unix (the probe's method works). */
  abstractListedOnHost: boolean;
  cli: { logs: string; diff: string };
  web: { pwned: unknown; injected: number; dialogs: string[] } | { skip: string } | { failed: string };
}

export type Verdict = { holds: true; detail?: string } | { holds: false; detail: string } | { skip: string };

export interface Probe {
  id: string;
  title: string;
  check(evidence: Evidence): Verdict;
}

const ESC = "\u001b";

function section(log: string, name: string): string {
  const start = log.indexOf(`==${name}\n`);
  if (start < 0) return "";
  const rest = log.slice(start + name.length + 3);
  const end = rest.search(/^==[a-z]+$/m);
  return end < 0 ? rest : rest.slice(0, end);
}

/** The first of `needles` found in `haystack`, as a verdict. */
function noneOf(haystack: string, needles: (string | undefined)[], what: string): Verdict {
  for (const needle of needles) {
    if (needle && haystack.includes(needle)) return { holds: false, detail: `${what}: ${JSON.stringify(needle.slice(0, 80))}` };
  }
  return { holds: true };
}

function all(...verdicts: Verdict[]): Verdict {
  return verdicts.find((verdict) => "holds" in verdict && !verdict.holds) ?? { holds: true };
}

/** Escape sequences other than colours (SGR), and C0/C1 controls other than tab, newline, CR. */
export function liveControls(text: string): string[] {
  const found: string[] = [];
  const pattern = new RegExp(`${ESC}\\[[0-9;]*m|[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]`, "g");
  for (const match of text.matchAll(pattern)) if (!match[0].endsWith("m") || match[0].length === 1) found.push(JSON.stringify(text.slice(match.index, match.index + 12)));
  return found;
}

export const PROBES: Probe[] = [
  {
    id: "host-files",
    title: "host files: /etc/shadow, coordinator and executor data dirs, tokens",
    check: ({ explore, host, context }) =>
      noneOf(explore.logs["host-files"] ?? "", [host.shadowLine, ...host.tokens, context.nonce, "host-secret.txt", "api-token", "executor-token"], "the step read"),
  },
  {
    id: "other-workspace",
    title: "another running job's workspace",
    check: ({ checker, context }) => noneOf(checker.logs["other-job"] ?? "", [`OTHER-JOB-${context.nonce}`, "other-job-marker.txt"], "the step saw the other job's workspace"),
  },
  {
    id: "proc-host-paths",
    title: "host paths in any process's cmdline or environ (/proc/*)",
    check: ({ explore, host }) => {
      const log = explore.logs.proc ?? "";
      return all(noneOf(section(log, "cmdline"), host.paths, "a process's cmdline names"), noneOf(section(log, "environ"), [...host.paths, ...host.tokens], "a process's environment holds"));
    },
  },
  {
    id: "hostname",
    title: "the host's hostname, MAC addresses, machine id (/proc, /sys)",
    check: ({ explore, host }) => {
      const log = explore.logs.proc ?? "";
      const names = section(log, "hostname").split("\n").map((line) => line.trim());
      if (names.includes(host.hostname)) return { holds: false, detail: `the step saw the host's hostname ${host.hostname}` };
      return noneOf(section(log, "sys"), host.identifiers, "the step read a host identifier");
    },
  },
  {
    id: "mountinfo",
    title: "host paths in /proc/self/mountinfo",
    check: ({ explore, host }) => noneOf(section(explore.logs.proc ?? "", "mountinfo"), host.paths, "mountinfo names"),
  },
  {
    id: "host-loopback",
    title: "a service on the host's 127.0.0.1",
    check: ({ explore }) => noneOf(explore.logs.network ?? "", ["HOST-SERVICE-REACHED"], "the step reached the host's loopback service"),
  },
  {
    id: "docker-socket",
    title: "the Docker socket (or containerd's)",
    check: ({ explore }) => noneOf(section(explore.logs.network ?? "", "sockets"), ["docker.sock", "containerd.sock"], "the step found"),
  },
  {
    id: "abstract-socket",
    title: "a host process's abstract unix socket",
    check: ({ explore, context, abstractListedOnHost }) =>
      abstractListedOnHost
        ? noneOf(section(explore.logs.network ?? "", "abstract"), [context.abstractName], "the host's abstract socket is listed in the sandbox")
        : { skip: "the host's /proc/net/unix does not list the test's abstract socket, so its absence in the sandbox proves nothing" },
  },
  {
    id: "persistence",
    title: "files planted in /, /tmp, /etc, /dev/shm, /var/tmp, /bin reach the next job or the image",
    check: ({ checker, plantedOnHost }) => {
      const found = (checker.logs.persisted ?? "").split("\n").filter((line) => line.startsWith("FOUND"));
      if (found.length > 0) return { holds: false, detail: `the next job found what the first planted: ${found.join("; ")}` };
      if (plantedOnHost.length > 0) return { holds: false, detail: `planted files are on the host: ${plantedOnHost.join(", ")}` };
      return { holds: true };
    },
  },
  {
    id: "outlive-step",
    title: "processes outliving their step (setsid, double fork, nohup, ignored signals)",
    check: ({ explore }) => {
      const log = explore.logs["after-plant"] ?? "";
      return log.includes("NO-SLEEPERS") ? { holds: true } : { holds: false, detail: `still running in the next step: ${log.trim().slice(0, 300)}` };
    },
  },
  {
    id: "outlive-job",
    title: "processes outliving their job (the host's process table)",
    check: ({ target, hostSleepers, checker }) => {
      if (hostSleepers.length > 0) return { holds: false, detail: `on the host after the job: ${hostSleepers.join("; ")}` };
      if (!(checker.logs.persisted ?? "").includes("NO-SLEEPERS")) return { holds: false, detail: "the next job's sandbox still runs them" };
      return { holds: true, detail: target.hostVisibleProcesses ? undefined : "the sandbox's processes live in its kernel: leftovers checks that it is gone" };
    },
  },
  {
    id: "leftovers",
    title: "containers, VMs or cgroups left behind",
    check: ({ leftovers }) => (leftovers.length === 0 ? { holds: true } : { holds: false, detail: leftovers.join("; ") }),
  },
  {
    id: "links-outputs",
    title: "symlinks and hard links as outputs.paths (read outside the workspace)",
    check: ({ explore, host, context }) => {
      for (const path of LINK_OUTPUTS) {
        const bytes = explore.artifacts[path];
        if (!bytes) continue;
        const verdict = noneOf(bytes.toString("utf8"), [host.shadowLine, `HOST-SECRET-${context.nonce}`, "root:"], `artifact ${path} holds`);
        if (!("holds" in verdict) || !verdict.holds) return verdict;
      }
      return { holds: true };
    },
  },
  {
    id: "links-files",
    title: "`files:` written through a symlink in the repository",
    check: ({ files }) => {
      if (files.touched.length > 0) return { holds: false, detail: `the executor wrote outside the workspace: ${files.touched.join(", ")}` };
      if (files.job.state === "completed") return { holds: false, detail: "the job completed: the write through the link was not refused" };
      return /refusing to write/.test(files.log) ? { holds: true } : { holds: false, detail: `no refusal in the log: ${files.log.slice(-300)}` };
    },
  },
  {
    id: "links-diff",
    title: "symlinks in the diff (the executor reads their targets)",
    check: ({ explore, host, context }) => noneOf(explore.diff, [host.shadowLine, `HOST-SECRET-${context.nonce}`], "the diff holds"),
  },
  {
    id: "git-tamper",
    title: ".git hooks, core.fsmonitor, filters, .gitattributes, diff.external, core.pager when the diff is made",
    check: ({ gitMarkersFound, explore }) => {
      if (gitMarkersFound.length > 0) return { holds: false, detail: `git ran the job's commands on the host: ${gitMarkersFound.join(", ")}` };
      return explore.job.state === "completed" && explore.diff.length > 0 ? { holds: true } : { holds: false, detail: `no diff was made (${explore.job.state}: ${explore.job.failureMessage ?? ""})` };
    },
  },
  {
    id: "repo-cache",
    title: "the executor's repository cache, through objects in the workspace's .git",
    check: ({ explore, checker }) => {
      if (!(explore.logs.workspace ?? "").includes("objects-overwritten")) return { holds: false, detail: "the probe did not overwrite the workspace's git objects" };
      const prepare = checker.logs.prepare ?? "";
      if (/rebuilding the mirror|checkout failed/.test(prepare)) return { holds: false, detail: `the next job found the cache corrupted: ${prepare.slice(-200)}` };
      return /checked out probe\/repo/.test(prepare) ? { holds: true } : { holds: false, detail: `the next job did not check out: ${prepare.slice(-200)}` };
    },
  },
  {
    id: "git-gitdir",
    title: "a .git file pointing at a host repository (read outside via the diff)",
    check: ({ explore, context }) => noneOf(explore.diff, [context.otherRepoHead], "the diff holds the host repository's HEAD"),
  },
  {
    id: "escapes-cli",
    title: "terminal escapes in `airlock jobs logs` and `jobs diff`",
    check: ({ cli }) => {
      const logs = liveControls(cli.logs);
      if (!cli.logs.includes("ESC-PROBE")) return { holds: false, detail: "the probe's output is missing from `airlock jobs logs`" };
      if (logs.length > 0) return { holds: false, detail: `\`airlock jobs logs\` printed live control sequences: ${logs.slice(0, 4).join(" ")}` };
      const diff = liveControls(cli.diff);
      return diff.length > 0 ? { holds: false, detail: `\`airlock jobs diff\` printed live control sequences: ${diff.slice(0, 4).join(" ")}` } : { holds: true };
    },
  },
  {
    id: "escapes-web",
    title: "HTML and escapes in logs and file names, in the web UI (Chromium)",
    check: ({ web }) => {
      if ("skip" in web) return { skip: web.skip };
      if ("failed" in web) return { holds: false, detail: web.failed };
      if (web.pwned !== undefined && web.pwned !== null) return { holds: false, detail: `a script from the job ran in the page (window.__pwned = ${JSON.stringify(web.pwned)})` };
      if (web.dialogs.length > 0) return { holds: false, detail: `dialogs opened: ${web.dialogs.join(", ")}` };
      return web.injected === 0 ? { holds: true } : { holds: false, detail: `${web.injected} elements from the job's output were parsed as HTML` };
    },
  },
];
