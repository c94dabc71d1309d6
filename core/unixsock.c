/* unixsock.c: binding AF_UNIX sockets to paths (see unixsock.h). */
#include "orch/unixsock.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int orch_unix_bind(int fd, const char *path, unsigned flags) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) return -ENAMETOOLONG;
  strcpy(sa.sun_path, path);
  struct stat st;
  if ((flags & ORCH_UNIX_REPLACE) && lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return -EEXIST; /* never remove what is not a socket */
    if (unlink(path) < 0 && errno != ENOENT) return -errno;
  }
  if (!(flags & ORCH_UNIX_PRIVATE)) return bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
  /* bind() creates the file with 0777 & ~umask: a private umask for the
   * moment of the bind means it is never wider than 0600. The process is
   * single-threaded here (libuv's pool threads do not create files unasked). */
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
  int err = errno;
  umask(old);
  if (rc < 0) return -err;
  if (chmod(path, 0600) < 0) return -errno;
  return 0;
}
