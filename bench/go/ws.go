package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// wsEcho echoes every message back with its type until the client closes.
func wsEcho() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
}

// wsLoad opens -conns WebSockets and on each sends a -size message and waits for its echo,
// again and again, for -secs.
func wsLoad(args []string) error {
	flags := newFlags("ws-load")
	url := flags.String("url", "", "ws://HOST/ws")
	conns := flags.Int("conns", 50, "connections, one message in flight on each")
	secs := flags.Float64("secs", 5, "seconds")
	size := flags.Int("size", 64, "message bytes")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("-url is required")
	}
	msg := make([]byte, *size)
	run(*conns, *secs, func(_ int, deadline time.Time, t *tally) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(10*time.Second))
		defer cancel()
		c, _, err := websocket.Dial(ctx, *url, nil)
		if err != nil {
			fail(t, err)
			return
		}
		defer c.CloseNow()
		for time.Now().Before(deadline) {
			start := time.Now()
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				fail(t, err)
				return
			}
			_, got, err := c.Read(ctx)
			if err != nil {
				fail(t, err)
				return
			}
			if len(got) != len(msg) {
				fail(t, errors.New("short echo"))
				return
			}
			t.ops++
			t.lat = append(t.lat, time.Since(start))
		}
		_ = c.Close(websocket.StatusNormalClosure, "")
	})
	return nil
}
