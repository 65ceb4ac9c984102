/*
 * The Airlock guest agent: PID 1 of every microVM. It loads the kernel modules of its port and
 * says hello over the virtio-serial port named "airlock": the VM is up. Then it starts a child
 * that loads the disks' modules, moves itself onto a tmpfs root (so steps can pivot_root), and
 * serves the host, first mounting the workspace and scratch disks once the host says their file
 * systems are complete and their modules are in. With airlock.net on the kernel command line,
 * that child also loads the network driver and configures lo and eth0 (steps with a network then
 * run under the egress forwarder; see step.c and ../net.ts).
 *
 * Wire format, both ways: 1 byte type, 4 bytes big-endian length, payload (at most 1 MiB).
 *   host -> guest: 'M' mount the boot disks (their file systems are complete now),
 *                  'R' run a step (NUL-separated key=value fields), 'K' kill the running step,
 *                  'T' write the workspace as a tar onto the return disk, 'P' list processes, 'Q' power off,
 *                  'W' wait until booting is done (before a snapshot), 'N' a restored VM's clock and entropy.
 *   guest -> host: 'H' ready, 'M' disks mounted ("ok" or "error=..."), 'O'/'E' step stdout/stderr, 'X' step ended ("status=N oom=N
 *                  pids=N" or "error=..."), 'Z' tar ended ("status=N size=N"), 'P' process list,
 *                  'F' a request failed (message), 'W' / 'N' answers ("ok" or "error=...").
 *
 * States: BOOTING -> UP (hello sent) [-> QUIET ('W': saved to a snapshot, restored later, then 'N')] -> IDLE (disks mounted, on 'M') <-> RUNNING (one step at a
 * time) | TARRING. The agent is single threaded: one poll loop over the port and the pipes of the
 * current child; 'M' blocks it until the module loader (a child of its own) has the disk modules
 * in. A step runs in its own cgroup (memory.max, pids.max; killed at once with cgroup.kill), pid
 * and mount namespaces, on an overlay of its image's read-only disk with upper dirs on the scratch
 * disk, the workspace bind-mounted at /work, and a reduced capability bounding set (no SYS_ADMIN,
 * SYS_MODULE, MKNOD: it cannot mount the disks or reach the agent's port).
 */
#define _GNU_SOURCE
#include "agent.h"

static void handle(char type, char *payload, uint32_t len) {
  if (type == 'R') {
    if (current.pid) { send_text('X', "error=a step is already running"); return; }
    struct run_request req = {0};
    for (char *field = payload, *next; field < payload + len; field = next) {
      next = field + strlen(field) + 1;
      char *eq = strchr(field, '=');
      if (!eq) continue;
      *eq = 0;
      char *value = eq + 1;
      if (!strcmp(field, "lun")) req.lun = value;
      else if (!strcmp(field, "dir")) req.dir = value;
      else if (!strcmp(field, "script")) req.script = value;
      else if (!strcmp(field, "mem")) req.mem = value;
      else if (!strcmp(field, "pids")) req.pids = value;
      else if (!strcmp(field, "hostname")) req.hostname = value;
      else if (!strcmp(field, "net")) req.net = value;
      else if (!strcmp(field, "env") && req.envc < 1023) req.env[req.envc++] = value;
    }
    if (!req.lun) { send_text('X', "error=no image given"); return; }
    start_step(&req);
  } else if (type == 'M') {
    mount_disks();
  } else if (type == 'K') {
    kill_step();
  } else if (type == 'T') {
    if (current.pid) { send_text('F', "busy"); return; }
    sync();
    start_tar();
  } else if (type == 'W') {
    quiesce();
  } else if (type == 'N') {
    reseed(payload, len);
  } else if (type == 'P') {
    list_processes();
  } else if (type == 'Q') {
    sync();
    reboot(RB_POWER_OFF);
  }
}

static char inbuf[MAX_FRAME + 5];
static size_t inlen;

static void read_port(void) {
  ssize_t n = read(port, inbuf + inlen, sizeof inbuf - inlen);
  if (n <= 0) {
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    sleep_ms(10); /* host not connected: wait */
    return;
  }
  inlen += (size_t)n;
  for (;;) {
    if (inlen < 5) return;
    uint32_t len = ((uint32_t)(unsigned char)inbuf[1] << 24) | ((uint32_t)(unsigned char)inbuf[2] << 16) | ((uint32_t)(unsigned char)inbuf[3] << 8) | (unsigned char)inbuf[4];
    if (len > MAX_FRAME) die("oversized frame from the host");
    if (inlen < 5 + len) return;
    char type = inbuf[0];
    char *payload = malloc(len + 1);
    if (!payload) die("malloc");
    memcpy(payload, inbuf + 5, len);
    payload[len] = 0;
    memmove(inbuf, inbuf + 5 + len, inlen - 5 - len);
    inlen -= 5 + len;
    handle(type, payload, len);
    free(payload);
  }
}

static void forward(int *fd, char type) {
  static char buf[CHUNK];
  ssize_t n = read(*fd, buf, sizeof buf);
  if (n > 0) {
    if (current.kind == 'T' && type == 'E') {
      size_t have = strlen(current.message);
      size_t room = sizeof current.message - 1 - have;
      memcpy(current.message + have, buf, (size_t)n < room ? (size_t)n : room);
      current.message[have + ((size_t)n < room ? (size_t)n : room)] = 0;
    } else {
      send_frame(type, buf, (size_t)n);
    }
    return;
  }
  if (n < 0 && errno == EINTR) return;
  close(*fd);
  *fd = -1;
}

static void read_status(void) {
  char text[1100];
  ssize_t n = read(current.status, text, sizeof text - 1);
  if (n < 0 && errno == EINTR) return;
  if (n > 0) {
    text[n] = 0;
    if (text[0] == 'M') snprintf(current.message, sizeof current.message, "%.1000s", text + 1);
    else if (text[0] == 'S') {
      current.wait_status = atoi(text + 1);
      current.have_status = 1;
    }
    return;
  }
  close(current.status);
  current.status = -1;
}

int main(void) {
  if (getpid() != 1) {
    fprintf(stderr, "airlock-agent runs as a VM's init\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int fd = open("/proc/cmdline", O_RDONLY);
  if (fd < 0) {
    mkdir("/proc", 0555);
    mount("proc", "/proc", "proc", 0, NULL);
    fd = open("/proc/cmdline", O_RDONLY);
  }
  char cmdline[2048] = {0};
  if (fd >= 0 && read(fd, cmdline, sizeof cmdline - 1) > 0) {
    debug = strstr(cmdline, "airlock.debug") != NULL;
    network = strstr(cmdline, "airlock.net") != NULL;
  }
  if (fd >= 0) close(fd);
  umount2("/proc", MNT_DETACH);
  boot();
  send_text('H', "ready");
  start_module_loader();
  settle();
  for (;;) {
    struct pollfd fds[4] = {{port, POLLIN, 0}, {current.out, POLLIN, 0}, {current.err, POLLIN, 0}, {current.status, POLLIN, 0}};
    if (poll(fds, 4, 1000) < 0 && errno != EINTR) die("poll");
    if (fds[0].revents & POLLIN) read_port();
    if (current.out >= 0 && fds[1].revents) forward(&current.out, 'O');
    if (current.err >= 0 && fds[2].revents) forward(&current.err, 'E');
    if (current.status >= 0 && fds[3].revents) read_status();
    if (current.pid && current.out < 0 && current.err < 0 && current.status < 0) finish_child();
    pid_t reaped;
    int ws;
    while ((reaped = waitpid(-1, &ws, WNOHANG)) > 0) {
      if (reaped == current.pid) {
        current.reaped = 1;
        current.reaped_status = ws;
      } else if (reaped == loader_pid) {
        loader_pid = 0;
      }
    }
  }
}
