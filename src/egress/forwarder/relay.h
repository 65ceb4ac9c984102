/* What the forwarder's files share (see forwarder.c for the modes, relay.c for a connection's life). */
#ifndef AIRLOCK_FORWARDER_RELAY_H
#define AIRLOCK_FORWARDER_RELAY_H
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Bytes buffered per direction of a connection. */
#define BUF_SIZE 65536
/* Upstream connections are retried this long when the gateway's backlog is full (unix sockets). */
#define CONNECT_RETRY_MS 20
#define CONNECT_GIVE_UP_MS 5000
/* A DNS datagram gets its answer within this long, or none; at most this many wait at once. */
#define DNS_TIMEOUT_MS 10000
#define MAX_DNS_PENDING 128

enum watch_kind { W_LISTEN = 1, W_UDP, W_SIGNAL, W_CONN };

/* What an epoll event's data.ptr points at. */
struct watch {
  int kind;
  void *owner;
  int side; /* W_CONN: 0 local, 1 upstream */
};

struct buf {
  char *data;
  size_t start, end;
};

struct side {
  int in, out;        /* fds; the same socket twice, or stdin/stdout; -1 for none */
  uint32_t reg[2];    /* the epoll masks registered for in and out (0: not registered) */
  struct watch w[2];
  int eof;            /* a read of `in` returned 0 */
  int shut;           /* `out` was shut down for writing (or the direction needs no end) */
};

struct conn {
  struct side s[2];   /* 0: the local end (accepted, or stdio), 1: upstream */
  struct buf b[2];    /* b[i]: read from s[i], to be written to s[1 - i] */
  int connecting;     /* upstream: 0 connected, 1 connect in progress, 2 waiting to retry */
  long long deadline; /* ms (CLOCK_MONOTONIC) of the retry or the DNS timeout; 0: none */
  long long give_up;  /* ms after which connect retries stop */
  int dns;            /* a DNS datagram: the answer frame goes back to `peer`, from `udp` */
  int udp;
  struct sockaddr_in peer;
  int closed;
  struct conn *prev, *next;
};

/* relay.c */
extern int epfd;
extern int listeners_paused;
void relay_init(const struct sockaddr *upstream, socklen_t upstream_len);
struct conn *relay_open(int in, int out, const char *first, size_t first_len);
void relay_dns(int udp, const struct sockaddr_in *peer, const char *query, size_t len);
void relay_event(struct watch *w, uint32_t events);
int relay_timeout(void);
void relay_timers(void);
void relay_reap(void);
long long now_ms(void);
void epoll_set(int fd, struct watch *w, uint32_t *reg, uint32_t mask);

/* forwarder.c: stop or resume accepting (out of fds). */
void pause_listeners(int pause);
/* forwarder.c: called when a connection ends (the --stdio mode exits). */
void on_conn_closed(struct conn *c);

#endif
