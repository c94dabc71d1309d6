# shellcheck shell=bash
# orch for bench/run (sourced): the daemon in $1/home, one ecosystem file per
# scenario. Globals from bench/run: ORCH (the binary), ROOT, BIG, REPLY.

orch_cli() { ORCH_HOME="$ORCH_DIR/home" "$ORCH" "$@"; }

orch_up() {
  ORCH_DIR=$1
  mkdir -p "$ORCH_DIR/home" "$ORCH_DIR/stamp"
  {
    echo "local apps = {}"
    echo "for i = 1, 100 do apps[i] = { name = 'a' .. i, script = 'sleep', args = { '1000' } } end"
    echo "return { apps = apps }"
  } >"$ORCH_DIR/sleep100.config.lua"
  cat >"$ORCH_DIR/stamp.config.lua" <<EOF
return { apps = { { name = 'stamp', script = '$ROOT/bench/apps/stamp.sh', interpreter = 'sh',
  min_uptime = 0, restart_delay = 0, env = { OUT = '$ORCH_DIR/stamp' } } } }
EOF
  cat >"$ORCH_DIR/cat.config.lua" <<EOF
return { apps = {
  { name = 'catlog', script = '$ROOT/bench/compare/catlog.sh', args = { '$BIG' }, max_size = 0,
    out_file = '$ORCH_DIR/catlog-out.log' },
  { name = 'cat', script = 'cat', args = { '$BIG' }, autorestart = false, max_size = 0,
    out_file = '$ORCH_DIR/cat-out.log' } } }
EOF
  orch_cli ping >/dev/null
}
orch_pid() { read -r REPLY <"$ORCH_DIR/home/daemon.pid" || [[ -n $REPLY ]]; }
orch_down() { orch_cli kill >/dev/null; }

orch_status() { orch_cli list --json; }
orch_running() { count '"status":"online"' "$(orch_status)"; }
orch_start100() { orch_cli start "$ORCH_DIR/sleep100.config.lua" >/dev/null; }
orch_stop100() { orch_cli stop all >/dev/null; }
orch_delete100() { orch_cli delete all >/dev/null; }
orch_drop100() { orch_cli delete "$ORCH_DIR/sleep100.config.lua" >/dev/null; } # the 100 only, not measured

orch_stamp_start() { orch_cli start "$ORCH_DIR/stamp.config.lua" >/dev/null; REPLY=$ORCH_DIR/stamp; }
orch_stamp_stop() { orch_cli delete stamp >/dev/null; }

# catlog (stays up after its cat) or cat (exits)
orch_cat_start() { orch_cli start "$ORCH_DIR/cat.config.lua" --only "$1" >/dev/null; REPLY=$ORCH_DIR/$1-out.log; }
orch_cat_stop() { orch_cli delete "$1" >/dev/null; rm -f "$ORCH_DIR/$1-out.log"; }

# orch_hello_start NAME PORT BALANCE: 2 instances of hello.js. round-robin and
# shared: Node cluster workers, whose listen(PORT) reaches orch. preload: plain
# processes (fork mode) that bind 127.0.0.1:PORT themselves, which orch's
# LD_PRELOAD library turns into the daemon's `listen` socket.
orch_hello_start() {
  local how="exec_mode = 'cluster', env = { PORT = $2 }"
  [[ $3 != preload ]] || how="listen = 'tcp://127.0.0.1:$2', env = { PORT = $2, HOST = '127.0.0.1' }"
  cat >"$ORCH_DIR/$1.config.lua" <<EOF
return { apps = { { name = '$1', script = '$ROOT/bench/apps/hello.js', instances = 2,
  balance = '$3', $how } } }
EOF
  orch_cli start "$ORCH_DIR/$1.config.lua" 2>&1
}
orch_hello_reload() { orch_cli reload "$1"; }
