package supervisor

import (
	"reflect"
	"slices"
	"testing"

	"github.com/fpmguard/fpmguard/waits"
)

func TestMergeUnknown(t *testing.T) {
	unknown := func(reason string, pids ...int) waits.Group {
		return waits.Group{Wait: waits.Wait{PID: pids[0], Kind: waits.KindUnknown, FD: -1, Reason: reason}, PIDs: pids}
	}
	sleep := func(pids ...int) waits.Group {
		return waits.Group{Wait: waits.Wait{PID: pids[0], Kind: waits.KindSleep, FD: -1}, PIDs: pids}
	}
	denied := "its system call could not be read (permission denied)"
	busy := "it changed while being read, 3 times: it is busy, not blocked"
	type group struct {
		kind   waits.Kind
		reason string
		pids   []int
	}
	for _, tc := range []struct {
		name string
		in   []waits.Group
		want []group
	}{
		{"none", nil, []group{}},
		{"no unknown: unchanged", []waits.Group{sleep(1, 2), {Wait: waits.Wait{PID: 3, Kind: waits.KindFutex, FD: -1}, PIDs: []int{3}}},
			[]group{{waits.KindSleep, "", []int{1, 2}}, {waits.KindFutex, "", []int{3}}}},
		{"one unknown group: unchanged", []waits.Group{sleep(1, 2), unknown(denied, 3)},
			[]group{{waits.KindSleep, "", []int{1, 2}}, {waits.KindUnknown, denied, []int{3}}}},
		{"unknowns for one reason: one group, the reason kept", []waits.Group{unknown(denied, 1), unknown(denied, 2)},
			[]group{{waits.KindUnknown, denied, []int{1, 2}}}},
		{"unknowns for different reasons: one group without a reason", []waits.Group{unknown(denied, 1, 2), unknown(busy, 3)},
			[]group{{waits.KindUnknown, "", []int{1, 2, 3}}}},
		{"a reason differing after two alike: none", []waits.Group{unknown(denied, 1), unknown(denied, 2), unknown(busy, 3)},
			[]group{{waits.KindUnknown, "", []int{1, 2, 3}}}},
		{"merged unknowns outnumbering a known group come first", []waits.Group{sleep(1, 2), unknown(denied, 3), unknown(busy, 4), unknown("the process has exited", 5)},
			[]group{{waits.KindUnknown, "", []int{3, 4, 5}}, {waits.KindSleep, "", []int{1, 2}}}},
		{"as many: the order kept", []waits.Group{sleep(1, 2), unknown(denied, 3), unknown(busy, 4)},
			[]group{{waits.KindSleep, "", []int{1, 2}}, {waits.KindUnknown, "", []int{3, 4}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []waits.Group // a copy, to see that mergeUnknown leaves it alone
			for _, g := range tc.in {
				in = append(in, waits.Group{Wait: g.Wait, PIDs: slices.Clone(g.PIDs)})
			}
			got := []group{}
			for _, g := range mergeUnknown(in) {
				got = append(got, group{g.Wait.Kind, g.Wait.Reason, g.PIDs})
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("mergeUnknown:\n got %+v\nwant %+v", got, tc.want)
			}
			if !reflect.DeepEqual(in, tc.in) {
				t.Errorf("the groups given were changed: %+v, were %+v", in, tc.in)
			}
		})
	}
}
