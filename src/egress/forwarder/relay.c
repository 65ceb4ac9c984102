/*
 * One relayed connection: a local end (a connection accepted on a listener, the forwarder's
 * stdio, or nothing for a DNS datagram) and a fresh upstream connection, with a buffer per
 * direction. Everything is non-blocking and driven by one level-triggered epoll set: a fd is
 * registered only for what the connection can do with it now (read while its buffer has room and
 * no EOF was read; write while the other buffer holds bytes; the upstream's connect while it is in
 * progress), and removed when there is nothing, so a hung-up socket cannot spin the loop.
 *
 * Upstream states: CONNECTING (EINPROGRESS, waiting for EPOLLOUT) | RETRYING (a unix socket's
 * backlog was full: a new attempt every CONNECT_RETRY_MS, for CONNECT_GIVE_UP_MS) -> CONNECTED.
 * Each direction: OPEN -> EOF read and buffer drained -> the other end shut down for writing
 * (half-close). A connection ends when both directions did, or at once on any error; a DNS
 * datagram's once its answer frame (2-byte length + message) is complete, or at its deadline.
 * Ended connections are freed after the epoll batch they ended in (`relay_reap`).
 */
#define _GNU_SOURCE
#include "relay.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

int epfd = -1;
int listeners_paused;
static struct sockaddr_storage upstream;
static socklen_t upstream_len;
static struct conn *active, *dead;
static int timed, dns_pending;

long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void relay_init(const struct sockaddr *address, socklen_t len) {
  memcpy(&upstream, address, len);
  upstream_len = len;
}

void epoll_set(int fd, struct watch *w, uint32_t *reg, uint32_t mask) {
  if (fd < 0 || *reg == mask) return;
  struct epoll_event ev = {.events = mask, .data.ptr = w};
  int op = mask == 0 ? EPOLL_CTL_DEL : *reg == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (epoll_ctl(epfd, op, fd, &ev) == 0 || op == EPOLL_CTL_DEL) *reg = mask;
}

static void set_deadline(struct conn *c, long long at) {
  timed += (at != 0) - (c->deadline != 0);
  c->deadline = at;
}

static void close_conn(struct conn *c) {
  if (c->closed) return;
  c->closed = 1;
  for (int i = 0; i < 2; i++) {
    struct side *s = &c->s[i];
    epoll_set(s->in, &s->w[0], &s->reg[0], 0);
    if (s->out != s->in) epoll_set(s->out, &s->w[1], &s->reg[1], 0);
    if (s->in > 2) close(s->in);
    if (s->out > 2 && s->out != s->in) close(s->out);
  }
  set_deadline(c, 0);
  if (c->dns) dns_pending--;
  if (c->prev) c->prev->next = c->next;
  else active = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = dead;
  dead = c;
  if (listeners_paused) pause_listeners(0);
  on_conn_closed(c);
}

void relay_reap(void) {
  while (dead) {
    struct conn *c = dead;
    dead = c->next;
    free(c->b[0].data);
    free(c->b[1].data);
    free(c);
  }
}

static int readable(struct conn *c, int i) {
  return !c->s[i].eof && c->s[i].in >= 0 && !(i == 1 && c->connecting) && c->b[i].end - c->b[i].start < BUF_SIZE;
}

static int writable(struct conn *c, int i) {
  if (c->s[i].out < 0) return 0;
  if (i == 1 && c->connecting) return c->connecting == 1;
  return c->b[1 - i].end > c->b[1 - i].start;
}

static void update(struct conn *c) {
  if (c->closed) return;
  for (int i = 0; i < 2; i++) {
    struct side *s = &c->s[i];
    uint32_t in = readable(c, i) ? EPOLLIN : 0, out = writable(c, i) ? EPOLLOUT : 0;
    if (s->in == s->out) {
      epoll_set(s->in, &s->w[0], &s->reg[0], in | out);
    } else {
      epoll_set(s->in, &s->w[0], &s->reg[0], in);
      epoll_set(s->out, &s->w[1], &s->reg[1], out);
    }
  }
}

/* Starts (or retries) the upstream connection. 0, or -1 when it cannot be had. */
static int connect_upstream(struct conn *c) {
  int fd = socket(upstream.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (errno == EMFILE || errno == ENFILE) pause_listeners(1);
    return -1;
  }
  if (upstream.ss_family != AF_UNIX) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
  c->s[1].in = c->s[1].out = fd;
  if (connect(fd, (struct sockaddr *)&upstream, upstream_len) == 0) {
    c->connecting = 0;
  } else if (errno == EINPROGRESS) {
    c->connecting = 1;
  } else if (errno == EAGAIN && !c->dns && now_ms() < c->give_up) {
    /* A DNS datagram is not retried: its client asks again. */
    close(fd);
    c->s[1].in = c->s[1].out = -1;
    c->connecting = 2;
    set_deadline(c, now_ms() + CONNECT_RETRY_MS);
  } else {
    return -1;
  }
  return 0;
}

/* Moves what it can from side `from` to side `to`: 1 when something moved, 0 when nothing could, -1 on an error. */
static int pump(struct conn *c, int from, int to) {
  struct buf *b = &c->b[from];
  struct side *f = &c->s[from], *t = &c->s[to];
  int moved = 0;
  if (readable(c, from)) {
    if (b->start == b->end) b->start = b->end = 0;
    if (b->end == BUF_SIZE) {
      memmove(b->data, b->data + b->start, b->end - b->start);
      b->end -= b->start;
      b->start = 0;
    }
    ssize_t n = read(f->in, b->data + b->end, BUF_SIZE - b->end);
    if (n > 0) b->end += (size_t)n, moved = 1;
    else if (n == 0) f->eof = 1, moved = 1;
    else if (errno != EAGAIN && errno != EINTR) return -1;
  }
  int ready = t->out >= 0 && !(to == 1 && c->connecting);
  if (ready && b->end > b->start) {
    ssize_t n = write(t->out, b->data + b->start, b->end - b->start);
    if (n > 0) b->start += (size_t)n, moved = 1;
    else if (n < 0 && errno != EAGAIN && errno != EINTR) return -1;
  }
  if (ready && f->eof && b->end == b->start && !t->shut) {
    t->shut = 1;
    moved = 1;
    if (shutdown(t->out, SHUT_WR) != 0 && errno == ENOTSOCK && t->out != t->in) {
      /* A pipe (stdout in --stdio mode): closing it is its EOF; fds 0-2 stay taken by /dev/null. */
      epoll_set(t->out, &t->w[1], &t->reg[1], 0);
      int null = t->out <= 2 ? open("/dev/null", O_WRONLY | O_CLOEXEC) : -1;
      if (null >= 0) dup2(null, t->out), close(null);
      else close(t->out);
      t->out = -1;
    }
  }
  return moved;
}

/* A DNS datagram's answer, once its frame is complete: 1 sent (or given up), 0 not yet. */
static int answer_dns(struct conn *c) {
  struct buf *b = &c->b[1];
  size_t have = b->end - b->start;
  if (have < 2) return c->s[1].eof;
  size_t len = ((size_t)(unsigned char)b->data[b->start] << 8) | (unsigned char)b->data[b->start + 1];
  if (len > 65507) return 1; /* cannot be one datagram */
  if (have < 2 + len) return c->s[1].eof;
  sendto(c->udp, b->data + b->start + 2, len, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&c->peer, sizeof c->peer);
  return 1;
}

static void drive(struct conn *c) {
  for (int round = 0; round < 16 && !c->closed; round++) {
    int up = pump(c, 0, 1), down = pump(c, 1, 0);
    if (up < 0 || down < 0) { close_conn(c); return; }
    if (c->dns && answer_dns(c)) { close_conn(c); return; }
    int done = c->s[0].eof && c->s[1].shut && c->b[0].end == c->b[0].start && c->s[1].eof && c->s[0].shut && c->b[1].end == c->b[1].start;
    if (done && !c->dns) { close_conn(c); return; }
    if (!up && !down) break;
  }
  update(c);
}

static struct conn *new_conn(void) {
  struct conn *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->b[0].data = malloc(BUF_SIZE);
  c->b[1].data = malloc(BUF_SIZE);
  if (!c->b[0].data || !c->b[1].data) {
    free(c->b[0].data);
    free(c->b[1].data);
    free(c);
    return NULL;
  }
  for (int i = 0; i < 2; i++) {
    c->s[i].in = c->s[i].out = -1;
    for (int j = 0; j < 2; j++) c->s[i].w[j] = (struct watch){.kind = W_CONN, .owner = c, .side = i};
  }
  c->give_up = now_ms() + CONNECT_GIVE_UP_MS;
  c->next = active;
  if (active) active->prev = c;
  active = c;
  return c;
}

/* Relays `in`/`out` (closed on failure) to a new upstream connection, `first` written to it first. */
struct conn *relay_open(int in, int out, const char *first, size_t first_len) {
  struct conn *c = new_conn();
  if (!c) {
    if (in > 2) close(in);
    if (out > 2 && out != in) close(out);
    return NULL;
  }
  c->s[0].in = in;
  c->s[0].out = out;
  memcpy(c->b[0].data, first, first_len);
  c->b[0].end = first_len;
  if (connect_upstream(c) != 0) { close_conn(c); return NULL; }
  drive(c);
  return c;
}

/* One DNS query datagram from `peer` on `udp`: a new upstream stream carrying it framed. */
void relay_dns(int udp, const struct sockaddr_in *peer, const char *query, size_t len) {
  if (dns_pending >= MAX_DNS_PENDING || len > BUF_SIZE - 3) return;
  struct conn *c = new_conn();
  if (!c) return;
  dns_pending++;
  c->dns = 1;
  c->peer = *peer;
  c->udp = udp;
  c->s[0].eof = 1;
  c->s[1].shut = 1;        /* no half-close: the gateway answers, then we close */
  c->b[0].data[0] = 'D';
  c->b[0].data[1] = (char)(len >> 8);
  c->b[0].data[2] = (char)len;
  memcpy(c->b[0].data + 3, query, len);
  c->b[0].end = len + 3;
  set_deadline(c, now_ms() + DNS_TIMEOUT_MS);
  if (connect_upstream(c) != 0) { close_conn(c); return; }
  drive(c);
}

void relay_event(struct watch *w, uint32_t events) {
  struct conn *c = w->owner;
  if (c->closed) return;
  if (w->side == 1 && c->connecting == 1) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(c->s[1].in, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) { close_conn(c); return; }
    c->connecting = 0;
  }
  drive(c);
}

/* ms until the next deadline, or -1 when none. */
int relay_timeout(void) {
  if (timed == 0) return -1;
  long long next = -1, now = now_ms();
  for (struct conn *c = active; c; c = c->next) {
    if (c->deadline && (next < 0 || c->deadline < next)) next = c->deadline;
  }
  if (next < 0) return -1;
  return next <= now ? 0 : (int)(next - now);
}

void relay_timers(void) {
  if (timed == 0) return;
  long long now = now_ms();
  for (struct conn *c = active, *next; c; c = next) {
    next = c->next;
    if (!c->deadline || c->deadline > now) continue;
    if (c->dns) { close_conn(c); continue; }
    set_deadline(c, 0);
    if (c->connecting == 2 && connect_upstream(c) != 0) { close_conn(c); continue; }
    drive(c);
  }
}
