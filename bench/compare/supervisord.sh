# shellcheck shell=bash
# supervisord for bench/run (sourced): its own config, socket, pid file and logs
# in $1. Programs: group s (a1..a100), stamp, catlog and cat, none started by default;
# startsecs=0 makes a process RUNNING at once, as in orch and PM2 (the default,
# 1 s, would add a second to every start and hold back restarts after a kill).
# Globals from bench/run: ROOT, BIG, REPLY.

sup_cli() { supervisorctl -c "$SUP_DIR/supervisord.conf" "$@"; }

sup_up() {
  SUP_DIR=$1
  mkdir -p "$SUP_DIR/logs" "$SUP_DIR/stamp"
  {
    cat <<EOF
[unix_http_server]
file=$SUP_DIR/supervisord.sock
[supervisord]
logfile=$SUP_DIR/supervisord.log
pidfile=$SUP_DIR/supervisord.pid
childlogdir=$SUP_DIR/logs
nodaemon=false
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://$SUP_DIR/supervisord.sock
[program:stamp]
command=sh $ROOT/bench/apps/stamp.sh
environment=OUT="$SUP_DIR/stamp"
autostart=false
autorestart=true
startsecs=0
[program:catlog]
command=$ROOT/bench/compare/catlog.sh $BIG
autostart=false
startsecs=0
stdout_logfile=$SUP_DIR/catlog-out.log
stdout_logfile_maxbytes=0
[program:cat]
command=cat $BIG
autostart=false
autorestart=false
startsecs=0
stdout_logfile=$SUP_DIR/cat-out.log
stdout_logfile_maxbytes=0
[group:s]
programs=$(seq -s, -f 'a%g' 1 100)
EOF
    for i in $(seq 100); do printf '[program:a%d]\ncommand=sleep 1000\nautostart=false\nstartsecs=0\n' "$i"; done
  } >"$SUP_DIR/supervisord.conf"
  supervisord -c "$SUP_DIR/supervisord.conf"
  until [[ -S $SUP_DIR/supervisord.sock && -s $SUP_DIR/supervisord.pid ]]; do nap 0.01; done
}
sup_pid() { read -r REPLY <"$SUP_DIR/supervisord.pid" || [[ -n $REPLY ]]; }
sup_down() { sup_cli shutdown >/dev/null; }

sup_status() { sup_cli status || true; } # exit status 3 when some are not running
sup_running() { count ' RUNNING ' "$(sup_status)"; }
sup_start100() { sup_cli start 's:*' >/dev/null; }
sup_stop100() { sup_cli stop 's:*' >/dev/null; }
sup_delete100() { :; }
sup_drop100() { sup_stop100; } # the 100 only, not measured

sup_stamp_start() { sup_cli start stamp >/dev/null; REPLY=$SUP_DIR/stamp; }
sup_stamp_stop() { sup_cli stop stamp >/dev/null; }

# catlog (stays up after its cat) or cat (exits)
sup_cat_start() { sup_cli start "$1" >/dev/null; REPLY=$SUP_DIR/$1-out.log; }
sup_cat_stop() { sup_cli stop "$1" >/dev/null || :; rm -f "$SUP_DIR/$1-out.log"; }
