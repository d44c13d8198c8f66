package bundle

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
)

// DefaultProgressInterval is how often a progress line is written when there is no terminal.
const DefaultProgressInterval = 5 * time.Second

// progress reports the copy: a bar (bytes, rate, ETA) on a terminal, otherwise a line every interval with images
// done, bytes and rate.
type progress struct {
	verb, noun string    // "mirror", "images": what the lines say is done to what
	out        io.Writer // nil: silent
	bar        bool
	interval   time.Duration

	images, imagesDone atomic.Int64
	total, done        atomic.Int64 // bytes to fetch, fetched

	mu      sync.Mutex
	pb      *progressbar.ProgressBar
	stop    chan struct{}
	stopped chan struct{}
}

func newProgress(verb, noun string, out io.Writer, bar bool, interval time.Duration) *progress {
	if interval <= 0 {
		interval = DefaultProgressInterval
	}

	return &progress{verb: verb, noun: noun, out: out, bar: bar, interval: interval}
}

// printf writes a line outside the bar (before it starts, or once it ended).
func (p *progress) printf(format string, args ...any) {
	if p.out != nil {
		fmt.Fprintf(p.out, format+"\n", args...)
	}
}

// begin starts reporting a copy of images needing bytes.
func (p *progress) begin(images int, bytes int64) {
	p.images.Store(int64(images))
	p.total.Store(bytes)

	if p.out == nil {
		return
	}

	p.stop, p.stopped = make(chan struct{}), make(chan struct{})

	if p.bar {
		p.mu.Lock()
		p.pb = progressbar.NewOptions64(max(bytes, 1),
			progressbar.OptionSetWriter(p.out),
			progressbar.OptionSetDescription(p.describe()),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowCount(),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionFullWidth(),
			progressbar.OptionSetRenderBlankState(true),
		)
		p.mu.Unlock()
	}

	go p.loop()
}

func (p *progress) describe() string {
	return fmt.Sprintf("%s %d/%d", p.noun, p.imagesDone.Load(), p.images.Load())
}

func (p *progress) loop() {
	defer close(p.stopped)

	tick := p.interval
	if p.bar {
		tick = 500 * time.Millisecond // the description (images done) is refreshed; bytes move the bar themselves
	}

	t := time.NewTicker(tick)
	defer t.Stop()

	last, lastAt := p.done.Load(), time.Now()

	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			if p.bar {
				p.mu.Lock()
				p.pb.Describe(p.describe())
				p.mu.Unlock()

				continue
			}

			done := p.done.Load()
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			last, lastAt = done, now

			p.printf("%s: %d/%d %s, %s of %s, %s/s", p.verb, p.imagesDone.Load(), p.images.Load(), p.noun,
				humanize.IBytes(uint64(max(done, 0))), humanize.IBytes(uint64(max(p.total.Load(), 0))),
				humanize.IBytes(uint64(max(rate, 0))))
		}
	}
}

// add counts fetched bytes.
func (p *progress) add(n int64) {
	p.done.Add(n)

	if p.bar {
		p.mu.Lock()
		if p.pb != nil {
			_ = p.pb.Add64(n) // rendering only
		}
		p.mu.Unlock()
	}
}

// grow changes the bytes to fetch (a blob found damaged, or found present after all).
func (p *progress) grow(n int64) {
	total := p.total.Add(n)

	if p.bar {
		p.mu.Lock()
		if p.pb != nil {
			p.pb.ChangeMax64(max(total, 1))
		}
		p.mu.Unlock()
	}
}

func (p *progress) imageDone() {
	p.imagesDone.Add(1)

	if p.bar {
		p.mu.Lock()
		if p.pb != nil {
			p.pb.Describe(p.describe())
		}
		p.mu.Unlock()
	}
}

// end stops reporting.
func (p *progress) end() {
	if p.stop == nil {
		return
	}

	close(p.stop)
	<-p.stopped
	p.stop = nil

	if p.bar {
		p.mu.Lock()
		p.pb.Describe(p.describe())

		if p.done.Load() >= p.total.Load() {
			_ = p.pb.Finish() // rendering only
		} else {
			_ = p.pb.Exit() // stopped short: the bar stays where it was
		}

		p.pb = nil
		p.mu.Unlock()
		fmt.Fprintln(p.out)
	}
}
