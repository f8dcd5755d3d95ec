package watch

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fpmguard/fpmguard/event"
	"github.com/fpmguard/fpmguard/human"
	"github.com/fpmguard/fpmguard/supervisor"
)

// detect records the events between prev and r. Only the pool's loop
// calls it.
func (w *Watcher) detect(pw *poolWatch, prev, r *supervisor.PoolReport) {
	// pool is the pool's name in the messages: with its master's when
	// another pool watched has the same name.
	pool, master := pw.name(), 0
	if r.Master != nil {
		master = r.Master.PID
	}
	add := func(kind event.Kind, pid int, format string, args ...any) {
		w.events.Add(event.Event{Pool: r.Name, MasterName: r.MasterName, Master: master, PID: pid, Kind: kind, Message: fmt.Sprintf(format, args...)})
	}
	// once reports a condition when it starts, and forgets it when it ends.
	once := func(key condition, on bool) bool {
		was := pw.announced[key]
		pw.announced[key] = on
		return on && !was
	}

	prevHealth := supervisor.HealthOK
	if prev != nil {
		prevHealth = prev.Health
	}
	if r.Health != prevHealth {
		if r.Health == supervisor.HealthOK {
			add(event.KindRecovered, 0, "pool %s recovered (was %s)", pool, prevHealth)
		} else {
			add(event.KindHealth, 0, "pool %s is %s: %s", pool, r.Health, strings.Join(r.Reasons, "; "))
		}
	}

	now := time.Now()
	live := map[int]bool{}
	for _, p := range r.Processes {
		live[p.PID] = true
		if once(condition{"hung", p.PID}, p.Hung) {
			add(event.KindHung, p.PID, "worker %d hung (%s): %s %s for %s in %s%s", p.PID, p.HungKind, p.RequestMethod, p.RequestURI, p.Age(), p.Script, waitNote(&p))
		}
		if once(condition{"stopped", p.PID}, p.OSState == supervisor.OSStopped) {
			add(event.KindStopped, p.PID, "worker %d is stopped (SIGSTOP or a tracer) while php-fpm says %s: it serves nothing; SIGCONT it or kill it", p.PID, p.State)
		}
		if once(condition{"zombie", p.PID}, p.OSState == supervisor.OSZombie) {
			add(event.KindZombie, p.PID, "worker %d is a zombie: its master has not reaped it", p.PID)
		}
		if p.OSState == supervisor.OSDiskSleep {
			if _, ok := pw.dSince[p.PID]; !ok {
				pw.dSince[p.PID] = now
			}
		} else {
			delete(pw.dSince, p.PID)
		}
		inD := p.OSState == supervisor.OSDiskSleep && now.Sub(pw.dSince[p.PID]) >= DiskSleepAfter
		if once(condition{"dsleep", p.PID}, inD) {
			add(event.KindDiskSleep, p.PID, "worker %d has been in disk sleep (D) for %s: stuck on storage (NFS, a full or failing disk); signals wait until the I/O ends", p.PID, human.Duration(now.Sub(pw.dSince[p.PID])))
		}
	}
	for pid := range pw.dSince {
		if !live[pid] {
			delete(pw.dSince, pid)
		}
	}
	for key := range pw.announced {
		if key.pid > 0 && !live[key.pid] {
			delete(pw.announced, key)
		}
	}

	if once(condition{what: "heartbeat"}, pw.failures >= w.cfg.UnhealthyAfter) {
		add(event.KindHeartbeat, 0, "heartbeat of pool %s failed %d times in a row: %s", pool, pw.failures, r.Heartbeat.Error)
	}
	if m := r.Master; m != nil {
		if once(condition{what: "master-gone"}, m.Gone()) {
			if m.PID == 0 {
				add(event.KindMaster, 0, "master of pool %s is not running: %s", pool, m.Error)
			} else {
				add(event.KindMaster, 0, "master %d of pool %s is gone: nothing respawns its workers", m.PID, pool)
			}
		}
		if once(condition{what: "master-stopped"}, m.Alive && m.OSState == supervisor.OSStopped) {
			add(event.KindMaster, 0, "master %d of pool %s is stopped (SIGSTOP): it respawns nothing until SIGCONT", m.PID, pool)
		}
		foreign := slices.IndexFunc(r.Processes, func(p supervisor.ProcessState) bool { return !p.ParentOK && p.OSState != supervisor.OSGone })
		if once(condition{what: "children"}, m.Alive && foreign >= 0) {
			p := r.Processes[foreign]
			add(event.KindMaster, p.PID, "the status page of pool %s names pid %d, which is not a worker of master %d (its parent is %d): fpmguard will not touch it", pool, p.PID, m.PID, p.Parent())
		}
	}
	if prev != nil && prev.Counters != nil && r.Counters != nil && r.Counters.MaxChildrenReached > prev.Counters.MaxChildrenReached {
		add(event.KindMaxChildren, 0, "pool %s reached pm.max_children (%d) again: %d times since start", pool, r.Config.MaxChildren, r.Counters.MaxChildrenReached)
	}
	if q := r.Waiting(); once(condition{what: "queue"}, q > 0) {
		add(event.KindListenQueue, 0, "%d requests wait in the listen queue of pool %s", q, pool)
	}
}
