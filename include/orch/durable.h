/* durable.h: files that survive a crash and a power loss (state.json,
 * dump.json): the text goes to a new FILE.tmp (created exclusively, 0600),
 * which is fsynced and renamed over FILE, then the directory is fsynced.
 * Readers see the old file or the new one, never half of one.
 *
 * fsync can take seconds (ext4 in ordered mode flushes other files' dirty
 * data with the journal), so the daemon writes on a thread of its own (not
 * libuv's pool, where gzip jobs of rotated logs would delay it); one lock
 * orders the writes, and a sealed path (the last write of an exiting orch)
 * takes no write queued before it. */
#ifndef ORCH_DURABLE_H
#define ORCH_DURABLE_H

#include <stddef.h>

struct lua_State;

/* Writes data to path durably (blocking). 0 or -errno; *step names what
 * failed ("create", "write", "fsync", "rename", "fsync the directory of"). */
int orch_durable_write(const char *path, const char *data, size_t len, const char **step);

/* Waits for a write in progress, then refuses later queued writes to path
 * (they report ECANCELED) until the process ends. 0 or -errno. */
int orch_durable_seal(const char *path);

/* orch.core.durable_write(path, text[, callback(ok, message, code)]),
 * orch.core.durable_seal(path) */
void orch_durable_lua_register(struct lua_State *L);

#endif
