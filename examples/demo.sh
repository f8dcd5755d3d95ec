#!/usr/bin/env bash
# make demo: a self-contained nginx + php-fpm stack in a fresh temporary
# directory, with php-fpm owned by `fpmguard run` and hung-worker killing on.
# Ctrl-C stops everything and removes the directory.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin="$repo/bin/fpmguard"

find_fpm() {
	for b in php-fpm php-fpm8.4 php-fpm8.3 php-fpm8.2 php-fpm8.1; do
		if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return; fi
		if [ -x "/usr/sbin/$b" ]; then echo "/usr/sbin/$b"; return; fi
	done
	echo "demo: php-fpm not found; run make deps" >&2
	exit 1
}
fpm_bin=$(find_fpm)
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

# A free local port: nothing answers on it.
free_port() {
	local p
	for p in $(seq "$1" $(($1 + 200))); do
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "demo: no free port from $1" >&2
	exit 1
}

dir=$(mktemp -d -t fpmguard-demo.XXXXXX)
chmod 755 "$dir"
pids=()
fpmguard_pid=
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "demo: stopping"
	# fpmguard stops its php-fpm gracefully on SIGTERM; nginx on SIGQUIT.
	if [ -n "$fpmguard_pid" ]; then
		kill -TERM "$fpmguard_pid" 2>/dev/null || true
		wait "$fpmguard_pid" 2>/dev/null || true
	fi
	for pid in "${pids[@]}"; do kill -QUIT "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$dir/php" "$dir/writable" "$dir/nginx-tmp"
cp -L "$repo"/examples/php/*.php "$dir/php/"
port=$(free_port 18080)
fpmguard_port=$(free_port $((port + 1)))

userlines=""
nginxuser=""
if [ "$(id -u)" -eq 0 ]; then
	user=www-data
	id "$user" >/dev/null 2>&1 || user=nobody
	group=$(id -gn "$user")
	userlines="user = $user
group = $group"
	nginxuser="user $user $group;"
	chown "$user" "$dir/writable"
fi

fill() {
	local in=$1 out=$2
	awk -v dir="$dir" -v port="$port" -v phproot="$dir/php" -v userlines="$userlines" \
		-v nginxuser="$nginxuser" -v params="/etc/nginx/fastcgi_params" '{
		gsub(/@DIR@/, dir); gsub(/@PORT@/, port); gsub(/@PHPROOT@/, phproot)
		gsub(/@USERLINES@/, userlines); gsub(/@NGINXUSER@/, nginxuser); gsub(/@FASTCGI_PARAMS@/, params)
		print }' "$in" >"$out"
}
fill "$here/demo/php-fpm.conf.in" "$dir/php-fpm.conf"
fill "$here/demo/nginx.conf.in" "$dir/nginx.conf"

# fpmguard owns php-fpm: it restarts it if it dies, and kills workers
# hung for more than 10 s. Its log goes to the terminal.
"$bin" run --web.listen-address "127.0.0.1:$fpmguard_port" --kill-hung-after 10s --hung-after 5s \
	--opcache-dir "$dir/opcache" --nginx-error-log "$dir/nginx-error.log" \
	-- "$fpm_bin" -F -y "$dir/php-fpm.conf" &
fpmguard_pid=$!
for _ in $(seq 100); do
	[ -S "$dir/www.sock" ] && break
	sleep 0.1
done
"$nginx_bin" -p "$dir" -c "$dir/nginx.conf" >"$dir/nginx.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$fpmguard_port") 2>/dev/null && break
	sleep 0.1
done

app="http://127.0.0.1:$port"
fg="http://127.0.0.1:$fpmguard_port"
cat <<MSG

fpmguard demo in $dir
  the app:        $app/
  fpmguard:       $fg/status  $fg/metrics  $fg/healthz  $fg/readyz  $fg/events  $fg/advice

Try, in another terminal:
  curl '$app/hang.php?s=60' &        # hangs a worker (sleep); do it 4 times to hang them all
  curl '$app/spin.php?s=60' &        # spins a worker (busy loop)
  curl '$app/crash.php'              # the worker exits mid-request: nginx answers 502
  curl '$app/fill-opcache.php?n=20000'   # fills the opcache
  $bin status --fpm-config $dir/php-fpm.conf --opcache-dir $dir/opcache
  curl $fg/events                    # what fpmguard saw and did
  $bin advise --from $fg             # settings from what fpmguard measured, with their evidence
After 10 s fpmguard kills the hung and spinning workers; the master respawns them.

fpmguard status now:
MSG
"$bin" status --fpm-config "$dir/php-fpm.conf" --opcache-dir "$dir/opcache" --hung-after 5s || true

if [ -t 0 ]; then
	echo
	echo "Press Ctrl-C to stop."
	wait
fi
