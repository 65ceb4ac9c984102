/*
 * Snapshots: a VM is saved once its agent is quiet ('W'), and every VM restored from that file
 * starts with the same memory: the same kernel RNG state, the same wall clock, the same agent.
 * 'N' makes a restored VM its own before it serves a job: the host's entropy is mixed into the
 * kernel's pool, credited, and the CRNG reseeded at once (so /dev/urandom, getrandom and the
 * lazily made boot_id differ per VM), and the wall clock is set to the host's.
 */
#define _GNU_SOURCE
#include "agent.h"

/* linux/random.h's ioctls and struct (stable ABI; spelled out: musl's headers lack them). */
#define RNDADDENTROPY _IOW('R', 0x03, int[2])
#define RNDRESEEDCRNG _IO('R', 0x07)
struct rand_pool_info {
  int entropy_count;
  int buf_size;
  uint32_t buf[];
};

/* 'W': waits until the module loader is done (every driver in, nothing running), then says so. */
void quiesce(void) {
  if (!disk_modules_loaded()) { send_text('W', "error=the disk drivers did not load"); return; }
  if (loader_pid > 0) {
    int ws;
    while (waitpid(loader_pid, &ws, 0) < 0 && errno == EINTR) {}
    loader_pid = 0;
  }
  sync();
  send_text('W', "ok");
}

/* 'N': payload "SECONDS NANOSECONDS\n" then the entropy bytes. */
void reseed(const char *payload, uint32_t len) {
  const char *newline = memchr(payload, '\n', len);
  if (!newline) { send_text('N', "error=no clock in the request"); return; }
  const unsigned char *entropy = (const unsigned char *)newline + 1;
  size_t bytes = len - (size_t)(newline + 1 - payload);
  if (bytes < 32 || bytes > 512) { send_text('N', "error=%zu bytes of entropy (32 to 512 expected)", bytes); return; }
  struct timespec now = {0};
  if (sscanf(payload, "%ld %ld", &now.tv_sec, &now.tv_nsec) != 2 || clock_settime(CLOCK_REALTIME, &now) != 0) {
    send_text('N', "error=could not set the clock: %s", strerror(errno));
    return;
  }
  struct { struct rand_pool_info info; uint32_t words[128]; } pool;
  memset(&pool, 0, sizeof pool);
  pool.info.entropy_count = (int)(bytes * 8);
  pool.info.buf_size = (int)bytes;
  memcpy(pool.words, entropy, bytes);
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) { send_text('N', "error=open /dev/urandom: %s", strerror(errno)); return; }
  /* RNDADDENTROPY mixes and credits; RNDRESEEDCRNG makes the CRNG take it now, not at its next interval. */
  if (ioctl(fd, RNDADDENTROPY, &pool) != 0 || ioctl(fd, RNDRESEEDCRNG) != 0) {
    send_text('N', "error=reseeding the RNG: %s", strerror(errno));
    close(fd);
    return;
  }
  close(fd);
  send_text('N', "ok");
}
