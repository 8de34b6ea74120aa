// pause: the pod sandbox's process for the bed's real nodes (containerd needs a local
// sandbox image; no registry is reachable). As PID 1 of the pod it must exit on
// SIGTERM/SIGINT (busybox sleep ignores them there) and reap the zombies that other
// containers sharing its PID namespace leave behind.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
