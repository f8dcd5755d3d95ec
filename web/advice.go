package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/fpmguard/fpmguard/advise"
	"github.com/fpmguard/fpmguard/history"
)

// historian is a source that keeps a history: a watcher of serve or run.
type historian interface {
	History() *history.History
}

// adviceHandler answers GET /advice with the settings the history calls
// for, as JSON. ?memory=2G and ?reserve=256M override the budget found,
// as `fpmguard advise --memory` and `--reserve` do.
func adviceHandler(current func() Source) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		hs, ok := current().(historian)
		if !ok || hs.History() == nil {
			http.Error(rw, "this fpmguard keeps no history", http.StatusNotFound)
			return
		}
		var o advise.Options
		for _, q := range []struct {
			name string
			to   *uint64
		}{{"memory", &o.MemoryBytes}, {"reserve", &o.ReserveBytes}} {
			v := r.URL.Query().Get(q.name)
			if v == "" {
				continue
			}
			n, err := advise.ParseSize(v)
			if err != nil {
				http.Error(rw, q.name+": "+err.Error(), http.StatusBadRequest)
				return
			}
			*q.to = n
		}
		a, err := advise.FromSummary(hs.History().Summary(), advise.System, o, time.Now())
		if err != nil {
			http.Error(rw, "advice: "+err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(rw, a)
	}
}

// Advice reads GET /advice; memory and reserve, when not "", override the
// budget the remote finds.
func (r *Remote) Advice(ctx context.Context, memory, reserve string) (*advise.Advice, error) {
	q := url.Values{}
	if memory != "" {
		q.Set("memory", memory)
	}
	if reserve != "" {
		q.Set("reserve", reserve)
	}
	body, code, err := r.do(ctx, http.MethodGet, r.url("/advice", q), nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s/advice answered %d: %s", r, code, oneLine(body))
	}
	var a advise.Advice
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("reading %s/advice: %w", r, err)
	}
	return &a, nil
}
