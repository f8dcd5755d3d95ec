package fpmtest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Nginx is a real nginx in front of a test pool, on a local port of its own.
type Nginx struct {
	URL      string // http://127.0.0.1:PORT
	ErrorLog string
	dir      string
	cmd      *exec.Cmd
	waited   chan struct{}
}

// NginxOptions tune the nginx in front of a pool.
type NginxOptions struct {
	ReadTimeout time.Duration // fastcgi_read_timeout; 60s if 0
}

// NginxBinary finds nginx: $NGINX, then PATH, then /usr/sbin.
func NginxBinary() (string, error) {
	if b := os.Getenv("NGINX"); b != "" {
		return b, nil
	}
	if p, err := exec.LookPath("nginx"); err == nil {
		return p, nil
	}
	if isExec("/usr/sbin/nginx") {
		return "/usr/sbin/nginx", nil
	}
	return "", fmt.Errorf("nginx not found: run `make deps` (installs nginx) or set NGINX")
}

// StartNginx starts nginx serving f's document root through pool's socket,
// and stops it when the test ends. It fails the test when nginx is missing.
// nginx runs on the host, with host paths; the script names it passes are
// the ones php-fpm sees, in its root when it has one.
func StartNginx(t testing.TB, f *FPM, pool string, opts NginxOptions) *Nginx {
	t.Helper()
	bin, err := NginxBinary()
	if err != nil {
		t.Fatal(err)
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = 60 * time.Second
	}
	dir := filepath.Join(f.Dir, "nginx")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	n := &Nginx{URL: "http://127.0.0.1:" + port, ErrorLog: filepath.Join(dir, "error.log"), dir: dir, waited: make(chan struct{})}
	user := ""
	if os.Geteuid() == 0 {
		u, g := unprivileged()
		user = fmt.Sprintf("user %s %s;", u, g)
	}
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
%[2]s
events { worker_connections 512; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/tmp/body;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    proxy_temp_path %[1]s/tmp/proxy;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    server {
        listen 127.0.0.1:%[3]s;
        root %[4]s;
        location ~ \.php$ {
            fastcgi_pass unix:%[5]s;
            fastcgi_read_timeout %[6]ds;
            fastcgi_param SCRIPT_FILENAME %[7]s$fastcgi_script_name;
            fastcgi_param SCRIPT_NAME $fastcgi_script_name;
            fastcgi_param QUERY_STRING $query_string;
            fastcgi_param REQUEST_METHOD $request_method;
            fastcgi_param REQUEST_URI $request_uri;
            fastcgi_param DOCUMENT_URI $document_uri;
            fastcgi_param DOCUMENT_ROOT %[7]s;
            fastcgi_param SERVER_PROTOCOL $server_protocol;
            fastcgi_param GATEWAY_INTERFACE CGI/1.1;
            fastcgi_param REMOTE_ADDR $remote_addr;
            fastcgi_param SERVER_NAME $server_name;
            fastcgi_param CONTENT_TYPE $content_type;
            fastcgi_param CONTENT_LENGTH $content_length;
        }
    }
}
`, dir, user, port, f.DocRoot, f.Pools[pool].Listen, int(opts.ReadTimeout.Seconds()), f.InRoot(f.DocRoot))
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(bin, "-p", dir, "-c", confPath)
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("starting nginx: %v", err)
	}
	go func() {
		_ = n.cmd.Wait()
		out.Close()
		close(n.waited)
	}()
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.waited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
			<-n.waited
		}
		if t.Failed() {
			log, _ := os.ReadFile(n.ErrorLog)
			t.Logf("nginx error log:\n%s", log)
		}
	})
	// Generous for a loaded runner: the wait ends as soon as nginx listens.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if err == nil {
			c.Close()
			return n
		}
		select {
		case <-n.waited:
			log, _ := os.ReadFile(filepath.Join(dir, "stderr.log"))
			t.Fatalf("nginx exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %s", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Get requests path from nginx and returns the status, 0 when nginx did not
// answer at all.
func (n *Nginx) Get(path string, timeout time.Duration) int {
	resp, err := (&http.Client{Timeout: timeout}).Get(n.URL + path)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}
