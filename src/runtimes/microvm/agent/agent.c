/*
 * The Airlock guest agent: PID 1 of every microVM. It loads the kernel modules the VM needs,
 * moves itself onto a tmpfs root (so steps can pivot_root), mounts the workspace and scratch
 * disks, then serves the host over the virtio-serial port named "airlock".
 *
 * Wire format, both ways: 1 byte type, 4 bytes big-endian length, payload (at most 1 MiB).
 *   host -> guest: 'M' mount the boot disks (their file systems are complete now),
 *                  'R' run a step (NUL-separated key=value fields), 'K' kill the running step,
 *                  'T' stream the workspace back as tar, 'P' list processes, 'Q' power off.
 *   guest -> host: 'H' ready, 'M' disks mounted ("ok" or "error=..."), 'O'/'E' step stdout/stderr, 'X' step ended ("status=N oom=N
 *                  pids=N" or "error=..."), 'D' tar bytes, 'Z' tar ended, 'P' process list,
 *                  'F' a request failed (message).
 *
 * States: BOOTING -> WAITING FOR DISKS -> IDLE <-> RUNNING (one step at a time) | TARRING. The agent is single
 * threaded: one poll loop over the port and the pipes of the current child. A step runs in its
 * own cgroup (memory.max, pids.max; killed at once with cgroup.kill), pid and mount namespaces,
 * on an overlay of its image's read-only disk with upper dirs on the scratch disk, the workspace
 * bind-mounted at /work, and a reduced capability bounding set (no SYS_ADMIN, SYS_MODULE, MKNOD:
 * it cannot mount the disks or reach the agent's port).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAME (1 << 20)
#define CHUNK 65536
#define CG "/sys/fs/cgroup"
#define BLKFLSBUF _IO(0x12, 97)

static int port = -1;

static void console(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "airlock-agent: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

static void die(const char *what) {
  console("fatal: %s: %s", what, strerror(errno));
  sync();
  reboot(RB_POWER_OFF);
  _exit(1);
}

static void write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("write to the host port");
    }
    p += n;
    len -= (size_t)n;
  }
}

static void send_frame(char type, const void *data, size_t len) {
  unsigned char head[5] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
  write_all(port, head, 5);
  if (len) write_all(port, data, len);
}

static void send_text(char type, const char *fmt, ...) {
  char text[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof text) n = sizeof text - 1;
  send_frame(type, text, (size_t)n);
}

static int write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, value, strlen(value));
  close(fd);
  return n < 0 ? -1 : 0;
}

static long read_counter(const char *path, const char *key) {
  char text[4096];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, text, sizeof text - 1);
  close(fd);
  if (n <= 0) return 0;
  text[n] = 0;
  size_t klen = strlen(key);
  for (char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
    if (strncmp(line, key, klen) == 0 && line[klen] == ' ') return atol(line + klen + 1);
  }
  return 0;
}

static int debug;

/* Boot stage timings on the console, with airlock.debug on the kernel command line. */
static void stage(const char *what) {
  if (!debug) return;
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  console("%ld.%03ld %s", (long)ts.tv_sec, ts.tv_nsec / 1000000, what);
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* ---- boot ---- */

/* Loads the modules listed in `list` (names under /modules), in order. */
static void load_modules(const char *list) {
  FILE *order = fopen(list, "re");
  if (!order) return;
  char name[256];
  while (fgets(name, sizeof name, order)) {
    name[strcspn(name, "\n")] = 0;
    if (!*name) continue;
    char path[512];
    snprintf(path, sizeof path, "/modules/%s", name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(path);
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) console("module %s: %s", name, strerror(errno));
    close(fd);
    unlink(path);
  }
  fclose(order);
}

static void copy_file(const char *from, const char *to, mode_t mode) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  if (in < 0) die(from);
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (out < 0) die(to);
  char buf[CHUNK];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) write_all(out, buf, (size_t)n);
  close(in);
  close(out);
}

/* The initramfs root cannot be pivoted away from; a tmpfs moved over it can. */
static void switch_to_tmpfs(void) {
  mkdir("/newroot", 0755);
  if (mount("root", "/newroot", "tmpfs", 0, "mode=0755") != 0) die("mount tmpfs root");
  mkdir("/newroot/bin", 0755);
  copy_file("/bin/busybox", "/newroot/bin/busybox", 0755);
  if (chdir("/newroot") != 0) die("chdir /newroot");
  if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("move root");
  if (chroot(".") != 0) die("chroot");
  if (chdir("/") != 0) die("chdir /");
  const char *dirs[] = {"/dev", "/proc", "/sys", "/work", "/scratch", "/images", "/steps", "/tmp"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) mkdir(dirs[i], 0755);
}

/* The virtio-blk disk whose serial is `serial` ("/dev/vdX"), waiting for the kernel to find it. */
static int virtio_disk(const char *serial, char *dev, size_t size, long timeout_ms) {
  for (long waited = 0; waited <= timeout_ms; waited += 2) {
    DIR *d = opendir("/sys/block");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (strncmp(e->d_name, "vd", 2) != 0) continue;
      char path[300], text[64] = {0};
      snprintf(path, sizeof path, "/sys/block/%s/serial", e->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t n = read(fd, text, sizeof text - 1);
      close(fd);
      if (n > 0 && strncmp(text, serial, strlen(serial)) == 0) {
        snprintf(dev, size, "/dev/%.32s", e->d_name);
        closedir(d);
        struct stat st;
        for (int i = 0; i < 500 && stat(dev, &st) != 0; i++) sleep_ms(2);
        return 0;
      }
    }
    if (d) closedir(d);
    sleep_ms(2);
  }
  return -1;
}

/* The block device of SCSI lun `lun` ("/dev/sdX"), waiting for the kernel to find it. */
static int scsi_disk(int lun, char *dev, size_t size, long timeout_ms) {
  char dir[128];
  snprintf(dir, sizeof dir, "/sys/bus/scsi/devices/0:0:0:%d/block", lun);
  for (long waited = 0; waited <= timeout_ms; waited += 2) {
    DIR *d = opendir(dir);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(dev, size, "/dev/%.32s", e->d_name);
        closedir(d);
        struct stat st;
        for (int i = 0; i < 500 && stat(dev, &st) != 0; i++) sleep_ms(2);
        return 0;
      }
      closedir(d);
    }
    sleep_ms(2);
  }
  return -1;
}

static void open_port(void) {
  for (int tries = 0; tries < 5000; tries++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[300], name[64] = {0};
        snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, name, sizeof name - 1);
        close(fd);
        if (n > 0 && strncmp(name, "airlock", 7) == 0) {
          snprintf(path, sizeof path, "/dev/%s", e->d_name);
          closedir(d);
          for (int i = 0; i < 1000; i++) {
            port = open(path, O_RDWR | O_CLOEXEC);
            if (port >= 0) return;
            sleep_ms(2);
          }
          die(path);
        }
      }
      closedir(d);
    }
    sleep_ms(2);
  }
  die("no virtio port named airlock");
}

static void boot(void) {
  stage("init");
  load_modules("/modules.boot");
  stage("modules loaded");
  /* Image disks are SCSI (hot-pluggable); their driver loads while the host prepares the first step. */
  if (fork() == 0) {
    load_modules("/modules.later");
    _exit(0);
  }
  switch_to_tmpfs();
  if (mount("dev", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0) die("mount /dev");
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount /proc");
  if (mount("sys", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount /sys");
  if (mount("cgroup2", CG, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount cgroup2");
  write_file(CG "/cgroup.subtree_control", "+memory +pids");
  if (mount("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) die("mount /tmp");
  stage("file systems mounted");
  open_port();
  stage("port open");
}

/*
 * The host writes the boot disks' file systems while the guest kernel boots, and says 'M' once
 * they are complete: only then are they mounted.
 */
/* Drops what the kernel cached of a disk (its partition scan ran before the host wrote it). */
static void forget_cached(const char *dev) {
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ioctl(fd, BLKFLSBUF, 0);
  close(fd);
}

static void mount_disks(void) {
  char dev[64];
  if (virtio_disk("airlock-work", dev, sizeof dev, 30000) != 0) { send_text('M', "error=the workspace disk is missing"); return; }
  forget_cached(dev);
  if (mount(dev, "/work", "ext4", MS_NOATIME, "noinit_itable") != 0) { send_text('M', "error=could not mount the workspace disk: %s", strerror(errno)); return; }
  rmdir("/work/lost+found");
  if (virtio_disk("airlock-scratch", dev, sizeof dev, 30000) != 0) { send_text('M', "error=the scratch disk is missing"); return; }
  forget_cached(dev);
  if (mount(dev, "/scratch", "ext4", MS_NOATIME, "noinit_itable") != 0) { send_text('M', "error=could not mount the scratch disk: %s", strerror(errno)); return; }
  stage("disks mounted");
  send_text('M', "ok");
}

/* ---- steps ---- */

struct child {
  pid_t pid;
  int out, err, status; /* pipe read ends, -1 when closed */
  char kind;            /* 'S' step, 'T' tar */
  long serial;
  char message[1024];
  int wait_status;
  int have_status;
  int reaped, reaped_status; /* the child itself, reaped by the main loop */
};

static struct child current = {.pid = 0, .out = -1, .err = -1, .status = -1};
static long step_serial;

/* Capability numbers (linux/capability.h, stable ABI; spelled out so any libc's headers do). */
enum { CAP_CHOWN = 0, CAP_DAC_OVERRIDE = 1, CAP_FOWNER = 3, CAP_FSETID = 4, CAP_KILL = 5, CAP_SETGID = 6, CAP_SETUID = 7, CAP_SETPCAP = 8,
       CAP_NET_BIND_SERVICE = 10, CAP_NET_RAW = 13, CAP_SYS_CHROOT = 18, CAP_AUDIT_WRITE = 29, CAP_SETFCAP = 31, CAP_LAST_KNOWN = 63 };

/* Capabilities a step keeps: Docker's default set less MKNOD (root in the VM, without the means to mount or reach devices). */
static const int kept_caps[] = {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_NET_RAW, CAP_SETGID, CAP_SETUID, CAP_SETFCAP,
                                CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE};

static void drop_caps(void) {
  for (int cap = 0; cap <= CAP_LAST_KNOWN; cap++) {
    int keep = 0;
    for (size_t i = 0; i < sizeof kept_caps / sizeof *kept_caps; i++) keep |= kept_caps[i] == cap;
    if (!keep) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  }
}

static void fail_child(int status_fd, const char *fmt, ...) {
  char text[1024] = "M";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text + 1, sizeof text - 1, fmt, ap);
  va_end(ap);
  if (write(status_fd, text, strlen(text)) < 0) _exit(126);
  _exit(126);
}

static void mknode(const char *path, mode_t mode, int major, int minor) {
  mknod(path, S_IFCHR | mode, makedev(major, minor));
}

/* Runs in the step's fresh pid and mount namespaces as their pid 1's parent-side setup. */
static void enter_root(const char *root, const char *dir, int status_fd) {
  char path[4200];
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail_child(status_fd, "make mounts private: %s", strerror(errno));
  snprintf(path, sizeof path, "%s/work", root);
  mkdir(path, 0755);
  if (mount("/work", path, NULL, MS_BIND | MS_REC, NULL) != 0) fail_child(status_fd, "bind the workspace: %s", strerror(errno));
  snprintf(path, sizeof path, "%s/dev", root);
  mkdir(path, 0755);
  if (mount("dev", path, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m") != 0) fail_child(status_fd, "mount /dev: %s", strerror(errno));
  const struct { const char *name; int major, minor; } nodes[] = {{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
  for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
    snprintf(path, sizeof path, "%s/dev/%s", root, nodes[i].name);
    mknode(path, 0666, nodes[i].major, nodes[i].minor);
  }
  snprintf(path, sizeof path, "%s/dev/shm", root);
  mkdir(path, 01777);
  snprintf(path, sizeof path, "%s/dev/fd", root);
  if (symlink("/proc/self/fd", path) != 0) {}
  const char *std[] = {"stdin", "stdout", "stderr"};
  for (int i = 0; i < 3; i++) {
    char target[32];
    snprintf(target, sizeof target, "/proc/self/fd/%d", i);
    snprintf(path, sizeof path, "%s/dev/%s", root, std[i]);
    if (symlink(target, path) != 0) {}
  }
  snprintf(path, sizeof path, "%s/proc", root);
  mkdir(path, 0555);
  if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail_child(status_fd, "mount /proc: %s", strerror(errno));
  snprintf(path, sizeof path, "%s/tmp", root);
  mkdir(path, 01777);
  if (chdir(root) != 0) fail_child(status_fd, "enter the root: %s", strerror(errno));
  mkdir(".old-root", 0700);
  if (syscall(SYS_pivot_root, ".", ".old-root") != 0) fail_child(status_fd, "pivot_root: %s", strerror(errno));
  if (chdir("/") != 0 || umount2("/.old-root", MNT_DETACH) != 0) fail_child(status_fd, "drop the old root: %s", strerror(errno));
  rmdir("/.old-root");
  snprintf(path, sizeof path, "/work/%s", dir);
  struct stat st;
  if (stat(path, &st) != 0) fail_child(status_fd, "step dir \"%s\" does not exist in the workspace", dir);
  if (!S_ISDIR(st.st_mode)) fail_child(status_fd, "step dir \"%s\" is not a directory", dir);
  if (chdir(path) != 0) fail_child(status_fd, "step dir \"%s\": %s", dir, strerror(errno));
  char cwd[4200];
  if (!getcwd(cwd, sizeof cwd) || (strcmp(cwd, "/work") != 0 && strncmp(cwd, "/work/", 6) != 0)) fail_child(status_fd, "step dir \"%s\" leads outside the workspace", dir);
}

struct run_request {
  char *lun, *dir, *script, *mem, *pids, *hostname;
  char *env[1024];
  int envc;
};

static int mount_image(const char *lun, char *where, size_t size) {
  snprintf(where, size, "/images/%s", lun);
  struct stat st;
  char probe[300];
  snprintf(probe, sizeof probe, "%s/.mounted", where);
  if (stat(where, &st) == 0) {
    /* mounted already when it is a mount point distinct from /images */
    struct stat parent;
    if (stat("/images", &parent) == 0 && parent.st_dev != st.st_dev) return 0;
  }
  char dev[64];
  if (scsi_disk(atoi(lun), dev, sizeof dev, 30000) != 0) {
    send_text('X', "error=the image disk (lun %s) did not appear in the VM", lun);
    return -1;
  }
  mkdir(where, 0755);
  /* A hot-plugged disk's node can appear before the kernel has read its capacity (ENXIO). */
  int rc = -1;
  for (int i = 0; i < 2500 && (rc = mount(dev, where, "ext4", MS_RDONLY | MS_NOATIME, "noload")) != 0 && (errno == ENXIO || errno == ENOENT || errno == ENODEV); i++) sleep_ms(2);
  if (rc != 0) {
    send_text('X', "error=could not mount the image disk: %s", strerror(errno));
    return -1;
  }
  return 0;
}

static void start_step(struct run_request *req) {
  char image[64];
  if (mount_image(req->lun, image, sizeof image) != 0) return;
  long serial = ++step_serial;
  char cgroup[64], upper[128], work[256], root[128], value[64];
  snprintf(cgroup, sizeof cgroup, CG "/step%ld", serial);
  snprintf(upper, sizeof upper, "/scratch/step%ld/upper", serial);
  snprintf(work, sizeof work, "/scratch/step%ld/work", serial);
  snprintf(root, sizeof root, "/steps/%ld", serial);
  mkdir(cgroup, 0755);
  snprintf(value, sizeof value, "%s", req->mem && *req->mem ? req->mem : "max");
  snprintf(work, sizeof work, "%s/memory.max", cgroup);
  write_file(work, value);
  snprintf(work, sizeof work, "%s/memory.swap.max", cgroup);
  write_file(work, "0");
  snprintf(work, sizeof work, "%s/pids.max", cgroup);
  write_file(work, req->pids && *req->pids ? req->pids : "max");
  snprintf(work, sizeof work, "/scratch/step%ld", serial);
  mkdir(work, 0755);
  mkdir(upper, 0755);
  snprintf(work, sizeof work, "/scratch/step%ld/work", serial);
  mkdir(work, 0755);
  mkdir(root, 0755);
  char options[512];
  snprintf(options, sizeof options, "lowerdir=%s,upperdir=%s,workdir=%s", image, upper, work);
  if (mount("overlay", root, "overlay", 0, options) != 0) {
    send_text('X', "error=could not mount the step's root filesystem: %s", strerror(errno));
    return;
  }
  int out[2], err[2], status[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(status, O_CLOEXEC)) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    char procs[160];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", cgroup);
    if (write_file(procs, "0") != 0) fail_child(status[1], "join the step cgroup: %s", strerror(errno));
    if (unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS) != 0) fail_child(status[1], "unshare: %s", strerror(errno));
    pid_t init = fork();
    if (init < 0) fail_child(status[1], "fork: %s", strerror(errno));
    if (init == 0) {
      /* pid 1 of the step: when it exits, the kernel kills everything else the step started. */
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      sethostname(req->hostname ? req->hostname : "airlock", strlen(req->hostname ? req->hostname : "airlock"));
      enter_root(root, req->dir ? req->dir : ".", status[1]);
      dup2(out[1], 1);
      dup2(err[1], 2);
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0);
      setsid();
      drop_caps();
      req->env[req->envc] = NULL;
      char *argv[] = {"sh", "-c", req->script ? req->script : "", NULL};
      execve("/bin/sh", argv, req->env);
      fail_child(status[1], "could not run /bin/sh in the step's image: %s", strerror(errno));
    }
    close(out[1]);
    close(err[1]);
    int ws = 0;
    while (waitpid(init, &ws, 0) < 0 && errno == EINTR) {}
    char text[32];
    snprintf(text, sizeof text, "S%d", ws);
    if (write(status[1], text, strlen(text)) < 0) _exit(1);
    _exit(0);
  }
  close(out[1]);
  close(err[1]);
  close(status[1]);
  current = (struct child){.pid = pid, .out = out[0], .err = err[0], .status = status[0], .kind = 'S', .serial = serial};
}

static void kill_step(void) {
  if (current.kind != 'S' || current.pid <= 0) return;
  char path[128];
  snprintf(path, sizeof path, CG "/step%ld/cgroup.kill", current.serial);
  write_file(path, "1");
  kill(current.pid, SIGKILL);
}

static void finish_child(void) {
  int ws = current.reaped_status;
  if (!current.reaped) while (waitpid(current.pid, &ws, 0) < 0 && errno == EINTR) {}
  if (current.kind == 'S') {
    char path[128];
    snprintf(path, sizeof path, CG "/step%ld/cgroup.kill", current.serial);
    write_file(path, "1");
    snprintf(path, sizeof path, CG "/step%ld/memory.events", current.serial);
    long oom = read_counter(path, "oom_kill");
    snprintf(path, sizeof path, CG "/step%ld/pids.events", current.serial);
    long pids = read_counter(path, "max");
    if (current.message[0]) send_text('X', "error=%s", current.message);
    else if (!current.have_status) send_text('X', "status=%d oom=%ld pids=%ld", 9, oom, pids);
    else send_text('X', "status=%d oom=%ld pids=%ld", current.wait_status, oom, pids);
    snprintf(path, sizeof path, CG "/step%ld", current.serial);
    for (int i = 0; i < 500 && rmdir(path) != 0 && errno == EBUSY; i++) sleep_ms(2);
  } else {
    send_text('Z', "status=%d %s", ws, current.message);
  }
  current = (struct child){.pid = 0, .out = -1, .err = -1, .status = -1};
}

static void start_tar(void) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(err[1], 2);
    char *argv[] = {"tar", "-c", "-C", "/work", ".", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    execve("/bin/busybox", argv, envp);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  current = (struct child){.pid = pid, .out = out[0], .err = err[0], .status = -1, .kind = 'T'};
}

static void list_processes(void) {
  char text[16384];
  size_t used = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9' || strcmp(e->d_name, "1") == 0) continue;
    char path[300], cmd[200] = {0};
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, cmd, sizeof cmd - 1);
    close(fd);
    if (n <= 0) continue; /* kernel threads */
    for (ssize_t i = 0; i < n; i++) if (!cmd[i]) cmd[i] = ' ';
    int w = snprintf(text + used, sizeof text - used, "%s %s\n", e->d_name, cmd);
    if (w < 0 || (size_t)w >= sizeof text - used) break;
    used += (size_t)w;
  }
  if (d) closedir(d);
  send_frame('P', text, used);
}

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
      send_frame(current.kind == 'T' ? 'D' : type, buf, (size_t)n);
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
  if (fd >= 0 && read(fd, cmdline, sizeof cmdline - 1) > 0) debug = strstr(cmdline, "airlock.debug") != NULL;
  if (fd >= 0) close(fd);
  umount2("/proc", MNT_DETACH);
  boot();
  send_text('H', "ready");
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
      }
    }
  }
}
