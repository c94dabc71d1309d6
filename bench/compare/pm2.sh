# shellcheck shell=bash
# PM2 for bench/run (sourced): installed by bench/run into its temp dir (PM2
# holds the path), PM2_HOME in $1/home. Globals from bench/run: ROOT, BIG, REPLY.

pm2_cli() { PM2_HOME="$PM2_DIR/home" "$PM2" "$@"; }

pm2_up() {
  PM2_DIR=$1
  mkdir -p "$PM2_DIR/stamp"
  {
    echo "const apps = [];"
    echo "for (let i = 1; i <= 100; i++)"
    echo "  apps.push({ name: 'a' + i, script: 'sleep', args: '1000', interpreter: 'none' });"
    echo "module.exports = { apps };"
  } >"$PM2_DIR/sleep100.config.js"
  cat >"$PM2_DIR/stamp.config.js" <<EOF
module.exports = { apps: [{ name: 'stamp', script: '$ROOT/bench/apps/stamp.sh', interpreter: 'sh',
  min_uptime: 0, max_restarts: 100000, restart_delay: 0, env: { OUT: '$PM2_DIR/stamp' } }] };
EOF
  cat >"$PM2_DIR/cat.config.js" <<EOF
module.exports = { apps: [
  { name: 'catlog', script: '$ROOT/bench/compare/catlog.sh', args: ['$BIG'], interpreter: 'none',
    out_file: '$PM2_DIR/catlog-out.log' },
  { name: 'cat', script: 'cat', args: ['$BIG'], interpreter: 'none', autorestart: false,
    out_file: '$PM2_DIR/cat-out.log' }] };
EOF
  pm2_cli ping >/dev/null
}
pm2_pid() { read -r REPLY <"$PM2_DIR/home/pm2.pid" || [[ -n $REPLY ]]; }
pm2_down() { pm2_cli kill >/dev/null; }

pm2_status() { pm2_cli jlist; }
pm2_running() { count '"status":"online"' "$(pm2_status)"; }
pm2_start100() { pm2_cli start "$PM2_DIR/sleep100.config.js" >/dev/null; }
pm2_stop100() { pm2_cli stop all >/dev/null; }
pm2_delete100() { pm2_cli delete all >/dev/null; }
pm2_drop100() { pm2_cli delete "$PM2_DIR/sleep100.config.js" >/dev/null; } # the 100 only, not measured

pm2_stamp_start() { pm2_cli start "$PM2_DIR/stamp.config.js" >/dev/null; REPLY=$PM2_DIR/stamp; }
pm2_stamp_stop() { pm2_cli delete stamp >/dev/null; }

# catlog (stays up after its cat) or cat (exits)
pm2_cat_start() { pm2_cli start "$PM2_DIR/cat.config.js" --only "$1" >/dev/null; REPLY=$PM2_DIR/$1-out.log; }
pm2_cat_stop() { pm2_cli delete "$1" >/dev/null; rm -f "$PM2_DIR/$1-out.log"; }

# pm2_hello_start NAME PORT: PM2's cluster mode, 2 workers of hello.js
pm2_hello_start() { PORT=$2 pm2_cli start "$ROOT/bench/apps/hello.js" -i 2 --name "$1" 2>&1; }
pm2_hello_reload() { pm2_cli reload "$1" >/dev/null; }
