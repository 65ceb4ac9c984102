/* Boot: modules, the tmpfs root, the host port, the boot disks, the network. */
#define _GNU_SOURCE
#include "agent.h"

pid_t loader_pid;
int network;
/*
 * Read end of a pipe the module loader writes to: 'D' once the boot disks' modules are in; then,
 * with a network, 'N' once lo and eth0 are up ('n' when they could not be).
 */
static int loader_ready = -1;

/*
 * Loads the modules listed in `list` (names under /modules), in order. The agent and the module
 * loader may both list a module (virtio, a dependency of both the port and the disks): whoever
 * comes second waits for the first inside finit_module and gets EEXIST, or finds the file gone.
 */
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
    if (fd < 0 && errno == ENOENT) continue; /* loaded by the other loader, which removed it */
    if (fd < 0) die(path);
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) console("module %s: %s", name, strerror(errno));
    close(fd);
    stage(name);
    unlink(path);
  }
  fclose(order);
}

/*
 * The initramfs root cannot be pivoted away from; a tmpfs moved over it can. busybox (the tar of
 * the workspace's way back) and the egress forwarder, when there is one, are bind-mounted into
 * it, not copied; /dev and /sys move along.
 */
static void switch_to_tmpfs(void) {
  mkdir("/newroot", 0755);
  if (mount("root", "/newroot", "tmpfs", 0, "mode=0755") != 0) die("mount tmpfs root");
  const char *dirs[] = {"/newroot/bin", "/newroot/dev", "/newroot/proc", "/newroot/sys", "/newroot/work", "/newroot/scratch", "/newroot/images", "/newroot/steps", "/newroot/tmp"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) mkdir(dirs[i], 0755);
  int fd = open("/newroot/bin/busybox", O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
  if (fd < 0) die("/newroot/bin/busybox");
  close(fd);
  if (mount("/bin/busybox", "/newroot/bin/busybox", NULL, MS_BIND, NULL) != 0) die("bind busybox");
  struct stat st;
  if (stat(FORWARDER, &st) == 0) {
    fd = open("/newroot" FORWARDER, O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    if (fd < 0) die("/newroot" FORWARDER);
    close(fd);
    if (mount(FORWARDER, "/newroot" FORWARDER, NULL, MS_BIND, NULL) != 0) die("bind the forwarder");
  }
  if (mount("/dev", "/newroot/dev", NULL, MS_MOVE, NULL) != 0) die("move /dev");
  if (mount("/sys", "/newroot/sys", NULL, MS_MOVE, NULL) != 0) die("move /sys");
  if (chdir("/newroot") != 0) die("chdir /newroot");
  if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) die("move root");
  if (chroot(".") != 0) die("chroot");
  if (chdir("/") != 0) die("chdir /");
}

/* The virtio-blk disk whose serial is `serial` ("/dev/vdX"), waiting for the kernel to find it. */
int virtio_disk(const char *serial, char *dev, size_t size, long timeout_ms) {
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
int scsi_disk(int lun, char *dev, size_t size, long timeout_ms) {
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

/* Sets an interface's IPv4 address and netmask (when given) and brings it up. */
static int interface_up(int s, const char *name, const char *address, const char *netmask) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
  struct sockaddr_in *in = (struct sockaddr_in *)&ifr.ifr_addr;
  if (address) {
    in->sin_family = AF_INET;
    inet_pton(AF_INET, address, &in->sin_addr);
    if (ioctl(s, SIOCSIFADDR, &ifr) != 0) return -1;
    inet_pton(AF_INET, netmask, &in->sin_addr);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0) return -1;
  }
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) return -1;
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  return ioctl(s, SIOCSIFFLAGS, &ifr);
}

/*
 * lo, and eth0 at QEMU user networking's guest address (10.0.2.15/24, slirp's default). No
 * default route: the one address the guest may reach, the guestfwd rule's, is on that subnet.
 * 1 when both are up.
 */
static int configure_network(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) { console("network: socket: %s", strerror(errno)); return 0; }
  int ok = interface_up(s, "lo", NULL, NULL) == 0;
  if (!ok) console("network: lo: %s", strerror(errno));
  int rc = -1;
  /* The driver registers eth0 as it loads; wait a little should it not have yet. */
  for (int i = 0; i < 1000 && (rc = interface_up(s, "eth0", "10.0.2.15", "255.255.255.0")) != 0 && errno == ENODEV; i++) sleep_ms(2);
  if (rc != 0) console("network: eth0: %s", strerror(errno));
  close(s);
  return ok && rc == 0;
}

/*
 * The modules of the boot disks (virtio_blk, ext4, overlay), then those of the image disks (SCSI,
 * hot-plugged), load in a child started right after the hello, at idle priority, so that the
 * agent's own work (its root, answering the host, mounting) goes first. It keeps the initramfs,
 * where the module files are, as its root: it forks before the agent moves to the tmpfs. Started
 * before the hello instead (measured under TCG, one vCPU), it brought the disks about 0.18 s
 * sooner but the hello about 0.08 s later, even at idle priority: two module loads at once slow
 * each other.
 */
void start_module_loader(void) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) die("pipe");
  loader_pid = fork();
  if (loader_pid < 0) die("fork");
  if (loader_pid == 0) {
    close(ready[0]);
    struct sched_param idle = {0};
    sched_setscheduler(0, SCHED_IDLE, &idle);
    load_modules("/modules.disk");
    stage("disk modules loaded");
    if (write(ready[1], "D", 1) != 1) _exit(1);
    load_modules("/modules.later");
    stage("image disk modules loaded");
    if (network) {
      load_modules("/modules.net");
      int up = configure_network();
      stage(up ? "network up" : "network failed");
      if (write(ready[1], up ? "N" : "n", 1) != 1) _exit(1);
    }
    _exit(0);
  }
  close(ready[1]);
  loader_ready = ready[0];
}

/* Waits until the module loader has loaded the boot disks' modules; 0 when it died first. */
int disk_modules_loaded(void) {
  static int loaded;
  if (loaded) return 1;
  char byte;
  ssize_t n;
  while ((n = read(loader_ready, &byte, 1)) < 0 && errno == EINTR) {}
  loaded = n == 1;
  return loaded;
}

/* Before the hello: only what the host port needs (its modules, /dev and /sys to find it). */
void boot(void) {
  stage("init");
  load_modules("/modules.port");
  stage("port modules loaded");
  if (mount("dev", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0) die("mount /dev");
  if (mount("sys", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount /sys");
  open_port();
  stage("port open");
}

/* After the hello: the root steps pivot from, /proc, cgroups, /tmp. */
void settle(void) {
  switch_to_tmpfs();
  if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount /proc");
  if (mount("cgroup2", CG, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) die("mount cgroup2");
  write_file(CG "/cgroup.subtree_control", "+memory +pids");
  if (mount("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) die("mount /tmp");
  stage("root ready");
}

/* Drops what the kernel cached of a disk (its partition scan ran before the host wrote it). */
static void forget_cached(const char *dev) {
  int fd = open(dev, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ioctl(fd, BLKFLSBUF, 0);
  close(fd);
}

/*
 * The host writes the boot disks' file systems while the guest kernel boots, and says 'M' once
 * they are complete (right after the hello, as a rule): they are mounted once their modules are in.
 */
void mount_disks(void) {
  char dev[64];
  if (!disk_modules_loaded()) { send_text('M', "error=the disk drivers did not load (the VM's console says why)"); return; }
  stage("mounting disks");
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

/* Waits for the module loader's word on the network: 1 when lo and eth0 are up. */
int network_ready(void) {
  static int state = -1;
  if (state >= 0) return state;
  if (!network || !disk_modules_loaded()) return state = 0;
  char byte;
  ssize_t n;
  while ((n = read(loader_ready, &byte, 1)) < 0 && errno == EINTR) {}
  state = n == 1 && byte == 'N';
  return state;
}
