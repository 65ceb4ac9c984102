/**
 * What the adversarial jobs run. Every value a probe looks for later is unique to the run (a
 * nonce), so nothing found can come from anywhere else. Each command tolerates failure (`|| true`):
 * a refused attempt is the expected outcome, and the next probe must still run.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";

export interface ProbeContext {
  nonce: string;
  /** The cluster's temporary dir (coordinator and executor data, host secrets). */
  dir: string;
  dataDirs: string[];
  hostSecretFile: string;
  hostSecretDir: string;
  hostPort: number;
  abstractName: string;
  /** Unusual sleep durations: each identifies one way of outliving a step. */
  sleeps: { setsid: number; doubleFork: number; nohup: number; trapped: number };
  /** Host files that only host-side code run by git could create. */
  gitMarkers: string[];
  /** A repository on the host a `.git` file in the workspace points at. */
  otherRepo: string;
  /** Its HEAD commit (set once the repository is made). */
  otherRepoHead: string;
}

export function probeContext(dir: string, dataDirs: string[], hostPort: number): ProbeContext {
  const nonce = randomBytes(6).toString("hex");
  const base = 40_000 + Math.floor(Math.random() * 40_000);
  const marker = (name: string) => join(dir, `git-ran-${name}-${nonce}`);
  return {
    nonce,
    dir,
    dataDirs,
    hostSecretFile: join(dir, "host-secret", "host-secret.txt"),
    hostSecretDir: join(dir, "host-secret"),
    hostPort,
    abstractName: `airlock-probe-${nonce}`,
    sleeps: { setsid: base + 1, doubleFork: base + 2, nohup: base + 3, trapped: base + 4 },
    gitMarkers: ["fsmonitor", "pager", "ssh", "editor", "diffext", "clean", "smudge", "process", "textconv", "diffcmd", "hook", "nested"].map(marker),
    otherRepo: join(dir, "other-host-repo"),
    otherRepoHead: "",
  };
}

const markerOf = (context: ProbeContext, name: string) => context.gitMarkers.find((path) => path.includes(`git-ran-${name}-`)) ?? "";

/** `echo BASE64 | base64 -d > PATH`: exact bytes, whatever quotes they hold. */
function writeFile(path: string, content: string, append = false): string {
  return `echo ${Buffer.from(content).toString("base64")} | base64 -d ${append ? ">>" : ">"} ${path} || true`;
}

export function hostFilesCommands(context: ProbeContext): string[] {
  return [
    "cat /etc/shadow 2>/dev/null | head -c 400 || true",
    ...[...context.dataDirs, context.dir, context.hostSecretDir].map((dir) => `ls -laR ${dir} 2>/dev/null | head -n 50; cat ${dir}/* ${dir}/*/* 2>/dev/null | head -c 4000 || true`),
    `cat ${context.hostSecretFile} 2>/dev/null || true`,
  ];
}

export function procCommands(): string[] {
  return [
    "echo ==cmdline; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done",
    "echo ==environ; for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done",
    "echo ==hostname; hostname 2>/dev/null || true; cat /proc/sys/kernel/hostname 2>/dev/null || true; uname -n",
    "echo ==sys; cat /sys/class/net/*/address /sys/devices/virtual/dmi/id/product_uuid /sys/class/dmi/id/product_uuid /etc/machine-id 2>/dev/null || true",
    "echo ==mountinfo; cat /proc/self/mountinfo 2>/dev/null || true",
  ];
}

export function networkCommands(context: ProbeContext): string[] {
  return [
    `wget -q -T 3 -O - http://127.0.0.1:${context.hostPort}/ 2>/dev/null || true`,
    `nc -w 3 127.0.0.1 ${context.hostPort} </dev/null 2>/dev/null || true`,
    `nc -w 3 localhost ${context.hostPort} </dev/null 2>/dev/null || true`,
    "echo ==sockets; ls -la /var/run/docker.sock /run/docker.sock /run/containerd/containerd.sock /var/run/docker 2>/dev/null || true",
    "find / -type s 2>/dev/null | grep -v '^/proc/' || true",
    // Abstract unix sockets belong to a network namespace: one listed here is one a step can reach.
    "echo ==abstract; cat /proc/net/unix 2>/dev/null | grep -F airlock-pro''be || echo none-listed",
  ];
}

const PLANT_DIRS = ["/", "/tmp", "/etc", "/dev/shm", "/var/tmp", "/bin", "/root", "/run"];

export function plantCommands(context: ProbeContext): string[] {
  const { sleeps } = context;
  return [
    ...PLANT_DIRS.map((dir) => `echo planted > ${join(dir, `planted-${context.nonce}`)} 2>/dev/null && echo "planted in ${dir}" || true`),
    `setsid sleep ${sleeps.setsid} >/dev/null 2>&1 </dev/null &`,
    `( ( sleep ${sleeps.doubleFork} >/dev/null 2>&1 </dev/null & ) & )`,
    `nohup sleep ${sleeps.nohup} >/dev/null 2>&1 </dev/null &`,
    `setsid sh -c 'trap "" HUP TERM INT; sleep ${sleeps.trapped}' >/dev/null 2>&1 </dev/null &`,
    "echo PLANT-DONE",
  ];
}

/** Lists the step's planted sleepers, without matching its own grep (`sle[e]p`). */
export function sleepersCommand(context: ProbeContext): string {
  const numbers = Object.values(context.sleeps).join("|");
  return `for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -E 'sle[e]p (${numbers})' || echo NO-SLEEPERS`;
}

export function plantedCheckCommands(context: ProbeContext): string[] {
  return [...PLANT_DIRS.map((dir) => `cat ${join(dir, `planted-${context.nonce}`)} 2>/dev/null && echo "FOUND in ${dir}" || true`), sleepersCommand(context)];
}

/** The output paths the workspace step makes into links. */
export const LINK_OUTPUTS = ["link-shadow", "link-secret", "link-root/etc/passwd", "link-dir/host-secret.txt", "hard-image", "hard-shadow"];

export function workspaceCommands(context: ProbeContext): string[] {
  const hook = (name: string) => `#!/bin/sh\ntouch ${markerOf(context, "hook")}-${name}\n`;
  const config = [
    "[core]",
    `\tfsmonitor = "touch ${markerOf(context, "fsmonitor")}; false"`,
    "\thooksPath = /work/evil-hooks",
    `\tpager = touch ${markerOf(context, "pager")}`,
    `\tsshCommand = touch ${markerOf(context, "ssh")}`,
    `\teditor = touch ${markerOf(context, "editor")}`,
    "\tattributesFile = /work/evil-attributes",
    "[diff]",
    `\texternal = touch ${markerOf(context, "diffext")}`,
    '[filter "evil"]',
    `\tclean = touch ${markerOf(context, "clean")}`,
    `\tsmudge = touch ${markerOf(context, "smudge")}`,
    `\tprocess = touch ${markerOf(context, "process")}`,
    '[diff "evil"]',
    `\ttextconv = touch ${markerOf(context, "textconv")}`,
    `\tcommand = touch ${markerOf(context, "diffcmd")}`,
    "",
  ].join("\n");
  const hooks = ["pre-commit", "post-checkout", "post-index-change", "pre-auto-gc", "fsmonitor-watchman", "reference-transaction", "pre-push"];
  return [
    "ln -s /etc/shadow link-shadow || true",
    `ln -s ${context.hostSecretFile} link-secret || true`,
    "ln -s / link-root || true",
    `ln -s ${context.hostSecretDir} link-dir || true`,
    "ln /etc/airlock-image hard-image 2>/dev/null || echo 'hard link to the image refused'",
    "ln /etc/shadow hard-shadow 2>/dev/null || echo 'hard link to /etc/shadow refused'",
    // Poison every object of the workspace's git dir: the executor's repository cache must not share them.
    "for f in $(find .git/objects -type f); do chmod u+w $f; echo CORRUPT > $f; done; echo objects-overwritten",
    writeFile(".git/config", config, true),
    "mkdir -p .git/hooks evil-hooks",
    ...hooks.flatMap((name) => [writeFile(`.git/hooks/${name}`, hook(name)), writeFile(`evil-hooks/${name}`, hook(name)), `chmod +x .git/hooks/${name} evil-hooks/${name}`]),
    writeFile(".gitattributes", "* filter=evil diff=evil merge=evil\n"),
    writeFile("evil-attributes", "* filter=evil diff=evil\n"),
    // An embedded repository with its own hostile config, and a .git file pointing at a host repository.
    "mkdir -p nested/.git/refs/heads nested/.git/objects pointer",
    writeFile("nested/.git/HEAD", "ref: refs/heads/main\n"),
    writeFile("nested/.git/refs/heads/main", `${"1".repeat(40)}\n`),
    writeFile("nested/.git/config", `[core]\n\trepositoryformatversion = 0\n\tfsmonitor = touch ${markerOf(context, "nested")}\n`),
    "echo nested > nested/file.txt",
    writeFile("pointer/.git", `gitdir: ${join(context.otherRepo, ".git")}\n`),
    "echo pointer > pointer/file.txt",
    // Terminal escapes and HTML in the log and in file names.
    "printf 'ESC-PROBE \\033]0;TITLE-PWNED\\007 \\033[2J\\033[H \\033]52;c;cHduZWQ=\\007 \\033P+q\\033\\\\ \\233 31m \\033[31mred\\033[0m <script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> END\\n'",
    "touch '<img src=x onerror=window.__pwned=3>.txt' \"$(printf 'esc-\\033]0;NAME-PWNED\\007-name.txt')\" || true",
    "echo '<script>window.__pwned=4</script>' > html.txt",
    "printf 'DIFF-ESC \\033]0;DIFF-PWNED\\007 \\033[2J end\\n' > escapes-in-content.txt",
  ];
}
