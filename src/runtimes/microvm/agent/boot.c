/* Boot: modules, the tmpfs root, the host port, the boot disks. */
#define _GNU_SOURCE
#include "agent.h"

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
    stage(name);
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

void boot(void) {
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

void mount_disks(void) {
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
