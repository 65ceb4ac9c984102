/*
 * The Airlock egress forwarder: a sandbox's only way out. It relays the sandbox's proxy and DNS
 * ports to the job's egress gateway, which decides what may be reached.
 *
 *   forwarder --unix PATH -- CMD [ARGS...]       upstream: the gateway's unix socket
 *   forwarder --tcp HOST:PORT -- CMD [ARGS...]   upstream: a TCP address (an IP literal; no resolver)
 *     Brings `lo` up when it is down, listens on 127.0.0.1: 3128 (HTTP proxy, tag H), 1080
 *     (SOCKS5, tag S), 53 TCP and UDP (DNS, tag D; a datagram travels as one DNS-over-TCP frame
 *     on its own upstream connection, the answer goes back as a datagram), runs CMD with
 *     stdin/stdout/stderr inherited, and exits with CMD's status (128 + the signal when a signal
 *     killed it). Every accepted connection gets its own upstream connection whose first byte is
 *     its service's tag. SIGTERM, SIGINT, SIGHUP and SIGQUIT are passed on to CMD. When port 53
 *     cannot be had (EACCES/EPERM), it goes on without DNS after one warning.
 *   forwarder --stdio PATH
 *     Relays its stdin/stdout to a connection to the unix socket PATH, bytes unchanged, until
 *     both directions ended (for QEMU's guestfwd `cmd:`, which gives each guest connection to a
 *     command's stdio; its stderr is that connection too, so this mode never prints).
 *
 * One process, one thread, one epoll loop (relay.c): listeners, the DNS datagram socket, a
 * signalfd (SIGCHLD and the passed-on signals, blocked), and the connections. Its own fds are
 * close-on-exec, so CMD inherits only 0-2; CMD gets the signal mask, SIGPIPE and RLIMIT_NOFILE the
 * forwarder started with. As a pid namespace's init it reaps every child, waiting for CMD's.
 * Exit codes of its own: 125 (bad usage or setup), 126/127 (CMD could not be executed).
 */
#define _GNU_SOURCE
#include "relay.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct listener {
  int fd;
  char tag;
  uint32_t reg;
  struct watch w;
};

static struct listener listeners[3];
static int nlisteners, udp_fd = -1, stdio_mode, quiet;
static uint32_t udp_reg, signal_reg;
static struct watch udp_watch = {.kind = W_UDP}, signal_watch = {.kind = W_SIGNAL};

static void fail(const char *fmt, ...) {
  if (!quiet) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "airlock-forwarder: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
  }
  exit(125);
}

static void usage(void) {
  fail("usage: forwarder --unix PATH -- CMD [ARGS...] | --tcp HOST:PORT -- CMD [ARGS...] | --stdio PATH");
}

/* Out of fds: accepting stops until a connection ends, or for PAUSE_MS at most. */
#define PAUSE_MS 100
static long long paused_at;

void pause_listeners(int pause) {
  listeners_paused = pause;
  if (pause) paused_at = now_ms();
  for (int i = 0; i < nlisteners; i++) epoll_set(listeners[i].fd, &listeners[i].w, &listeners[i].reg, pause ? 0 : EPOLLIN);
  epoll_set(udp_fd, &udp_watch, &udp_reg, pause ? 0 : EPOLLIN);
}

void on_conn_closed(struct conn *c) {
  (void)c;
  if (stdio_mode) exit(0);
}

static socklen_t parse_upstream(const char *mode, const char *value, struct sockaddr_storage *out) {
  memset(out, 0, sizeof *out);
  if (!strcmp(mode, "--unix") || !strcmp(mode, "--stdio")) {
    struct sockaddr_un *un = (struct sockaddr_un *)out;
    if (strlen(value) >= sizeof un->sun_path) fail("socket path too long: %s", value);
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, value);
    return sizeof *un;
  }
  if (strcmp(mode, "--tcp") != 0) usage();
  char host[64];
  const char *colon = strrchr(value, ':');
  if (!colon || colon == value || (size_t)(colon - value) >= sizeof host) fail("not HOST:PORT: %s", value);
  memcpy(host, value, (size_t)(colon - value));
  host[colon - value] = 0;
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 1 || port > 65535) fail("bad port in %s", value);
  struct sockaddr_in *in4 = (struct sockaddr_in *)out;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    return sizeof *in4;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)out;
  size_t len = strlen(host);
  if (len > 2 && host[0] == '[' && host[len - 1] == ']') {
    host[len - 1] = 0;
    if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
      in6->sin6_port = htons((uint16_t)port);
      return sizeof *in6;
    }
  }
  fail("HOST must be an IPv4 address or a bracketed IPv6 address: %s", value);
  return 0;
}

/* Brings the loopback interface up when it is down; without the privilege to, carries on. */
static void loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0 && errno != EPERM) fprintf(stderr, "airlock-forwarder: cannot bring lo up: %s\n", strerror(errno));
  }
  close(s);
}

/* A socket bound to 127.0.0.1:port (listening, for a stream); -1 with errno set when it cannot be. */
static int bind_local(int type, int port) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || (type == SOCK_STREAM && listen(fd, 1024) != 0)) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

static void listen_on(int port, char tag) {
  int fd = bind_local(SOCK_STREAM, port);
  if (fd < 0) fail("cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
  listeners[nlisteners++] = (struct listener){.fd = fd, .tag = tag};
}

static void listen_dns(void) {
  int tcp = bind_local(SOCK_STREAM, 53);
  int saved = errno;
  int udp = tcp >= 0 ? bind_local(SOCK_DGRAM, 53) : -1;
  if (tcp >= 0 && udp < 0) saved = errno;
  if (tcp >= 0 && udp >= 0) {
    listeners[nlisteners++] = (struct listener){.fd = tcp, .tag = 'D'};
    udp_fd = udp;
    return;
  }
  if (tcp >= 0) close(tcp);
  if (saved != EACCES && saved != EPERM) fail("cannot listen on 127.0.0.1:53: %s", strerror(saved));
  fprintf(stderr, "airlock-forwarder: warning: cannot listen on 127.0.0.1:53 (%s); names do not resolve here, the proxies still work\n", strerror(saved));
}

static void accept_all(struct listener *l) {
  for (int i = 0; i < 64; i++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) pause_listeners(1);
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;
    }
    relay_open(fd, fd, &l->tag, 1);
    if (listeners_paused) return;
  }
}

static void read_datagrams(void) {
  static char query[65536];
  for (int i = 0; i < 64; i++) {
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ssize_t n = recvfrom(udp_fd, query, sizeof query, 0, (struct sockaddr *)&peer, &len);
    if (n < 0) return;
    if (n > 0 && len == sizeof peer) relay_dns(udp_fd, &peer, query, (size_t)n);
  }
}

static pid_t child;

static void on_signal(int sfd) {
  struct signalfd_siginfo info;
  while (read(sfd, &info, sizeof info) == sizeof info) {
    if (info.ssi_signo != SIGCHLD) {
      if (child > 0) kill(child, (int)info.ssi_signo);
      continue;
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid != child) continue;
      exit(WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 125);
    }
  }
}

static void start_child(char **argv, const sigset_t *mask, const struct sigaction *pipe_action, const struct rlimit *files) {
  child = fork();
  if (child < 0) fail("fork: %s", strerror(errno));
  if (child > 0) return;
  sigaction(SIGPIPE, pipe_action, NULL);
  setrlimit(RLIMIT_NOFILE, files);
  sigprocmask(SIG_SETMASK, mask, NULL);
  execvp(argv[0], argv);
  int code = errno == ENOENT ? 127 : 126;
  fprintf(stderr, "airlock-forwarder: cannot run %s: %s\n", argv[0], strerror(errno));
  _exit(code);
}

static void loop(int sfd) {
  struct epoll_event events[64];
  for (;;) {
    int timeout = relay_timeout();
    if (listeners_paused && (timeout < 0 || timeout > PAUSE_MS)) timeout = PAUSE_MS;
    int n = epoll_wait(epfd, events, 64, timeout);
    if (n < 0 && errno != EINTR) fail("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
      struct watch *w = events[i].data.ptr;
      if (w->kind == W_LISTEN) accept_all(w->owner);
      else if (w->kind == W_UDP) read_datagrams();
      else if (w->kind == W_SIGNAL) on_signal(sfd);
      else relay_event(w, events[i].events);
    }
    relay_timers();
    relay_reap();
    if (listeners_paused && now_ms() - paused_at >= PAUSE_MS) pause_listeners(0);
  }
}

int main(int argc, char **argv) {
  if (argc < 3) usage();
  stdio_mode = !strcmp(argv[1], "--stdio");
  quiet = stdio_mode; /* its stderr is the guest's connection */
  if (stdio_mode ? argc != 3 : argc < 5 || strcmp(argv[3], "--") != 0) usage();
  struct sockaddr_storage upstream;
  socklen_t upstream_len = parse_upstream(argv[1], argv[2], &upstream);
  relay_init((struct sockaddr *)&upstream, upstream_len);
  struct sigaction ignore = {.sa_handler = SIG_IGN}, pipe_action;
  sigaction(SIGPIPE, &ignore, &pipe_action);
  struct rlimit files;
  getrlimit(RLIMIT_NOFILE, &files);
  struct rlimit raised = {files.rlim_max, files.rlim_max};
  setrlimit(RLIMIT_NOFILE, &raised);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) fail("epoll: %s", strerror(errno));

  if (stdio_mode) {
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
    relay_open(0, 1, "", 0); /* exits when the connection ends (on_conn_closed) */
    loop(-1);
  }

  sigset_t passed, original;
  sigemptyset(&passed);
  int signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT};
  for (size_t i = 0; i < sizeof signals / sizeof *signals; i++) sigaddset(&passed, signals[i]);
  sigprocmask(SIG_BLOCK, &passed, &original);
  int sfd = signalfd(-1, &passed, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) fail("signalfd: %s", strerror(errno));
  loopback_up();
  listen_on(3128, 'H');
  listen_on(1080, 'S');
  listen_dns();
  for (int i = 0; i < nlisteners; i++) listeners[i].w = (struct watch){.kind = W_LISTEN, .owner = &listeners[i]};
  pause_listeners(0);
  epoll_set(sfd, &signal_watch, &signal_reg, EPOLLIN);
  start_child(argv + 4, &original, &pipe_action, &files);
  loop(sfd);
}
