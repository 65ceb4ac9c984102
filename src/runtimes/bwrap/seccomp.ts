/**
 * The seccomp filter every bwrap step runs under: a classic-BPF program (what `bwrap --seccomp`
 * loads) that refuses the system calls a job never needs, the ones that reach past the sandbox
 * into the kernel or the host: loading kernel modules, mounting (bwrap has built the mounts
 * before the filter applies), tracing other processes, the kernel keyring, eBPF, perf events,
 * kexec and reboot, swap, userfaultfd, file handles, clocks, new namespaces, io_uring.
 * Refused calls fail with EPERM; clone3 fails with ENOSYS so that libc falls back to clone,
 * whose namespace flags are checked. A call made through another ABI (32-bit, x32) ends the
 * process: the table below only knows the native numbers.
 */

/** Calls refused with EPERM, by name. */
export const BLOCKED_SYSCALLS = [
  // kernel modules
  "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module",
  // mounts (bwrap has set them up before the filter applies)
  "mount", "umount2", "pivot_root", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "chroot",
  // other processes' memory
  "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
  // kernel keyring, eBPF, perf
  "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "lookup_dcookie", "fanotify_init",
  // the machine itself
  "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog", "vhangup",
  "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", "nfsservctl", "uselib", "_sysctl",
  // memory tricks used by kernel exploits
  "userfaultfd", "migrate_pages", "move_pages",
  // file handles (open_by_handle_at escapes bind mounts)
  "open_by_handle_at", "name_to_handle_at",
  // namespaces
  "setns", "unshare",
  // io_uring bypasses the filter for the operations it queues
  "io_uring_setup", "io_uring_enter", "io_uring_register",
] as const;

type SyscallName = (typeof BLOCKED_SYSCALLS)[number] | "clone" | "clone3";

interface ArchTable {
  /** AUDIT_ARCH_* as seen in seccomp_data.arch. */
  audit: number;
  /** Native call numbers at or above this are another ABI (x32); undefined when there is none. */
  foreignAbiFrom?: number;
  numbers: Partial<Record<SyscallName, number>>;
}

// Numbers from the kernel's uapi headers (asm/unistd_64.h, asm-generic/unistd.h). Calls added
// since Linux 5.1 share one number on every architecture.
const SHARED = {
  open_tree: 428, move_mount: 429, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433, mount_setattr: 442,
  io_uring_setup: 425, io_uring_enter: 426, io_uring_register: 427, clone3: 435, pidfd_getfd: 438, quotactl_fd: 443,
} as const;

const ARCHES: Record<string, ArchTable> = {
  x64: {
    audit: 0xc000003e,
    foreignAbiFrom: 0x40000000,
    numbers: {
      ...SHARED,
      init_module: 175, finit_module: 313, delete_module: 176, create_module: 174, get_kernel_syms: 177, query_module: 178,
      mount: 165, umount2: 166, pivot_root: 155, chroot: 161,
      ptrace: 101, process_vm_readv: 310, process_vm_writev: 311,
      keyctl: 250, add_key: 248, request_key: 249, bpf: 321, perf_event_open: 298, lookup_dcookie: 212, fanotify_init: 300,
      kexec_load: 246, kexec_file_load: 320, reboot: 169, swapon: 167, swapoff: 168, acct: 163, quotactl: 179, syslog: 103, vhangup: 153,
      settimeofday: 164, clock_settime: 227, clock_adjtime: 305, adjtimex: 159, iopl: 172, ioperm: 173, nfsservctl: 180, uselib: 134, _sysctl: 156,
      userfaultfd: 323, migrate_pages: 256, move_pages: 279,
      open_by_handle_at: 304, name_to_handle_at: 303,
      setns: 308, unshare: 272, clone: 56,
    },
  },
  arm64: {
    audit: 0xc00000b7,
    numbers: {
      ...SHARED,
      init_module: 105, finit_module: 273, delete_module: 106,
      mount: 40, umount2: 39, pivot_root: 41, chroot: 51,
      ptrace: 117, process_vm_readv: 270, process_vm_writev: 271,
      keyctl: 219, add_key: 217, request_key: 218, bpf: 280, perf_event_open: 241, lookup_dcookie: 18, fanotify_init: 262,
      kexec_load: 104, kexec_file_load: 294, reboot: 142, swapon: 224, swapoff: 225, acct: 89, quotactl: 60, syslog: 116, vhangup: 58,
      settimeofday: 170, clock_settime: 112, clock_adjtime: 266, adjtimex: 171, nfsservctl: 42,
      userfaultfd: 282, migrate_pages: 238, move_pages: 239,
      open_by_handle_at: 265, name_to_handle_at: 264,
      setns: 268, unshare: 97, clone: 220,
    },
  },
};

/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET | NEWTIME. */
const CLONE_NAMESPACE_FLAGS = 0x7e020080;
const EPERM = 1;
const ENOSYS = 38;

// Classic BPF opcodes (linux/bpf_common.h) and seccomp return values (linux/seccomp.h).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const JSET_K = 0x45;
const RET_K = 0x06;
const RET_KILL_PROCESS = 0x80000000;
const RET_ERRNO = 0x00050000;
const RET_ALLOW = 0x7fff0000;
// Offsets in struct seccomp_data.
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

type Label = "allow" | "eperm" | "enosys" | "kill" | "next";
interface Instruction {
  code: number;
  k: number;
  jt?: Label;
  jf?: Label;
}

export function seccompSupported(arch: string = process.arch): boolean {
  return arch in ARCHES;
}

/** The filter as bytes for `bwrap --seccomp FD` (struct sock_filter[], native byte order). */
export function buildSeccompFilter(arch: string = process.arch): Buffer {
  const table = ARCHES[arch];
  if (!table) throw new Error(`no seccomp syscall table for architecture ${arch}`);
  const body: Instruction[] = [
    { code: LD_W_ABS, k: ARCH },
    { code: JEQ_K, k: table.audit, jt: "next", jf: "kill" },
    { code: LD_W_ABS, k: NR },
  ];
  if (table.foreignAbiFrom !== undefined) body.push({ code: JGE_K, k: table.foreignAbiFrom, jt: "kill", jf: "next" });
  const blocked = [...new Set(BLOCKED_SYSCALLS.map((name) => table.numbers[name]).filter((nr): nr is number => nr !== undefined))].sort((a, b) => a - b);
  for (const nr of blocked) body.push({ code: JEQ_K, k: nr, jt: "eperm", jf: "next" });
  const clone3 = table.numbers.clone3;
  if (clone3 !== undefined) body.push({ code: JEQ_K, k: clone3, jt: "enosys", jf: "next" });
  const clone = table.numbers.clone;
  if (clone !== undefined) {
    body.push({ code: JEQ_K, k: clone, jt: "next", jf: "allow" });
    body.push({ code: LD_W_ABS, k: ARG0_LOW });
    body.push({ code: JSET_K, k: CLONE_NAMESPACE_FLAGS, jt: "eperm", jf: "allow" });
  }
  const tail: Record<Exclude<Label, "next">, number> = {
    allow: RET_ALLOW,
    eperm: RET_ERRNO | EPERM,
    enosys: RET_ERRNO | ENOSYS,
    kill: RET_KILL_PROCESS,
  };
  const order = Object.keys(tail) as Exclude<Label, "next">[];
  const program = Buffer.alloc((body.length + order.length) * 8);
  const target = (label: Label | undefined, index: number): number => {
    if (label === undefined || label === "next") return 0;
    // Jumps are relative to the next instruction and must fit in a byte.
    const offset = body.length + order.indexOf(label) - index - 1;
    if (offset > 255) throw new Error("seccomp filter too long for a relative jump");
    return offset;
  };
  body.forEach((instruction, index) => {
    program.writeUInt16LE(instruction.code, index * 8);
    program.writeUInt8(target(instruction.jt, index), index * 8 + 2);
    program.writeUInt8(target(instruction.jf, index), index * 8 + 3);
    program.writeUInt32LE(instruction.k >>> 0, index * 8 + 4);
  });
  order.forEach((label, offset) => {
    const at = (body.length + offset) * 8;
    program.writeUInt16LE(RET_K, at);
    program.writeUInt32LE(tail[label] >>> 0, at + 4);
  });
  return program;
}
