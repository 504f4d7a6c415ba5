// Command certsyncctl calls the certsync service for people and job hooks:
// human output by default, JSON with -o json. Exit status 0 means an answer
// (for gate: 0 allow, 1 deny, 2 inconclusive); 3 means no answer (could not
// connect, bad usage, server error), so that schedulers can tell them apart.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses; 1 and 2 are reserved for the gate's deny and inconclusive.
const (
	exitOK       = 0
	exitNoAnswer = 3
)

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	return a.run(ctx, args)
}
