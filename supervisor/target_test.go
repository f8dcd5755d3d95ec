package supervisor

import (
	"strings"
	"testing"
)

func TestParsePoolSpec(t *testing.T) {
	tests := []struct {
		spec    string
		check   func(Target) bool
		wantErr string
	}{
		{spec: "/run/php/www.sock", check: func(t Target) bool {
			return t.Name == "www" && t.StatusPath == "/status" && t.PingPath == "/ping" && t.PingResponse == "pong" && t.StatusAddress.IsZero()
		}},
		{spec: "127.0.0.1:9000,name=api,pm.status_path=/fpm-status,pm.status_listen=127.0.0.1:9001,ping.path=/health,ping.response=ok", check: func(t Target) bool {
			return t.Name == "api" && t.StatusPath == "/fpm-status" && t.StatusAddress.String() == "tcp://127.0.0.1:9001" && t.PingPath == "/health" && t.PingResponse == "ok"
		}},
		{spec: "/run/php/www.sock,pm=static,pm.max_children=5", check: func(t Target) bool { return t.MinWorkers == 5 && t.MaxChildren == 5 }},
		{spec: "/run/php/www.sock,pm.max_children=5,pm=static", check: func(t Target) bool { return t.MinWorkers == 5 }},
		{spec: "/run/php/www.sock,pid=/run/php/fpm.pid", check: func(t Target) bool { return t.MasterPIDFile == "/run/php/fpm.pid" }},
		{spec: "www.sock", wantErr: `bad FastCGI address "www.sock"`},
		{spec: "/run/php/www.sock,status", wantErr: `option "status" is not key=value`},
		{spec: "/run/php/www.sock,colour=blue", wantErr: `unknown option "colour"; use one of name, pm.status_path`},
		{spec: "/run/php/www.sock,pm.status_path=status", wantErr: `must be a path starting with /`},
		{spec: "/run/php/www.sock,pm=lazy", wantErr: `pm "lazy" must be static, dynamic or ondemand`},
		{spec: "/run/php/www.sock,pid=fpm.pid", wantErr: `must be an absolute path`},
		{spec: "/run/php/www.sock,pm.max_children=ten", wantErr: `pm.max_children "ten" must be a whole number`},
	}
	for _, tt := range tests {
		got, err := ParsePoolSpec(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.spec) {
				t.Errorf("ParsePoolSpec(%q) error = %v, want one naming the spec and %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !tt.check(got) {
			t.Errorf("ParsePoolSpec(%q) = %+v, %v", tt.spec, got, err)
		}
	}
}
