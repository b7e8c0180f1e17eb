package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Proc names one process for as long as it lives: its pid and its start time (clock ticks
// after boot, field 22 of /proc/PID/stat), so that a pid the kernel has given to a new
// process is not mistaken for it.
type Proc struct {
	PID   int
	Start uint64
}

// Stat is what /proc/PID/stat says of a process that tests of process lifetimes need.
type Stat struct {
	State byte // R, S, D, Z (exited, not yet reaped), ...
	PPID  int
	PGRP  int
	Start uint64
}

// ReadStat parses /proc/PID/stat (Linux).
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	// "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: no ')' in %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field n is f[n-3]
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %d fields after the command name", pid, len(f))
	}
	var st Stat
	st.State = f[0][0]
	if st.PPID, err = strconv.Atoi(f[1]); err == nil {
		if st.PGRP, err = strconv.Atoi(f[2]); err == nil {
			st.Start, err = strconv.ParseUint(f[19], 10, 64)
		}
	}
	if err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return st, nil
}

// Children lists the processes whose parent is ppid, zombies included (from /proc).
func Children(ppid int) ([]Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := ReadStat(pid)
		if err != nil || st.PPID != ppid {
			continue // gone meanwhile, or another's child
		}
		out = append(out, Proc{PID: pid, Start: st.Start})
	}
	return out, nil
}

// Alive reports whether p still runs: its pid exists with its start time and is not a
// zombie (a zombie has exited and only waits for its parent to reap it).
func (p Proc) Alive() bool {
	st, err := ReadStat(p.PID)
	return err == nil && st.Start == p.Start && st.State != 'Z' && st.State != 'X'
}
