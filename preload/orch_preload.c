/* orch_preload.c: liborch_preload.so, for apps with balance = "preload".
 *
 * orch binds an app's `listen` sockets in the daemon and hands them to every
 * instance from fd 3 (LISTEN_FDS, systemd's socket activation). A program that
 * knows nothing of that binds the port itself and fails with EADDRINUSE. Loaded
 * with LD_PRELOAD, this library makes that program's bind() on the configured
 * port hand back the shared socket instead, so N unmodified instances accept on
 * one socket the daemon holds (a killed instance costs no refused connection:
 * the kernel queues until another accepts).
 *
 * The rule: a TCP bind() takes an inherited listening socket of the same type
 * when its address equals that socket's (family, address, port), or when it is
 * a wildcard (0.0.0.0 or ::) on the same port. For a wildcard, an inherited
 * socket of the same family wins over one of the other family; the address in
 * `listen` is what the operator chose, so "everywhere" narrows to it and the
 * program then sees that address (and its family) in getsockname() and
 * accept(). Port 0, Unix sockets and everything else go to the real bind().
 *
 * Deliberately not done:
 * - No check of LISTEN_PID. A wrapper that execs the server (sh -c "exec ...")
 *   keeps the pid, but a server started by a wrapper as a child (npm start, a
 *   script without exec) does not, and it can still use the sockets when it
 *   inherited them. The check LISTEN_PID exists for (are these fds mine?) is
 *   done better here: only an fd that is a listening socket is recorded, and a
 *   listening socket bound to the very address asked for can only be the one
 *   orch made.
 * - No unsetenv() of LISTEN_*: a wrapper must pass them on to the server it
 *   execs, and other programs check LISTEN_PID, which names this process.
 * - Forked workers (prefork servers) inherit this table and the fds with the
 *   rest of memory, so their binds are handled too.
 *
 * The table is written once, in the constructor, before main() and before any
 * thread of the program exists; afterwards it is only read, so the wrappers
 * need no lock. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIRST_FD 3
#define MAX_SHARED 64

typedef struct {
  int fd;         /* the inherited descriptor */
  dev_t dev;      /* identity of the socket: every dup of it has the same */
  ino_t ino;
  int type;       /* SO_TYPE */
  struct sockaddr_storage addr;
} shared_t;

static shared_t shared[MAX_SHARED];
static int nshared;

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*listen_fn)(int, int);
typedef int (*shutdown_fn)(int, int);
static bind_fn real_bind;
static listen_fn real_listen;
static shutdown_fn real_shutdown;

/* Resolved in the constructor; looked up again (without storing) only when
 * another library's constructor calls us before ours ran. */
static void *next(const char *name) { return dlsym(RTLD_NEXT, name); }

static int sock_int(int fd, int level, int opt, int *value) {
  socklen_t len = sizeof *value;
  return getsockopt(fd, level, opt, value, &len);
}

static void record(int fd) {
  struct stat st;
  int listening, type;
  shared_t *s = &shared[nshared];
  socklen_t len = sizeof s->addr;
  /* Anything else at this number (closed, reused by the program) is skipped. */
  if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode)) return;
  if (sock_int(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening) < 0 || !listening) return;
  if (sock_int(fd, SOL_SOCKET, SO_TYPE, &type) < 0) return;
  if (getsockname(fd, (struct sockaddr *)&s->addr, &len) < 0) return;
  if (s->addr.ss_family != AF_INET && s->addr.ss_family != AF_INET6) return;
  s->fd = fd;
  s->dev = st.st_dev;
  s->ino = st.st_ino;
  s->type = type;
  nshared++;
}

__attribute__((constructor)) static void setup(void) {
  real_bind = (bind_fn)next("bind");
  real_listen = (listen_fn)next("listen");
  real_shutdown = (shutdown_fn)next("shutdown");
  const char *v = getenv("LISTEN_FDS");
  if (!v || !*v) return;
  int saved = errno; /* the program's main() must not see ours */
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno == 0 && *end == '\0' && n > 0) {
    if (n > MAX_SHARED) n = MAX_SHARED;
    for (int fd = FIRST_FD; fd < FIRST_FD + n; fd++) record(fd);
  }
  errno = saved;
}

static int port_of(const struct sockaddr_storage *a) {
  return a->ss_family == AF_INET ? ((const struct sockaddr_in *)a)->sin_port
                                 : ((const struct sockaddr_in6 *)a)->sin6_port;
}

/* 3: the same address; 2: a wildcard on the same port, same family; 1: one of
 * the other family; 0: no match. */
static int score(const shared_t *s, const struct sockaddr *addr, socklen_t len) {
  const struct sockaddr_storage *have = &s->addr;
  if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
    if (in->sin_port == 0 || in->sin_port != port_of(have)) return 0;
    if (in->sin_addr.s_addr == htonl(INADDR_ANY)) return have->ss_family == AF_INET ? 2 : 1;
    return have->ss_family == AF_INET &&
           in->sin_addr.s_addr == ((const struct sockaddr_in *)have)->sin_addr.s_addr ? 3 : 0;
  }
  if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
    const struct sockaddr_in6 *h6 = (const struct sockaddr_in6 *)have;
    if (in6->sin6_port == 0 || in6->sin6_port != port_of(have)) return 0;
    if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) return have->ss_family == AF_INET6 ? 2 : 1;
    return have->ss_family == AF_INET6 && IN6_ARE_ADDR_EQUAL(&in6->sin6_addr, &h6->sin6_addr) &&
           in6->sin6_scope_id == h6->sin6_scope_id ? 3 : 0;
  }
  return 0;
}

/* The inherited socket a bind of fd to addr should get, or NULL. */
static const shared_t *match(int fd, const struct sockaddr *addr, socklen_t len) {
  if (nshared == 0 || !addr || len < (socklen_t)sizeof(sa_family_t)) return NULL;
  int type, domain;
  /* A bind that would fail anyway (not a socket, the wrong family for it)
   * keeps its own error. */
  if (sock_int(fd, SOL_SOCKET, SO_TYPE, &type) < 0) return NULL;
  if (sock_int(fd, SOL_SOCKET, SO_DOMAIN, &domain) < 0 || domain != addr->sa_family) return NULL;
  const shared_t *best = NULL;
  int best_score = 0;
  for (int i = 0; i < nshared; i++) {
    if (shared[i].type != type) continue;
    int sc = score(&shared[i], addr, len);
    if (sc <= best_score) continue;
    struct stat st;
    /* The program may have closed the inherited fd and reused its number. */
    if (fstat(shared[i].fd, &st) < 0 || st.st_dev != shared[i].dev || st.st_ino != shared[i].ino)
      continue;
    best_score = sc;
    best = &shared[i];
  }
  return best;
}

/* Whether fd is (a dup of) one of the inherited sockets. */
static int is_shared(int fd) {
  struct stat st;
  if (nshared == 0 || fstat(fd, &st) < 0) return 0;
  for (int i = 0; i < nshared; i++)
    if (st.st_dev == shared[i].dev && st.st_ino == shared[i].ino) return 1;
  return 0;
}

/* Options a server commonly sets on its listening socket before bind() and
 * expects accepted connections to inherit. They go to the shared socket,
 * which every instance (the same program) would set alike. */
static const struct {
  int level, opt;
} carried[] = {{SOL_SOCKET, SO_KEEPALIVE}, {IPPROTO_TCP, TCP_NODELAY}};

/* Puts the shared socket at fd's number, as fd's replacement: fd's
 * close-on-exec flag is kept, and its O_NONBLOCK becomes the shared socket's.
 * That flag lives in the open file description, which every instance and the
 * daemon share; instances run the same program and agree on it, and the
 * daemon only holds the socket. */
static int take(int fd, const shared_t *s) {
  int saved = errno;
  int fdflags = fcntl(fd, F_GETFD);
  int mine = fcntl(fd, F_GETFL);
  int theirs = fcntl(s->fd, F_GETFL);
  if (fdflags < 0 || mine < 0 || theirs < 0) return -1;
  int values[sizeof carried / sizeof carried[0]];
  for (size_t i = 0; i < sizeof carried / sizeof carried[0]; i++)
    if (sock_int(fd, carried[i].level, carried[i].opt, &values[i]) < 0) return -1;
  if (dup3(s->fd, fd, (fdflags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0) return -1;
  if (((mine ^ theirs) & O_NONBLOCK) &&
      fcntl(fd, F_SETFL, (theirs & ~O_NONBLOCK) | (mine & O_NONBLOCK)) < 0)
    return -1;
  for (size_t i = 0; i < sizeof carried / sizeof carried[0]; i++)
    if (setsockopt(fd, carried[i].level, carried[i].opt, &values[i], sizeof values[i]) < 0)
      return -1;
  errno = saved;
  return 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  const shared_t *s = match(fd, addr, len);
  if (s) return take(fd, s);
  bind_fn f = real_bind ? real_bind : (bind_fn)next("bind");
  if (!f) {
    errno = ENOSYS;
    return -1;
  }
  return f(fd, addr, len);
}

/* The shared socket already listens with the daemon's backlog; a program's
 * own (Python's socketserver asks for 5) would shrink the queue that carries
 * connections over an instance's restart. */
int listen(int fd, int backlog) {
  if (is_shared(fd)) return 0;
  listen_fn f = real_listen ? real_listen : (listen_fn)next("listen");
  if (!f) {
    errno = ENOSYS;
    return -1;
  }
  return f(fd, backlog);
}

/* shutdown(SHUT_RD) of a listening socket closes it for every process that
 * holds it (the kernel stops listening), so one instance leaving that way
 * would take the port from all of them and from every later restart. Some
 * servers do it to wake their own accepting thread; such a server must be
 * stopped by signal instead. */
int shutdown(int fd, int how) {
  if (is_shared(fd)) return 0;
  shutdown_fn f = real_shutdown ? real_shutdown : (shutdown_fn)next("shutdown");
  if (!f) {
    errno = ENOSYS;
    return -1;
  }
  return f(fd, how);
}
