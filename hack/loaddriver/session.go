package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	nri "github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/google/go-containerregistry/pkg/name"
)

// session is one plugin process connected to a fresh runtime side.
type session struct {
	dir    string
	rt     *nri.Adaptation
	cmd    *exec.Cmd
	log    *os.File
	nextID atomic.Int64
}

var pod = &api.PodSandbox{Id: "pod0", Name: "pod0", Uid: "uid0", Namespace: "default"}

// startSession starts the runtime side of NRI on a temporary socket, then
// the plugin (argv, given the socket and a scratch folder), and waits for
// the plugin to synchronize.
func startSession(argv func(sock, dir string) []string) (*session, error) {
	dir, err := os.MkdirTemp("", "sg-load-") // short: socket paths are limited
	if err != nil {
		return nil, err
	}
	s := &session{dir: dir}
	sock := filepath.Join(dir, "nri.sock")
	synced := make(chan struct{}, 1)
	// The runtime side also synchronizes once in Start, for its
	// pre-installed plugins (none here): only a call after Start is the
	// plugin's.
	var started atomic.Bool
	noUpdate := func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil }
	s.rt, err = nri.New("loaddriver", "v1", func(ctx context.Context, cb nri.SyncCB) error {
		_, err := cb(ctx, nil, nil)
		if started.Load() {
			select {
			case synced <- struct{}{}:
			default:
			}
		}
		return err
	}, noUpdate, nri.WithPluginPath(filepath.Join(dir, "plugins")), nri.WithPluginConfigPath(filepath.Join(dir, "conf.d")), nri.WithSocketPath(sock))
	if err != nil {
		s.close()
		return nil, err
	}
	if err := s.rt.Start(); err != nil {
		s.close()
		return nil, err
	}
	started.Store(true)
	if s.log, err = os.Create(filepath.Join(dir, "plugin.log")); err != nil {
		s.close()
		return nil, err
	}
	args := argv(sock, dir)
	s.cmd = exec.Command(args[0], args[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		s.close()
		return nil, err
	}
	select {
	case <-synced:
		return s, nil
	case <-time.After(30 * time.Second):
		b, _ := os.ReadFile(s.log.Name())
		s.close()
		return nil, fmt.Errorf("%s did not connect within 30s:\n%s", args[0], b)
	}
}

// create asks the plugin about one container of image and removes the
// container again (untimed); it returns the CreateContainer round trip.
func (s *session) create(image name.Digest) (time.Duration, error) {
	id := "ctr-" + strconv.FormatInt(s.nextID.Add(1), 10)
	ctr := &api.Container{Id: id, PodSandboxId: pod.Id, Name: "ctr", Image: &api.Image{Name: image.String(), Digest: image.DigestStr()}}
	start := time.Now()
	_, err := s.rt.CreateContainer(context.Background(), &api.CreateContainerRequest{Pod: pod, Container: ctr})
	took := time.Since(start)
	_ = s.rt.RemoveContainer(context.Background(), &api.RemoveContainerRequest{Pod: pod, Container: ctr})
	return took, err
}

// createAll asks about every image, parallel at a time, and returns the
// round trips in image order and the errors by kind.
func (s *session) createAll(images []name.Digest, parallel int) (lat []time.Duration, denied, deadline int) {
	lat = make([]time.Duration, len(images))
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(images) {
					return
				}
				took, err := s.create(images[i])
				lat[i] = took
				if err != nil {
					mu.Lock()
					if strings.Contains(err.Error(), "deadline") {
						deadline++
					} else {
						denied++
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return lat, denied, deadline
}

// peaks is what sample found, in bytes.
type peaks struct{ anon, child, total int64 }

// sample samples every 20 ms, until stop is closed, the plugin's
// anonymous resident memory (RssAnon: what it allocated, without the pages
// of its binary), its children's peak resident sets (VmHWM: a verifier
// process) and the sum of the plugin's and its children's resident sets,
// and returns the highest of each.
func (s *session) sample(stop <-chan struct{}) <-chan peaks {
	out := make(chan peaks, 1)
	pid := s.cmd.Process.Pid
	go func() {
		var p peaks
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if a, err := procStatus(pid, "RssAnon:"); err == nil && a > p.anon {
				p.anon = a
			}
			total, _ := procStatus(pid, "VmRSS:")
			for _, c := range children(pid) {
				if hwm, err := procStatus(c, "VmHWM:"); err == nil && hwm > p.child {
					p.child = hwm
				}
				if rss, err := procStatus(c, "VmRSS:"); err == nil {
					total += rss
				}
			}
			p.total = max(p.total, total)
			select {
			case <-stop:
				out <- p
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// children are the process IDs of pid's children: each thread's
// children file lists those that thread started.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// procStatus reads one size field of /proc/PID/status, in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// rss returns the plugin process's resident set (VmRSS) and its peak
// (VmHWM), in bytes.
func (s *session) rss() (cur, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			cur = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	if cur == 0 || peak == 0 {
		return 0, 0, errors.New("no VmRSS/VmHWM in /proc status")
	}
	return cur, peak, sc.Err()
}

func (s *session) close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
	if s.rt != nil {
		s.rt.Stop()
	}
	if s.log != nil {
		s.log.Close()
	}
	os.RemoveAll(s.dir)
}
