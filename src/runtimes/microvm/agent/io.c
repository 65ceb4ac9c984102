/* Writing to the host and the console; small file helpers. */
#define _GNU_SOURCE
#include "agent.h"

int port = -1;

void console(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "airlock-agent: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
}

void die(const char *what) {
  console("fatal: %s: %s", what, strerror(errno));
  sync();
  reboot(RB_POWER_OFF);
  _exit(1);
}

void write_all(int fd, const void *data, size_t len) {
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

void send_frame(char type, const void *data, size_t len) {
  unsigned char head[5] = {(unsigned char)type, (unsigned char)(len >> 24), (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
  write_all(port, head, 5);
  if (len) write_all(port, data, len);
}

void send_text(char type, const char *fmt, ...) {
  char text[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if ((size_t)n >= sizeof text) n = sizeof text - 1;
  send_frame(type, text, (size_t)n);
}

int write_file(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = write(fd, value, strlen(value));
  close(fd);
  return n < 0 ? -1 : 0;
}

long read_counter(const char *path, const char *key) {
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

int debug;

/* Boot stage timings on the console, with airlock.debug on the kernel command line. */
void stage(const char *what) {
  if (!debug) return;
  struct timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  console("%ld.%03ld %s", (long)ts.tv_sec, ts.tv_nsec / 1000000, what);
}

void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}
