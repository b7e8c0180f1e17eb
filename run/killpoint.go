package run

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Test hooks for the chaos tests (package chaos). They do nothing unless set:
//
//	SPECTRACLIP_TEST_KILL_AT=N    the process SIGKILLs itself at its N-th kill point (1-based)
//	SPECTRACLIP_TEST_KILL_LOG=F   every kill point passed is appended to F (one label a line)
//
// Kill points sit before every write and every rename of a checkpoint.
const (
	EnvKillAt  = "SPECTRACLIP_TEST_KILL_AT"
	EnvKillLog = "SPECTRACLIP_TEST_KILL_LOG"
)

var kill struct {
	once   sync.Once
	mu     sync.Mutex
	at     int
	log    string
	passed int
}

// KillPoint marks a point where the chaos tests may kill the process.
func KillPoint(label string) {
	kill.once.Do(func() {
		kill.at, _ = strconv.Atoi(os.Getenv(EnvKillAt))
		kill.log = os.Getenv(EnvKillLog)
	})
	if kill.at <= 0 && kill.log == "" {
		return
	}
	kill.mu.Lock()
	defer kill.mu.Unlock()
	kill.passed++
	if kill.log != "" {
		if f, err := os.OpenFile(kill.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err == nil {
			fmt.Fprintf(f, "%d\t%s\n", kill.passed, label)
			f.Close()
		}
	}
	if kill.passed == kill.at {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		for {
			time.Sleep(time.Second) // the signal is on its way
		}
	}
}
