/* bench/compare/limit.c: the physical limits for bench/run, a bare fork/exec
 * loop with nothing around it (compiled by bench/run into its temp dir).
 *   limit start N              fork+exec N `sleep 1000`; prints the microseconds
 *                              until every one has exec'd, then kills and reaps them
 *                              (SIGINT and SIGTERM wait until then)
 *   limit supervise CMD [ARG]  runs CMD and runs it again as soon as it exits,
 *                              until SIGTERM: a supervisor that does nothing else
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000000LL + t.tv_nsec / 1000;
}

static int start(int n) {
  pid_t *pids = calloc(n, sizeof *pids);
  int p[2];
  char c;
  sigset_t stop;
  if (!pids || pipe2(p, O_CLOEXEC)) return perror("limit"), 1;
  sigemptyset(&stop); /* a Ctrl-C waits until every sleep is killed and reaped */
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGHUP);
  sigprocmask(SIG_BLOCK, &stop, NULL);
  long long t0 = now_us();
  for (int i = 0; i < n; i++) {
    pids[i] = fork();
    if (pids[i] == 0) {
      sigprocmask(SIG_UNBLOCK, &stop, NULL);
      execl("/bin/sleep", "sleep", "1000", (char *)NULL);
      _exit(127);
    }
  }
  close(p[1]);
  while (read(p[0], &c, 1) > 0) {} /* EOF: every child exec'd (the pipe is close-on-exec) */
  printf("%lld\n", now_us() - t0);
  for (int i = 0; i < n; i++) if (pids[i] > 0) kill(pids[i], SIGKILL);
  for (int i = 0; i < n; i++) if (pids[i] > 0) waitpid(pids[i], NULL, 0);
  return 0;
}

static volatile sig_atomic_t stopping;
static void on_term(int sig) { (void)sig; stopping = 1; }

static int supervise(char **argv) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term; /* no SA_RESTART: waitpid returns EINTR */
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  while (!stopping) {
    pid_t pid = fork();
    if (pid == 0) {
      execvp(argv[0], argv);
      _exit(127);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
      if (stopping) kill(pid, SIGKILL);
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "start")) return start(atoi(argv[2]));
  if (argc >= 3 && !strcmp(argv[1], "supervise")) return supervise(argv + 2);
  fprintf(stderr, "usage: limit start N | limit supervise CMD [ARG...]\n");
  return 2;
}
