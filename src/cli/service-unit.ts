/**
 * systemd units for a coordinator (`airlock server`) and an executor (`airlock executor run`).
 * Both run as a dedicated user under ProtectSystem=strict, writing only their data dirs, and stop
 * with one SIGTERM to the main process (KillMode=mixed): a coordinator closes, an executor drains
 * (no new jobs; running ones finish, each within --max-runtime), and only what is left when
 * TimeoutStopSec runs out is killed. The executor keeps what its runtimes need: user namespaces
 * and a delegated cgroup (bwrap, microvm), the Docker socket's group (docker, gvisor), /dev/kvm's
 * group (microvm). See docs/deploy.md.
 */

export type ServiceRole = "server" | "executor";

export interface UnitSpec {
  role: ServiceRole;
  /** The airlock launcher ExecStart runs. */
  exec: string;
  /** The flags after `server` or `executor run`, passed through unchanged. */
  args: readonly string[];
  user: string;
  group: string;
  /** StateDirectory= (under /var/lib), made and owned for the user by systemd. */
  stateDirectory: string;
  /** Directories written besides the state directory (a --data or --workspace-root elsewhere). */
  readWritePaths: readonly string[];
  workingDirectory: string;
  /** Optional file of KEY=value lines (secrets: tokens, the database URL), read by systemd as root. */
  environmentFile: string;
  timeoutStopSec: number;
  /** Groups for devices and sockets the runtimes use (docker, kvm), only those that exist. */
  supplementaryGroups: readonly string[];
  /** Whether the runtimes need a delegated cgroup subtree (bwrap and microvm limits). */
  delegateCgroup: boolean;
  /** False only when bwrap is setuid on this host: no_new_privs would stop it. */
  noNewPrivileges: boolean;
  /** Notes written into the unit as comments (why something is as it is). */
  notes: readonly string[];
}

/** Quotes one ExecStart word: systemd splits on spaces, expands `%` specifiers and `$` variables. */
export function systemdQuote(word: string): string {
  const escaped = word.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll("\\", "\\\\").replaceAll('"', '\\"')}"`;
}

const COMMON_HARDENING = [
  "ProtectSystem=strict",
  "ProtectHome=read-only",
  "PrivateTmp=yes",
  "ProtectKernelModules=yes",
  "ProtectKernelLogs=yes",
  "ProtectClock=yes",
  "ProtectHostname=yes",
  "RestrictRealtime=yes",
  "RestrictSUIDSGID=yes",
  "LockPersonality=yes",
  "UMask=0077",
];

/** The coordinator runs no sandbox: it may give up far more. */
const SERVER_HARDENING = [
  "PrivateDevices=yes",
  "ProtectKernelTunables=yes",
  "ProtectControlGroups=yes",
  "RestrictNamespaces=yes",
  "CapabilityBoundingSet=",
  "AmbientCapabilities=",
  "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
  "SystemCallArchitectures=native",
];

export function renderUnit(spec: UnitSpec): string {
  const server = spec.role === "server";
  const lines: string[] = [
    "# Written by `airlock " + (server ? "server" : "executor") + " install service`; docs/deploy.md explains each setting.",
    ...spec.notes.map((note) => `# ${note}`),
    "[Unit]",
    server ? "Description=Airlock coordinator" : "Description=Airlock executor",
    "Documentation=file://" + spec.exec.replace(/\/bin\/airlock$/, "/docs/deploy.md"),
    "Wants=network-online.target",
    server ? "After=network-online.target postgresql.service" : "After=network-online.target docker.service",
    "",
    "[Service]",
    "Type=exec",
    `ExecStart=${[spec.exec, ...(server ? ["server"] : ["executor", "run"]), ...spec.args].map(systemdQuote).join(" ")}`,
    ...(server ? ["# SIGHUP reads the token files again (rotation without a restart).", "ExecReload=/bin/kill -HUP $MAINPID"] : []),
    `EnvironmentFile=-${spec.environmentFile}`,
    `User=${spec.user}`,
    `Group=${spec.group}`,
    ...(spec.supplementaryGroups.length > 0 ? [`SupplementaryGroups=${spec.supplementaryGroups.join(" ")}`] : []),
    `StateDirectory=${spec.stateDirectory}`,
    "StateDirectoryMode=0700",
    ...(spec.readWritePaths.length > 0 ? [`ReadWritePaths=${spec.readWritePaths.join(" ")}`] : []),
    `WorkingDirectory=${spec.workingDirectory}`,
    ...(spec.delegateCgroup ? ["# bwrap and microvm put each job in a cgroup of their own, under this delegated subtree.", "Delegate=yes"] : []),
    spec.noNewPrivileges ? "NoNewPrivileges=yes" : "# NoNewPrivileges is off: bwrap is setuid on this host and no_new_privs would stop it.",
    ...COMMON_HARDENING,
    ...(server ? SERVER_HARDENING : []),
    "Restart=on-failure",
    "RestartSec=10s",
    "# Exit status 2 is a configuration error: restarting would not help.",
    "RestartPreventExitStatus=2",
    "KillSignal=SIGTERM",
    "# SIGTERM to the main process only: the " + (server ? "coordinator closes" : "executor drains (running jobs finish; none are taken)") + ", then whatever is left is killed.",
    "KillMode=mixed",
    `TimeoutStopSec=${spec.timeoutStopSec}s`,
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ];
  return lines.join("\n");
}
