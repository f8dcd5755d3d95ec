#!/usr/bin/env bash
# make demo: a self-contained nginx + php-fpm stack in a fresh temporary
# directory, watched by fpmguard. Ctrl-C stops everything and removes the
# directory.
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
cleanup() {
	trap - EXIT INT TERM
	echo
	echo "demo: stopping"
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

"$fpm_bin" -F -y "$dir/php-fpm.conf" >"$dir/php-fpm.out" 2>&1 &
pids+=($!)
"$nginx_bin" -p "$dir" -c "$dir/nginx.conf" >"$dir/nginx.out" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
	[ -S "$dir/www.sock" ] && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.1
done

app="http://127.0.0.1:$port"
cat <<MSG

fpmguard demo in $dir
  the app:      $app/
  hangs:        $app/hang.php?s=60
  spins:        $app/spin.php?s=60
  crashes:      $app/crash.php
  fills opcache $app/fill-opcache.php?n=20000

Try, in another terminal:
  curl '$app/hang.php?s=60' &   # four of these hang every worker
  $bin status --fpm-config $dir/php-fpm.conf --opcache-dir $dir/opcache --hung-after 5s
  $bin check --fpm-config $dir/php-fpm.conf --opcache-dir $dir/opcache

fpmguard status now:
MSG
"$bin" status --fpm-config "$dir/php-fpm.conf" --opcache-dir "$dir/opcache" || true

if [ -t 0 ]; then
	echo
	echo "Press Ctrl-C to stop."
	wait
fi
