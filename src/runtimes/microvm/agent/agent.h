/* What the agent's files share (see agent.c for the protocol and the state machine). */
#ifndef AIRLOCK_AGENT_H
#define AIRLOCK_AGENT_H
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
#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#define MAX_FRAME (1 << 20)
#define CHUNK 65536
#define CG "/sys/fs/cgroup"
#define BLKFLSBUF _IO(0x12, 97)

/* The host's port, and whether boot stages are printed (airlock.debug on the kernel command line). */
extern int port;
extern int debug;
/* Whether the VM has a network device to configure (airlock.net on the kernel command line). */
extern int network;
/* The egress forwarder, in the initramfs of VMs with a network (see net.ts). */
#define FORWARDER "/bin/airlock-forwarder"

struct child {
  pid_t pid;
  int out, err, status; /* pipe read ends, -1 when closed */
  char kind;            /* 'S' step, 'T' tar */
  long serial;
  char message[1024];
  int wait_status;
  int have_status;
  int reaped, reaped_status; /* the child itself, reaped by the main loop */
  int disk;                  /* the return disk, while tar writes to it */
};

/* The child the agent runs now: a step ('S') or the workspace's tar ('T'). */
extern struct child current;

struct run_request {
  char *lun, *dir, *script, *mem, *pids, *hostname;
  char *net; /* the gateway's HOST:PORT when the step has a network */
  char *env[1024];
  int envc;
};

/* io.c */
void console(const char *fmt, ...);
void die(const char *what);
void write_all(int fd, const void *data, size_t len);
void send_frame(char type, const void *data, size_t len);
void send_text(char type, const char *fmt, ...);
int write_file(const char *path, const char *value);
long read_counter(const char *path, const char *key);
void stage(const char *what);
void sleep_ms(long ms);

/* boot.c */
extern pid_t loader_pid; /* the module loader child, while it runs */
void start_module_loader(void);
void boot(void);
void settle(void);
void mount_disks(void);
int network_ready(void);
int disk_modules_loaded(void);
int scsi_disk(int lun, char *dev, size_t size, long timeout_ms);
int virtio_disk(const char *serial, char *dev, size_t size, long timeout_ms);

/* step.c */
void start_step(struct run_request *req);
void kill_step(void);
void finish_child(void);
void start_tar(void);
void list_processes(void);

/* restore.c */
void quiesce(void);
void reseed(const char *payload, uint32_t len);

#endif
