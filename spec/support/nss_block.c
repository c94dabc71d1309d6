/* nss_block.c: a test-only LD_PRELOAD library (spec/functional/
 * nss_async_spec.lua) that makes the user database slow on demand, as an
 * LDAP server that stops answering would: getpwnam_r and getpwnam of the
 * name in ORCH_TEST_NSS_BLOCK ("name:/path") wait while the file /path
 * exists (creating /path.waiting, so the spec knows one waits), then answer
 * as the real ones do (creating /path.answered once a waiting one has). Never built into orch, never installed. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A spec that fails leaves no thread blocked for ever: 2 minutes at most. */
#define MAX_WAIT_MS 120000

static void mark(const char *path, const char *suffix) {
  char marker[4096];
  if ((size_t)snprintf(marker, sizeof marker, "%s%s", path, suffix) >= sizeof marker) return;
  int fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0) close(fd);
}

/* The gate's path when name's look-up waited, else NULL. */
static const char *wait_if_blocked(const char *name) {
  const char *spec = getenv("ORCH_TEST_NSS_BLOCK");
  const char *colon = spec ? strchr(spec, ':') : NULL;
  if (!colon || !name || strlen(name) != (size_t)(colon - spec) || strncmp(name, spec, (size_t)(colon - spec)))
    return NULL;
  const char *path = colon + 1;
  if (access(path, F_OK) != 0) return NULL;
  mark(path, ".waiting");
  struct timespec tick = {0, 10 * 1000 * 1000};
  for (int waited = 0; waited < MAX_WAIT_MS && access(path, F_OK) == 0; waited += 10) nanosleep(&tick, NULL);
  return path;
}

int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t size, struct passwd **result) {
  static int (*real)(const char *, struct passwd *, char *, size_t, struct passwd **);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "getpwnam_r");
  const char *gate = wait_if_blocked(name);
  int rc = real(name, pw, buf, size, result);
  if (gate) mark(gate, ".answered");
  return rc;
}

struct passwd *getpwnam(const char *name) {
  static struct passwd *(*real)(const char *);
  if (!real) *(void **)&real = dlsym(RTLD_NEXT, "getpwnam");
  const char *gate = wait_if_blocked(name);
  struct passwd *pw = real(name);
  if (gate) mark(gate, ".answered");
  return pw;
}
