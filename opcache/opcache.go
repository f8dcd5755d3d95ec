package opcache

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/fastcgi"
)

// Status is the opcache of one php-fpm master, as the script saw it.
type Status struct {
	PHPVersion string
	WorkerPID  int // the worker that ran the script
	Loaded     bool
	Enabled    bool
	Restricted bool   // opcache.restrict_api refused the script
	Error      string // why the status could not be read, if it could not

	FileCacheOnly     bool
	CacheFull         bool
	RestartPending    bool
	RestartInProgress bool

	MemoryUsed, MemoryFree, MemoryWasted int64 // bytes
	// PoolMemoryConsumption is the opcache.memory_consumption the pool
	// the script ran in set for itself (php_admin_value), in bytes, when
	// it differs from the size the master gave the shared memory
	// (Config.MemoryConsumption): PHP ignores it. 0 otherwise.
	PoolMemoryConsumption int64

	InternedSize, InternedUsed, InternedFree int64 // bytes
	InternedStrings                          int64

	CachedScripts, CachedKeys, MaxCachedKeys int64
	Hits, Misses                             int64
	OOMRestarts, HashRestarts                int64
	ManualRestarts                           int64

	StartTime       time.Time
	LastRestartTime time.Time // zero when there has been none

	JITEnabled                   bool
	JITBufferSize, JITBufferFree int64

	Config Config
}

// Config holds the directives the verdict uses.
type Config struct {
	Enable                bool
	MemoryConsumption     int64   // bytes
	InternedStringsBuffer int64   // megabytes, as written
	MaxAcceleratedFiles   int64   // as written; php rounds it up to a prime: see MaxCachedKeys
	MaxWastedPercentage   float64 // a ratio: 0.05 is 5%
	ValidateTimestamps    bool
	RevalidateFreq        int64
	ForceRestartTimeout   int64 // seconds
	FileUpdateProtection  int64 // seconds
	RestrictAPI           string
	FileCacheOnly         bool
	JIT                   string
	JITBufferSize         int64
}

// FillRatio is (used + wasted) / (used + free + wasted): the share of the
// shared memory that holds no free space.
func (s *Status) FillRatio() float64 {
	total := s.MemoryUsed + s.MemoryFree + s.MemoryWasted
	if total <= 0 {
		return 0
	}
	return float64(s.MemoryUsed+s.MemoryWasted) / float64(total)
}

// WastedRatio is wasted / all of the shared memory, the number php compares
// with opcache.max_wasted_percentage before it restarts a full cache.
func (s *Status) WastedRatio() float64 {
	total := s.MemoryUsed + s.MemoryFree + s.MemoryWasted
	if total <= 0 {
		return 0
	}
	return float64(s.MemoryWasted) / float64(total)
}

// HitRate is hits / (hits + misses), 0 before any request.
func (s *Status) HitRate() float64 {
	if s.Hits+s.Misses == 0 {
		return 0
	}
	return float64(s.Hits) / float64(s.Hits+s.Misses)
}

// KeysFull reports whether the key table has no room left.
func (s *Status) KeysFull() bool { return s.MaxCachedKeys > 0 && s.CachedKeys >= s.MaxCachedKeys }

// InternedFull reports whether the interned strings buffer has no room left.
func (s *Status) InternedFull() bool {
	return s.InternedSize > 0 && s.InternedFree < s.InternedSize/100
}

// Guard is the FastCGI parameter the scripts answer to: status for the
// status script, the action for an action script. It has no HTTP_ prefix,
// so nginx never passes one from a client. It is no proof of anything:
// whoever reaches a pool's socket sets any parameter.
const Guard = "FPMGUARD_OPCACHE"

// Client runs the scripts through php-fpm.
type Client struct {
	FastCGI fastcgi.Client
	// Script is the status script's path as php-fpm sees it
	// (SCRIPT_FILENAME). It only reads.
	Script string
	// Actions is where Reset and Invalidate write the script of their one
	// call, removed when it ends: the only code that changes the cache.
	Actions Place
}

func (c Client) call(ctx context.Context, addr fastcgi.Address, script, action string) (*answer, error) {
	req := fastcgi.Request{Path: "/" + path.Base(script), Script: script, Params: map[string]string{Guard: action}}
	resp, err := c.FastCGI.Do(ctx, addr, req)
	if err != nil {
		if fe, ok := fastcgi.AsError(err); ok && fe.Class == fastcgi.ClassNotFound {
			fe.Hint = fmt.Sprintf("php-fpm cannot read %s: it must exist as that path inside php-fpm's file system (and chroot), readable by the pool's user; when php-fpm runs in another container, mount a volume at %s in both (examples/kubernetes/sidecar.yaml)", script, path.Dir(script))
		}
		return nil, fmt.Errorf("opcache %s: %w", action, err)
	}
	bad := func(err error) error {
		return &fastcgi.Error{Op: "opcache " + action, Addr: addr, Class: fastcgi.ClassBadResponse, Err: err,
			Hint: fmt.Sprintf("%s did not answer as fpmguard's opcache script: check that it is this fpmguard's copy and that php-fpm runs it as PHP", script)}
	}
	var a answer
	if err := json.Unmarshal(resp.Body, &a); err != nil {
		return nil, bad(fmt.Errorf("the script's answer is not JSON: %w", err))
	}
	if a.Schema != 1 {
		return nil, bad(fmt.Errorf("the script speaks schema %d, want 1", a.Schema))
	}
	return &a, nil
}

// Read returns the opcache status of the master behind addr.
func (c Client) Read(ctx context.Context, addr fastcgi.Address) (*Status, error) {
	a, err := c.call(ctx, addr, c.Script, "status")
	if err != nil {
		return nil, err
	}
	return a.status(), nil
}

// act runs one action through a script written for this call alone, and
// removes the script when the call ends, answered or not.
func (c Client) act(ctx context.Context, addr fastcgi.Address, req actionRequest) (*answer, error) {
	script, remove, err := c.Actions.action(req)
	if err != nil {
		return nil, fmt.Errorf("opcache %s: %w", req.Action, err)
	}
	defer remove()
	return c.call(ctx, addr, script, req.Action)
}

// Reset runs opcache_reset() inside php-fpm and returns whether PHP
// accepted it, and the status after.
func (c Client) Reset(ctx context.Context, addr fastcgi.Address) (bool, *Status, error) {
	a, err := c.act(ctx, addr, actionRequest{Action: "reset"})
	if err != nil {
		return false, nil, err
	}
	var ok bool
	if err := json.Unmarshal(a.Result, &ok); err != nil && a.Error == "" {
		return false, nil, fmt.Errorf("opcache reset via %s: unexpected result %s", addr, a.Result)
	}
	return ok, a.status(), nil
}

// Invalidate runs opcache_invalidate(path, true) inside php-fpm for each
// path and each match of glob (matched by PHP, inside php-fpm's file
// system). It returns the result per path.
func (c Client) Invalidate(ctx context.Context, addr fastcgi.Address, paths []string, glob string) (map[string]bool, error) {
	for _, p := range paths {
		if strings.ContainsAny(p, "\n\x00") || !path.IsAbs(p) {
			return nil, fmt.Errorf("opcache invalidate: %q must be an absolute path without newlines", p)
		}
	}
	a, err := c.act(ctx, addr, actionRequest{Action: "invalidate", Paths: paths, Glob: glob})
	if err != nil {
		return nil, err
	}
	if a.Error != "" {
		return nil, fmt.Errorf("opcache invalidate via %s: %s", addr, a.Error)
	}
	out := map[string]bool{}
	// PHP encodes an empty array as [] rather than {}.
	if string(a.Result) != "[]" {
		if err := json.Unmarshal(a.Result, &out); err != nil {
			return nil, fmt.Errorf("opcache invalidate via %s: unexpected result %s", addr, a.Result)
		}
	}
	return out, nil
}

// answer is the script's JSON.
type answer struct {
	Schema     int             `json:"schema"`
	PHPVersion string          `json:"php_version"`
	PID        int             `json:"pid"`
	Loaded     bool            `json:"loaded"`
	Restricted bool            `json:"restricted"`
	Error      string          `json:"error"`
	Result     json.RawMessage `json:"result"`
	// CfgMemoryConsumption is get_cfg_var('opcache.memory_consumption'):
	// a string of megabytes, false for PHP's default, absent from an
	// answer without it.
	CfgMemoryConsumption any `json:"cfg_memory_consumption"`
	Status               *struct {
		Enabled           bool `json:"opcache_enabled"`
		CacheFull         bool `json:"cache_full"`
		RestartPending    bool `json:"restart_pending"`
		RestartInProgress bool `json:"restart_in_progress"`
		FileCacheOnly     bool `json:"file_cache_only"`
		Memory            struct {
			Used   int64 `json:"used_memory"`
			Free   int64 `json:"free_memory"`
			Wasted int64 `json:"wasted_memory"`
		} `json:"memory_usage"`
		Interned struct {
			Size    int64 `json:"buffer_size"`
			Used    int64 `json:"used_memory"`
			Free    int64 `json:"free_memory"`
			Strings int64 `json:"number_of_strings"`
		} `json:"interned_strings_usage"`
		Stats struct {
			Scripts        int64 `json:"num_cached_scripts"`
			Keys           int64 `json:"num_cached_keys"`
			MaxKeys        int64 `json:"max_cached_keys"`
			Hits           int64 `json:"hits"`
			Misses         int64 `json:"misses"`
			StartTime      int64 `json:"start_time"`
			LastRestart    int64 `json:"last_restart_time"`
			OOMRestarts    int64 `json:"oom_restarts"`
			HashRestarts   int64 `json:"hash_restarts"`
			ManualRestarts int64 `json:"manual_restarts"`
		} `json:"opcache_statistics"`
		JIT struct {
			Enabled bool `json:"enabled"` // a buffer was made at start
			// On: the JIT compiles (opcache.jit is not disable or off).
			// 8.4 makes a 64 MB buffer by default with the JIT off.
			On         *bool `json:"on"`
			BufferSize int64 `json:"buffer_size"`
			BufferFree int64 `json:"buffer_free"`
		} `json:"jit"`
	} `json:"status"`
	Configuration *struct {
		Directives struct {
			Enable                bool    `json:"opcache.enable"`
			MemoryConsumption     int64   `json:"opcache.memory_consumption"`
			InternedStringsBuffer int64   `json:"opcache.interned_strings_buffer"`
			MaxAcceleratedFiles   int64   `json:"opcache.max_accelerated_files"`
			MaxWastedPercentage   float64 `json:"opcache.max_wasted_percentage"`
			ValidateTimestamps    bool    `json:"opcache.validate_timestamps"`
			RevalidateFreq        int64   `json:"opcache.revalidate_freq"`
			ForceRestartTimeout   int64   `json:"opcache.force_restart_timeout"`
			FileUpdateProtection  int64   `json:"opcache.file_update_protection"`
			RestrictAPI           string  `json:"opcache.restrict_api"`
			FileCacheOnly         bool    `json:"opcache.file_cache_only"`
			JIT                   any     `json:"opcache.jit"`
			JITBufferSize         int64   `json:"opcache.jit_buffer_size"`
		} `json:"directives"`
	} `json:"configuration"`
}

func (a *answer) status() *Status {
	s := &Status{PHPVersion: a.PHPVersion, WorkerPID: a.PID, Loaded: a.Loaded, Restricted: a.Restricted, Error: a.Error}
	if c := a.Configuration; c != nil {
		d := c.Directives
		s.Config = Config{
			Enable: d.Enable, MemoryConsumption: d.MemoryConsumption, InternedStringsBuffer: d.InternedStringsBuffer,
			MaxAcceleratedFiles: d.MaxAcceleratedFiles, MaxWastedPercentage: d.MaxWastedPercentage,
			ValidateTimestamps: d.ValidateTimestamps, RevalidateFreq: d.RevalidateFreq, ForceRestartTimeout: d.ForceRestartTimeout,
			FileUpdateProtection: d.FileUpdateProtection, RestrictAPI: d.RestrictAPI, FileCacheOnly: d.FileCacheOnly,
			JIT: fmt.Sprint(d.JIT), JITBufferSize: d.JITBufferSize,
		}
		s.FileCacheOnly = d.FileCacheOnly
	}
	st := a.Status
	if st == nil {
		return s
	}
	s.Enabled = st.Enabled
	s.CacheFull, s.RestartPending, s.RestartInProgress = st.CacheFull, st.RestartPending, st.RestartInProgress
	s.FileCacheOnly = s.FileCacheOnly || st.FileCacheOnly
	s.MemoryUsed, s.MemoryFree, s.MemoryWasted = st.Memory.Used, st.Memory.Free, st.Memory.Wasted
	s.InternedSize, s.InternedUsed, s.InternedFree, s.InternedStrings = st.Interned.Size, st.Interned.Used, st.Interned.Free, st.Interned.Strings
	s.CachedScripts, s.CachedKeys, s.MaxCachedKeys = st.Stats.Scripts, st.Stats.Keys, st.Stats.MaxKeys
	s.Hits, s.Misses = st.Stats.Hits, st.Stats.Misses
	s.OOMRestarts, s.HashRestarts, s.ManualRestarts = st.Stats.OOMRestarts, st.Stats.HashRestarts, st.Stats.ManualRestarts
	if st.Stats.StartTime > 0 {
		s.StartTime = time.Unix(st.Stats.StartTime, 0).UTC()
	}
	if st.Stats.LastRestart > 0 {
		s.LastRestartTime = time.Unix(st.Stats.LastRestart, 0).UTC()
	}
	s.JITEnabled, s.JITBufferSize, s.JITBufferFree = st.JIT.Enabled, st.JIT.BufferSize, st.JIT.BufferFree
	if st.JIT.On != nil {
		s.JITEnabled = st.JIT.Enabled && *st.JIT.On
	}
	if seg := a.segmentBytes(); seg > 0 && s.Config.MemoryConsumption > 0 && seg != s.Config.MemoryConsumption {
		// The pool set its own opcache.memory_consumption: PHP ignores it
		// for the shared memory, but takes used_memory as that value less
		// the free and wasted memory (negative for a smaller one).
		s.MemoryUsed += seg - s.Config.MemoryConsumption
		s.PoolMemoryConsumption, s.Config.MemoryConsumption = s.Config.MemoryConsumption, seg
	}
	return s
}

// segmentBytes is the size of the shared memory, as the master read
// opcache.memory_consumption at its start and as PHP applies it: whole
// megabytes (atoi); 0 when the answer does not say, or says less than
// the 8 MB PHP requires (PHP's own handling of that differs by version).
func (a *answer) segmentBytes() int64 {
	mb := int64(128) // PHP's default: get_cfg_var() gave false
	switch v := a.CfgMemoryConsumption.(type) {
	case string:
		v = strings.TrimSpace(v)
		end := 0
		for end < len(v) && v[end] >= '0' && v[end] <= '9' {
			end++
		}
		if end > 7 {
			return 0 // 10 TB or more: no shared memory is that large
		}
		mb, _ = strconv.ParseInt(v[:end], 10, 64)
	case bool:
		if v {
			return 0
		}
	default:
		return 0
	}
	if mb < 8 {
		return 0
	}
	return mb << 20
}
