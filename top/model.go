package top

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/fpmguard/fpmguard/supervisor"
	"github.com/fpmguard/fpmguard/watch"
)

// sortKey orders the workers.
type sortKey int

const (
	sortAge sortKey = iota // oldest request first
	sortCPU                // busiest CPU first
	sortMem                // largest memory first
)

func (k sortKey) String() string {
	return [...]string{"age", "cpu", "memory"}[k]
}

// mode is what the screen shows besides the pools.
type mode int

const (
	modeTable   mode = iota // the workers
	modeHelp                // every key
	modeSlowlog             // the selected worker's slowlog entry
	modeStack               // the selected worker's wait and PHP stack, read now
	modeConfirm             // the kill question
)

type keyMap struct {
	Up, Down, Top, Bottom   key.Binding
	SortAge, SortCPU, SortM key.Binding
	Pool, Pause, Slowlog    key.Binding
	Stack                   key.Binding
	Kill, Help, Quit, Back  key.Binding
	// killOffered shows the kill key in the footer: the selected worker
	// is one the watcher may kill. Pressed anyway, the key says why not.
	killOffered bool
}

func newKeys() keyMap {
	return keyMap{
		Up:      key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:    key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		Top:     key.NewBinding(key.WithKeys("home", "g"), key.WithHelp("home/g", "first worker")),
		Bottom:  key.NewBinding(key.WithKeys("end", "G"), key.WithHelp("end/G", "last worker")),
		SortAge: key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "sort by age")),
		SortCPU: key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "sort by CPU")),
		SortM:   key.NewBinding(key.WithKeys("m"), key.WithHelp("m", "sort by memory")),
		Pool:    key.NewBinding(key.WithKeys("p"), key.WithHelp("p", "next pool / all")),
		Pause:   key.NewBinding(key.WithKeys(" "), key.WithHelp("space", "pause")),
		Slowlog: key.NewBinding(key.WithKeys("s", "enter"), key.WithHelp("s", "slowlog")),
		Stack:   key.NewBinding(key.WithKeys("t"), key.WithHelp("t", "stack")),
		// Kill is away from the keys that move, and asks first.
		Kill: key.NewBinding(key.WithKeys("x"), key.WithHelp("x", "kill")),
		Help: key.NewBinding(key.WithKeys("?", "h"), key.WithHelp("?", "help")),
		Quit: key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Back: key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
	}
}

func (k keyMap) ShortHelp() []key.Binding {
	short := []key.Binding{k.Quit, k.Help, k.SortAge, k.SortCPU, k.SortM, k.Pool, k.Pause, k.Slowlog}
	if k.killOffered {
		short = append(short, k.Kill)
	}
	// Last: a narrow footer cuts it first (? lists it with the rest).
	return append(short, k.Stack)
}

func (k keyMap) FullHelp() [][]key.Binding {
	return [][]key.Binding{{k.Up, k.Down, k.Top, k.Bottom}, {k.SortAge, k.SortCPU, k.SortM, k.Pool}, {k.Pause, k.Slowlog, k.Stack, k.Kill, k.Help, k.Back, k.Quit}}
}

// row is one worker of the table.
type row struct {
	key    workerKey
	p      *supervisor.ProcessState
	cpuPct float64
	cpuOK  bool
	mem    uint64 // PSS when known, else RSS
}

// model is the view's state. Only bubbletea's loop touches it.
type model struct {
	opts Options
	keys keyMap
	help help.Model
	st   styles
	snap *watch.Snapshot
	hist *history
	rows []row
	sel  workerKey // the selected worker, kept across refreshes
	top  int       // the first row shown
	by   sortKey
	pool supervisor.PoolID // shown pool, the zero ID for all
	// labels name the pools of snap for people: a pool's name, or its ID
	// when another pool has the same name.
	labels map[supervisor.PoolID]string
	pause  bool
	mode   mode

	slowlog    []string // the entry shown, one line each
	slowlogFor workerKey
	stack      []string // the stack view, one line each
	stackFor   workerKey
	// ctx is Run's: what top asks ends with it.
	ctx         context.Context
	confirm     row
	msg         string
	msgOK       bool
	width, high int
}

func newModel(opts Options, r *lipgloss.Renderer) *model {
	opts.fill()
	h := help.New()
	h.ShortSeparator = "  "
	return &model{opts: opts, keys: newKeys(), help: h, st: newStyles(r), hist: newHistory(), ctx: context.Background()}
}

type tickMsg time.Time

type killMsg struct {
	res watch.KillResult
	err error
}

type slowlogMsg struct {
	key   workerKey
	entry string
	err   error
}

type stackMsg struct {
	key   workerKey
	stack *supervisor.Stack
	err   error
}

func (m *model) tick() tea.Cmd {
	return tea.Tick(m.opts.Refresh, func(t time.Time) tea.Msg { return tickMsg(t) })
}

func (m *model) Init() tea.Cmd {
	if s := m.opts.Snapshot(); s != nil {
		m.refresh(s)
	}
	return m.tick()
}

func (m *model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.high = msg.Width, msg.Height
		m.help.Width = msg.Width
	case tickMsg:
		if !m.pause {
			if s := m.opts.Snapshot(); s != nil {
				m.refresh(s)
			}
		}
		return m, m.tick()
	case killMsg:
		m.msg, m.msgOK = msg.res.Message, msg.res.Done()
		if msg.err != nil {
			m.msg, m.msgOK = "kill not sent: "+msg.err.Error(), false
		}
	case slowlogMsg:
		if m.mode != modeSlowlog || msg.key != m.slowlogFor {
			break
		}
		if msg.err != nil {
			m.slowlog = []string{msg.err.Error()}
			break
		}
		m.slowlog = strings.Split(msg.entry, "\n")
	case stackMsg:
		if m.mode != modeStack || msg.key != m.stackFor {
			break
		}
		m.stack = m.stackLines(msg)
	case tea.KeyMsg:
		return m, m.key(msg)
	}
	return m, nil
}

// key handles a key press.
func (m *model) key(msg tea.KeyMsg) tea.Cmd {
	if m.mode == modeConfirm {
		m.mode = modeTable
		if msg.String() != "y" && msg.String() != "Y" {
			m.msg, m.msgOK = "kill cancelled", true
			return nil
		}
		c, k := m.opts.Control, m.confirm.key
		m.msg, m.msgOK = fmt.Sprintf("asking to kill worker %d of pool %s…", k.pid, m.label(k.pool)), true
		who := m.opts.Who
		return func() tea.Msg {
			ctx, cancel := context.WithTimeout(m.ctx, askTimeout)
			defer cancel()
			// The full ID: the name alone may be another master's pool too.
			res, err := c.KillWorker(ctx, k.pool.String(), k.pid, who)
			return killMsg{res, err}
		}
	}
	switch {
	case key.Matches(msg, m.keys.Quit):
		return tea.Quit
	case key.Matches(msg, m.keys.Back):
		m.mode = modeTable
	case key.Matches(msg, m.keys.Help):
		m.mode = map[bool]mode{true: modeTable, false: modeHelp}[m.mode == modeHelp]
	case key.Matches(msg, m.keys.Up):
		m.move(-1)
	case key.Matches(msg, m.keys.Down):
		m.move(1)
	case key.Matches(msg, m.keys.Top):
		m.move(-len(m.rows))
	case key.Matches(msg, m.keys.Bottom):
		m.move(len(m.rows))
	case key.Matches(msg, m.keys.SortAge):
		m.setSort(sortAge)
	case key.Matches(msg, m.keys.SortCPU):
		m.setSort(sortCPU)
	case key.Matches(msg, m.keys.SortM):
		m.setSort(sortMem)
	case key.Matches(msg, m.keys.Pool):
		m.nextPool()
	case key.Matches(msg, m.keys.Pause):
		m.pause = !m.pause
	case key.Matches(msg, m.keys.Slowlog):
		return m.showSlowlog()
	case key.Matches(msg, m.keys.Stack):
		return m.showStack()
	case key.Matches(msg, m.keys.Kill):
		m.askKill()
	}
	return nil
}

func (m *model) setSort(by sortKey) {
	m.by = by
	m.sortRows()
	m.move(-len(m.rows)) // the first of the new order is the one to look at
}

// nextPool filters to the next pool, then back to all.
func (m *model) nextPool() {
	if m.snap == nil {
		return
	}
	ids := make([]supervisor.PoolID, 0, len(m.snap.Pools))
	for _, p := range m.snap.Pools {
		ids = append(ids, p.Report.ID())
	}
	i := slices.Index(ids, m.pool)
	switch {
	case m.pool == (supervisor.PoolID{}) && len(ids) > 0:
		m.pool = ids[0]
	case i >= 0 && i+1 < len(ids):
		m.pool = ids[i+1]
	default:
		m.pool = supervisor.PoolID{}
	}
	m.buildRows()
}

func (m *model) selected() (row, bool) {
	i := m.selIndex()
	if i < 0 {
		return row{}, false
	}
	return m.rows[i], true
}

func (m *model) selIndex() int {
	return slices.IndexFunc(m.rows, func(r row) bool { return r.key == m.sel })
}

// move moves the selection by d rows, within the table.
func (m *model) move(d int) {
	if len(m.rows) == 0 {
		return
	}
	i := max(0, min(len(m.rows)-1, max(m.selIndex(), 0)+d))
	m.sel = m.rows[i].key
	m.offerKill()
}

func (m *model) showSlowlog() tea.Cmd {
	r, ok := m.selected()
	if !ok {
		return nil
	}
	m.mode, m.slowlogFor = modeSlowlog, r.key
	if m.opts.Control == nil {
		m.slowlog = []string{"no slowlog here: this view cannot ask the watcher"}
		return nil
	}
	m.slowlog = []string{fmt.Sprintf("reading the slowlog of worker %d of pool %s…", r.key.pid, m.label(r.key.pool))}
	c, k := m.opts.Control, r.key
	return func() tea.Msg {
		ctx, cancel := contextWithTimeout(m.ctx)
		defer cancel()
		entry, err := c.Slowlog(ctx, k.pool.String(), k.pid)
		return slowlogMsg{k, entry, err}
	}
}

// askTimeout bounds what top asks of the watcher or a serve: a kill (the
// status page read again, the signal), a slowlog or stack read. The
// answer comes in milliseconds; a serve far away over a slow link may
// take seconds.
const askTimeout = 30 * time.Second

// contextWithTimeout is the context of one thing top asks: it ends with
// top, or after askTimeout.
func contextWithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, askTimeout)
}

func (m *model) askKill() {
	r, ok := m.selected()
	switch {
	case !ok:
		m.msg, m.msgOK = "no worker selected", false
	case m.opts.Control == nil:
		m.msg, m.msgOK = "this view cannot kill: it has no watcher to ask", false
	default:
		if why := m.unkillable(r); why != "" {
			m.msg, m.msgOK = fmt.Sprintf("worker %d of pool %s is not killed: %s", r.key.pid, m.label(r.key.pool), why), false
			return
		}
		m.mode, m.confirm = modeConfirm, r
	}
}

// unkillable says why the watcher would refuse to kill the worker of r
// whatever the moment, "" when it would not: the view never offers a kill
// that is refused for sure. The rule is the watcher's own.
func (m *model) unkillable(r row) string {
	if m.snap == nil {
		return "nothing is known of it yet"
	}
	for _, pv := range m.snap.Pools {
		if pv.Report.ID() == r.key.pool {
			return watch.Unkillable(pv.Report, r.p)
		}
	}
	return "its pool is no longer watched"
}

// offerKill shows the kill key in the footer only for a worker it may
// kill.
func (m *model) offerKill() {
	r, ok := m.selected()
	m.keys.killOffered = ok && m.opts.Control != nil && m.unkillable(r) == ""
}

// refresh takes in a new snapshot.
func (m *model) refresh(s *watch.Snapshot) {
	m.snap = s
	ids := make([]supervisor.PoolID, len(s.Pools))
	for i, p := range s.Pools {
		ids[i] = p.Report.ID()
	}
	m.labels = supervisor.Labels(ids)
	m.hist.observe(s)
	m.buildRows()
}

// buildRows lists the workers shown, in order, keeping the selection.
func (m *model) buildRows() {
	m.rows = m.rows[:0]
	if m.snap == nil {
		return
	}
	for _, pv := range m.snap.Pools {
		r := pv.Report
		if m.pool != (supervisor.PoolID{}) && r.ID() != m.pool {
			continue
		}
		for i := range r.Processes {
			p := &r.Processes[i]
			k := workerKey{r.ID(), p.PID}
			cpu, ok := m.hist.cpuPercent(k)
			mem := p.PSSBytes
			if mem == 0 {
				mem = p.RSSBytes
			}
			m.rows = append(m.rows, row{key: k, p: p, cpuPct: cpu, cpuOK: ok, mem: mem})
		}
	}
	m.sortRows()
	if m.selIndex() < 0 && len(m.rows) > 0 {
		m.sel = m.rows[0].key
	}
	m.offerKill()
}

// sortRows orders the rows: the chosen key first, busy before idle, then
// pool and pid so that the order holds still between refreshes.
func (m *model) sortRows() {
	slices.SortStableFunc(m.rows, func(a, b row) int {
		var c int
		switch m.by {
		case sortAge:
			c = cmpDesc(age(a.p), age(b.p))
		case sortCPU:
			c = cmpDesc(a.cpuPct, b.cpuPct)
		case sortMem:
			c = cmpDesc(float64(a.mem), float64(b.mem))
		}
		if c != 0 {
			return c
		}
		if c = a.key.pool.Compare(b.key.pool); c != 0 {
			return c
		}
		return a.key.pid - b.key.pid
	})
}

// label is the pool's name for people: its name, or its ID when another
// pool shown has the same name.
func (m *model) label(id supervisor.PoolID) string {
	if l, ok := m.labels[id]; ok {
		return l
	}
	return id.String()
}

// age is a busy worker's request age; an idle worker has none and sorts
// last.
func age(p *supervisor.ProcessState) float64 {
	if p.Idle() {
		return -1
	}
	return p.RequestDurationSeconds
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
