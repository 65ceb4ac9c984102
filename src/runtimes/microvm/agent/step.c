/*
 * Steps: each in its own cgroup (memory.max, pids.max; killed at once with cgroup.kill), pid,
 * mount, IPC and UTS namespaces, on an overlay of its image with upper dirs on the scratch disk,
 * the workspace bind-mounted at /work, pivoted into that root, with a reduced capability set.
 * A step with a network runs under the egress forwarder (its pid 1; it serves the proxy and DNS
 * ports on loopback, relays to the gateway's guestfwd address, and exits with the shell's
 * status), with /etc/resolv.conf naming 127.0.0.1. Also the workspace's tar and the process list.
 */
#define _GNU_SOURCE
#include "agent.h"

struct child current = {.pid = 0, .out = -1, .err = -1, .status = -1};
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

/* In the step's root (after pivot_root: an image's symlinks stay inside it), the forwarder's DNS. */
static void write_resolv_conf(int status_fd) {
  static const char text[] = "nameserver 127.0.0.1\n";
  mkdir("/etc", 0755);
  unlink("/etc/resolv.conf");
  int fd = open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0 || write(fd, text, sizeof text - 1) != (ssize_t)(sizeof text - 1)) fail_child(status_fd, "write /etc/resolv.conf: %s", strerror(errno));
  close(fd);
}

void start_step(struct run_request *req) {
  char image[64];
  int forwarder = -1;
  if (req->net && *req->net) {
    if (!network_ready()) { send_text('X', "error=the VM's network did not come up (its console says why)"); return; }
    /* Opened here, run after pivot_root: the step's root need not hold it. */
    forwarder = open(FORWARDER, O_RDONLY | O_CLOEXEC);
    if (forwarder < 0) { send_text('X', "error=the egress forwarder is missing from the VM: %s", strerror(errno)); return; }
  }
  if (mount_image(req->lun, image, sizeof image) != 0) { if (forwarder >= 0) close(forwarder); return; }
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
    if (forwarder >= 0) close(forwarder);
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
      if (forwarder >= 0) write_resolv_conf(status[1]);
      dup2(out[1], 1);
      dup2(err[1], 2);
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0);
      setsid();
      drop_caps();
      req->env[req->envc] = NULL;
      char *script = req->script ? req->script : "";
      if (forwarder >= 0) {
        char *argv[] = {"airlock-forwarder", "--tcp", req->net, "--", "/bin/sh", "-c", script, NULL};
        syscall(SYS_execveat, forwarder, "", argv, req->env, AT_EMPTY_PATH);
        fail_child(status[1], "could not run the egress forwarder: %s", strerror(errno));
      }
      char *argv[] = {"sh", "-c", script, NULL};
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
  if (forwarder >= 0) close(forwarder);
  current = (struct child){.pid = pid, .out = out[0], .err = err[0], .status = status[0], .kind = 'S', .serial = serial};
}

void kill_step(void) {
  if (current.kind != 'S' || current.pid <= 0) return;
  char path[128];
  snprintf(path, sizeof path, CG "/step%ld/cgroup.kill", current.serial);
  write_file(path, "1");
  kill(current.pid, SIGKILL);
}

void finish_child(void) {
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
    /* tar and we share the file offset: where it stopped is the archive's size. */
    long long size = (long long)lseek(current.disk, 0, SEEK_CUR);
    if (fsync(current.disk) != 0 && ws == 0) ws = -1;
    close(current.disk);
    send_text('Z', "status=%d size=%lld %s", ws, size, current.message);
  }
  current = (struct child){.pid = 0, .out = -1, .err = -1, .status = -1};
}

/* The workspace as a tar, written onto the return disk: the host reads it back as a file. */
void start_tar(void) {
  char dev[64];
  if (virtio_disk("airlock-return", dev, sizeof dev, 5000) != 0) { send_text('Z', "status=-1 the return disk is missing"); return; }
  int disk = open(dev, O_WRONLY | O_CLOEXEC);
  if (disk < 0) { send_text('Z', "status=-1 could not open the return disk: %s", strerror(errno)); return; }
  int err[2];
  if (pipe2(err, O_CLOEXEC)) die("pipe");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    dup2(disk, 1);
    dup2(err[1], 2);
    char *argv[] = {"tar", "-c", "-C", "/work", ".", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    execve("/bin/busybox", argv, envp);
    _exit(127);
  }
  close(err[1]);
  current = (struct child){.pid = pid, .out = -1, .err = err[0], .status = -1, .kind = 'T', .disk = disk};
}

void list_processes(void) {
  char text[16384];
  size_t used = 0;
  DIR *d = opendir("/proc");
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9' || strcmp(e->d_name, "1") == 0 || (loader_pid && atoi(e->d_name) == loader_pid)) continue;
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
