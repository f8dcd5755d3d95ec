package phpstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fpmguard/fpmguard/fastcgi/fpmtest"
)

// helperEnv makes the test binary read one stack and print the outcome,
// as another user or without a capability: see TestMain.
const helperEnv = "PHPSTACK_TEST_READ_PID"

// helperResult is what the helper prints.
type helperResult struct {
	Stack   string
	Missing Missing
	Err     string
}

func TestMain(m *testing.M) {
	if pid := os.Getenv(helperEnv); pid != "" {
		n, _ := strconv.Atoi(pid)
		s, err := (&Reader{}).Read(n)
		res := helperResult{Stack: s.String()}
		var perm *PermissionError
		if errors.As(err, &perm) {
			res.Missing = perm.Missing
		}
		if err != nil {
			res.Err = err.Error()
		}
		_ = json.NewEncoder(os.Stdout).Encode(res)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// readAs reads pid's stack from a copy of the test binary run by argv's
// prefix (e.g. setpriv) as uid.
func readAs(t *testing.T, exe string, uid, gid int, prefix []string, pid int) helperResult {
	t.Helper()
	argv := append(append([]string(nil), prefix...), exe)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", helperEnv, pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v as uid %d: %v", argv, uid, err)
	}
	var res helperResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("helper's answer %q: %v", out, err)
	}
	return res
}

// lookup returns a user's uid and gid.
func lookup(t *testing.T, name string) (int, int) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return uid, gid
}

// TestReadPermissions reads a worker's stack as php-fpm's pool user, as
// another user and as root without CAP_SYS_PTRACE: each refused read says
// which condition is missing and how to grant it, and the pool user reads
// the stack of a worker that process.dumpable makes dumpable (where Yama
// allows it).
func TestReadPermissions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs the reader as other users: it needs root")
	}
	files, _ := scripts(t)
	f := fpmtest.Start(t, fpmtest.Options{
		Pools: []fpmtest.Pool{
			{Name: "www", MaxChildren: 1},
			{Name: "dumpable", MaxChildren: 1, Extra: []string{"process.dumpable = yes"}},
		},
		Files: files,
	})
	// A copy of the test binary that other users may run.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(fpmtest.Dir(t), "phpstack.test")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	worker := f.WorkerPIDs("www")[0]
	dumpable := f.WorkerPIDs("dumpable")[0]
	poolUID, poolGID := lookup(t, workerUser(t, worker))
	nobody, nogroup := lookup(t, "nobody")

	grant := []string{"CAP_SYS_PTRACE", "CapabilityBoundingSet=", "AmbientCapabilities=", `securityContext.capabilities.add: ["SYS_PTRACE"]`}
	type readCase struct {
		name     string
		uid, gid int
		prefix   []string // the command the helper runs under
		pid      int
		missing  Missing
		says     []string
	}
	cases := []readCase{
		{"another-user", nobody, nogroup, nil, worker, MissingCapSysPtrace, grant},
		{"root-without-CAP_SYS_PTRACE", 0, 0, []string{"setpriv", "--bounding-set=-sys_ptrace", "--"}, worker, MissingCapSysPtrace, grant},
		{"pool-user-not-dumpable", poolUID, poolGID, nil, worker, MissingDumpable, append(grant, "process.dumpable = yes")},
	}
	// The same user reads a dumpable worker where Yama lets it.
	if ptraceScope() == 0 {
		cases = append(cases, readCase{"pool-user-dumpable", poolUID, poolGID, nil, dumpable, 0, nil})
	} else {
		cases = append(cases, readCase{"pool-user-dumpable", poolUID, poolGID, nil, dumpable, MissingPtraceScope, []string{"kernel.yama.ptrace_scope"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := readAs(t, exe, c.uid, c.gid, c.prefix, c.pid)
			if res.Missing != c.missing {
				t.Fatalf("uid %d reading worker %d: missing %d, want %d (error %q)", c.uid, c.pid, res.Missing, c.missing, res.Err)
			}
			if c.missing == 0 {
				if res.Err != "" || res.Stack != "" {
					t.Fatalf("uid %d reading idle worker %d: stack %q, error %q; want an empty stack", c.uid, c.pid, res.Stack, res.Err)
				}
				return
			}
			for _, s := range c.says {
				if !strings.Contains(res.Err, s) {
					t.Errorf("the error does not say %q: %s", s, res.Err)
				}
			}
			if strings.Count(res.Err, "\n") > 0 {
				t.Errorf("the error is more than one line: %q", res.Err)
			}
			t.Log(res.Err)
		})
	}
}

// workerUser names the user a worker runs as.
func workerUser(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(statusField(status, "Uid:"))
	if len(f) == 0 {
		t.Fatalf("worker %d: no Uid line", pid)
	}
	u, err := user.LookupId(f[0])
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
