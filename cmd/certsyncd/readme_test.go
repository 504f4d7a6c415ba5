package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/certsync/certsync/service/testutil"
)

// readmeSchedulerSection is the README heading whose examples
// TestReadmeSchedulerExamples runs. Renaming it fails the test on purpose:
// the examples are what schedulers copy, so they must stay under test.
const readmeSchedulerSection = "### Gating jobs in schedulers"

// readmeBlock is one fenced code block of the README.
type readmeBlock struct {
	lang string // what follows the opening ```
	line int    // 1-based line of the opening fence, for messages
	text string
}

// readmeSectionBlocks returns the fenced code blocks between heading and the
// next heading of the same or a higher level. Lines inside fences are never
// taken for headings (a Python comment starts with "#" too).
func readmeSectionBlocks(t *testing.T, readme, heading string) []readmeBlock {
	t.Helper()
	level := strings.Index(heading, " ") // "### x" -> 3
	lines := strings.Split(readme, "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimRight(l, " \t\r") == heading {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("README.md has no section %q: the scheduler examples moved or were renamed; update this test with them", heading)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	var body []string
	for i := start + 1; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], "\r")
		if cur != nil {
			if strings.TrimSpace(l) == "```" {
				cur.text = strings.Join(body, "\n") + "\n"
				blocks = append(blocks, *cur)
				cur, body = nil, nil
			} else {
				body = append(body, l)
			}
			continue
		}
		if strings.HasPrefix(l, "```") {
			cur = &readmeBlock{lang: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1}
			continue
		}
		if n := len(l) - len(strings.TrimLeft(l, "#")); n > 0 && n <= level && strings.HasPrefix(l[n:], " ") {
			break // the next section
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: the ```%s block in %q is never closed", cur.line, cur.lang, heading)
	}
	return blocks
}

// pickBlock returns the one block of the given language that contains
// marker, and fails the test if there is none or more than one.
func pickBlock(t *testing.T, blocks []readmeBlock, lang, marker, what string) readmeBlock {
	t.Helper()
	var found []readmeBlock
	for _, b := range blocks {
		if b.lang == lang && strings.Contains(b.text, marker) {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		t.Fatalf("README.md %q: want exactly one ```%s block containing %q (%s), found %d", readmeSchedulerSection, lang, marker, what, len(found))
	}
	return found[0]
}

// submatch returns the first group of re in a README block, or fails the
// test naming what the example lost.
func submatch(t *testing.T, b readmeBlock, re *regexp.Regexp, what string) []string {
	t.Helper()
	m := re.FindStringSubmatch(b.text)
	if m == nil {
		t.Fatalf("README.md:%d: the example has no %s (looked for %s)", b.line, what, re)
	}
	return m
}

// gateInvocation is one example's certsyncctl command line, minus the
// program name.
type gateInvocation struct {
	name string
	args []string
}

// withTarget returns the example's arguments with the --addr value replaced
// by addr and the connection prod-emea by conn, and without --cacert (the
// test's daemon listens in plain text on loopback; TLS has its own tests):
// everything else is passed to certsyncctl exactly as the README writes it.
func (g gateInvocation) withTarget(t *testing.T, addr, conn string) []string {
	t.Helper()
	var out []string
	for i := 0; i < len(g.args); i++ {
		if g.args[i] == "--cacert" && i+1 < len(g.args) {
			i++
			continue
		}
		out = append(out, g.args[i])
	}
	addrs, conns := 0, 0
	for i := 0; i < len(out); i++ {
		switch {
		case out[i] == "--addr" && i+1 < len(out):
			out[i+1] = addr
			addrs++
			i++
		case strings.HasPrefix(out[i], "--addr="):
			out[i] = "--addr=" + addr
			addrs++
		case out[i] == "prod-emea" || out[i] == "connections/prod-emea":
			out[i] = conn
			conns++
		}
	}
	if addrs != 1 || conns != 1 {
		t.Fatalf("%s example %q: want one --addr and one prod-emea to replace, found %d and %d", g.name, g.args, addrs, conns)
	}
	return out
}

// certsyncctlCommand checks that cmd runs certsyncctl and returns its
// arguments.
func certsyncctlCommand(t *testing.T, b readmeBlock, name string, cmd []string) gateInvocation {
	t.Helper()
	if len(cmd) < 2 || cmd[0] != "certsyncctl" {
		t.Fatalf("README.md:%d: the %s example's command %q does not run certsyncctl", b.line, name, cmd)
	}
	return gateInvocation{name: name, args: cmd[1:]}
}

// TestReadmeSchedulerExamples runs the scheduler examples of README.md's
// "Gating jobs in schedulers" against a sandbox daemon, as written there
// except for the server's address and the connection's name: the exit codes
// the Kubernetes Job, the Argo retry expression and the Airflow task
// rely on, and the HTTP statuses and body field the Airflow HttpSensor's
// callback relies on. Airflow, Argo and Kubernetes themselves are not run.
func TestReadmeSchedulerExamples(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeSectionBlocks(t, string(raw), readmeSchedulerSection)

	// --- The examples, taken apart as their schedulers would. ---

	k8sBlock := pickBlock(t, blocks, "yaml", "kind: Job", "the Kubernetes Job")
	var job struct {
		Spec struct {
			Template struct {
				Spec struct {
					InitContainers []struct {
						Command []string `yaml:"command"`
					} `yaml:"initContainers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal([]byte(k8sBlock.text), &job); err != nil {
		t.Fatalf("README.md:%d: the Kubernetes Job is not valid YAML: %v", k8sBlock.line, err)
	}
	if len(job.Spec.Template.Spec.InitContainers) == 0 {
		t.Fatalf("README.md:%d: the Kubernetes Job has no spec.template.spec.initContainers", k8sBlock.line)
	}
	k8s := certsyncctlCommand(t, k8sBlock, "Kubernetes Job", job.Spec.Template.Spec.InitContainers[0].Command)

	argoBlock := pickBlock(t, blocks, "yaml", "retryStrategy", "the Argo Workflows step")
	var argoSteps []struct {
		RetryStrategy struct {
			Expression string `yaml:"expression"`
		} `yaml:"retryStrategy"`
		Container struct {
			Command []string `yaml:"command"`
		} `yaml:"container"`
	}
	if err := yaml.Unmarshal([]byte(argoBlock.text), &argoSteps); err != nil {
		t.Fatalf("README.md:%d: the Argo step is not valid YAML: %v", argoBlock.line, err)
	}
	if len(argoSteps) != 1 {
		t.Fatalf("README.md:%d: want one Argo template, found %d", argoBlock.line, len(argoSteps))
	}
	argo := certsyncctlCommand(t, argoBlock, "Argo step", argoSteps[0].Container.Command)
	// The expression retries every exit code but one: the one it takes for
	// deny. That number must be certsyncctl's deny, checked below.
	m := regexp.MustCompile(`^asInt\(lastRetry\.exitCode\)\s*!=\s*(\d+)$`).FindStringSubmatch(strings.TrimSpace(argoSteps[0].RetryStrategy.Expression))
	if m == nil {
		t.Fatalf("README.md:%d: the Argo retry expression %q is not of the form asInt(lastRetry.exitCode) != N", argoBlock.line, argoSteps[0].RetryStrategy.Expression)
	}
	argoNoRetry, _ := strconv.Atoi(m[1])
	argoRetries := func(exitCode int) bool { return exitCode != argoNoRetry }

	// Airflow passes the run's id; a scheduled run's id looks like this one.
	const runID = "scheduled__2026-01-05T02:00:00+00:00"
	taskBlock := pickBlock(t, blocks, "python", "subprocess.run(", "the Airflow task")
	// The task's command is a Python list of string literals and the
	// run_id argument; anything else is beyond this test.
	list := submatch(t, taskBlock, regexp.MustCompile(`(?s)subprocess\.run\(\[(.*?)\]`), "subprocess.run([...])")[1]
	var taskWords []string
	for _, m := range regexp.MustCompile(`"([^"]*)"|(\w+)|(\S)`).FindAllStringSubmatch(list, -1) {
		switch {
		case m[0] == ",":
		case m[1] != "" || m[0] == `""`:
			taskWords = append(taskWords, m[1])
		case m[2] == "run_id":
			taskWords = append(taskWords, runID)
		default:
			t.Fatalf("README.md:%d: the Airflow task's command has %q, which this test does not read", taskBlock.line, m[0])
		}
	}
	airflowTask := certsyncctlCommand(t, taskBlock, "Airflow task", taskWords)
	// Which exit status fails the task at once (no retries).
	taskFailsOn, _ := strconv.Atoi(submatch(t, taskBlock, regexp.MustCompile(`if code == (\d+):\s*\n\s*raise AirflowFailException`),
		"if code == N: raise AirflowFailException")[1])
	submatch(t, taskBlock, regexp.MustCompile(`if code != 0:\s*\n\s*raise `), "if code != 0: raise (retried)")

	sensorBlock := pickBlock(t, blocks, "python", "HttpSensor(", "the Airflow HttpSensor")
	endpoint := submatch(t, sensorBlock, regexp.MustCompile(`endpoint="([^"]*)"`), `endpoint="..."`)[1]
	if !strings.Contains(endpoint, "prod-emea") {
		t.Fatalf("README.md:%d: the HttpSensor's endpoint %q does not name prod-emea", sensorBlock.line, endpoint)
	}
	jobParam := submatch(t, sensorBlock, regexp.MustCompile(`request_params=\{"(\w+)":`), `request_params={"KEY": ...}`)[1]
	// Without check_response False, Airflow's HttpHook raises on any
	// non-2xx status before the callback sees a 409 or a 503.
	submatch(t, sensorBlock, regexp.MustCompile(`extra_options=\{"check_response":\s*False\}`), `extra_options={"check_response": False}`)
	// The callback: which status fails the task (and which body field it
	// reports), and which one lets the run go on; anything else pokes again.
	deny := submatch(t, sensorBlock, regexp.MustCompile(`if response\.status_code == (\d+):[^\n]*\n\s*raise AirflowFailException\(response\.json\(\)\.get\("(\w+)"\)\)`),
		"callback that raises AirflowFailException(response.json().get(FIELD)) on one status")
	sensorFailsOn, _ := strconv.Atoi(deny[1])
	sensorReports := deny[2]
	allow := submatch(t, sensorBlock, regexp.MustCompile(`return response\.status_code == (\d+)`), "callback that returns status_code == N")
	sensorAllowsOn, _ := strconv.Atoi(allow[1])
	submatch(t, sensorBlock, regexp.MustCompile(`if 400 <= response\.status_code < 500:[^\n]*\n\s*raise AirflowFailException`),
		"callback that fails on every other 4xx")
	// poke mirrors certsync_allows: "allow" ends the sensor successfully,
	// "fail" fails the task, "again" pokes again after poke_interval.
	poke := func(status int) string {
		switch {
		case status == sensorFailsOn, status >= 400 && status < 500:
			return "fail"
		case status == sensorAllowsOn:
			return "allow"
		}
		return "again"
	}

	// --- The daemon the examples talk to. ---

	// As TestHTTPGateway, without --tokens: everything listens on loopback,
	// where certsyncd allows no authentication, so the examples need no
	// token (the README's need one in production, see the Kubernetes
	// manifests). No background refresh: only the examples' calls gather.
	httpAddr := testutil.FreeAddr(t)
	sandboxAddr := testutil.FreeAddr(t)
	const probeInterval = 10 * time.Millisecond
	grpcAddr, _, stop := startServe(t, "--sandbox", "--sandbox-addr", sandboxAddr, "--http-addr", httpAddr,
		"--refresh-interval", "0", "--gate-probe-interval", probeInterval.String())
	defer stop()
	testutil.WaitListening(t, httpAddr, 10*time.Second)

	// certsyncctl as the schedulers run it: its own process, judged by its
	// exit status. No token from the environment running the tests.
	t.Setenv("CERTSYNC_TOKEN", "")
	ctlDir := t.TempDir()
	ctl := filepath.Join(ctlDir, "certsyncctl")
	if out, err := exec.Command("go", "build", "-o", ctl, "github.com/certsync/certsync/cmd/certsyncctl").CombinedOutput(); err != nil {
		t.Fatalf("build certsyncctl: %v\n%s", err, out)
	}
	// runGate returns certsyncctl's exit status and, for messages, what it
	// ran and printed.
	runGate := func(g gateInvocation, addr, conn string) (int, string) {
		t.Helper()
		args := g.withTarget(t, addr, conn)
		out, code := testutil.Run(t, time.Minute, ctl, args...)
		return code, "certsyncctl " + strings.Join(args, " ") + "\n" + out
	}
	// Nothing listens here: the gate cannot be asked.
	unreachable := testutil.FreeAddr(t)

	// --- certsyncctl: allow 0, deny 1, no answer 3. ---

	examples := []gateInvocation{k8s, argo, airflowTask}
	// What the Argo step's own command exited with, per situation, for its
	// retry expression below.
	argoExit := map[string]int{}
	for _, g := range examples {
		if code, out := runGate(g, grpcAddr, "demo-healthy"); code != 0 {
			t.Errorf("%s, demo-healthy: exit %d, want 0 (allow: the job runs)\n%s", g.name, code, out)
		}
		code, out := runGate(g, grpcAddr, "demo-desync")
		if code != 1 {
			t.Errorf("%s, demo-desync: exit %d, want 1 (deny)\n%s", g.name, code, out)
		}
		if g.name == argo.name {
			argoExit["deny"] = code
		}
		if g.name == airflowTask.name && code != taskFailsOn {
			t.Errorf("README.md:%d: the Airflow task fails at once on exit %d, but certsyncctl denies with %d", taskBlock.line, taskFailsOn, code)
		}
		code, out = runGate(g, unreachable, "demo-healthy")
		if code != 3 {
			t.Errorf("%s, no server at %s: exit %d, want 3 (no answer)\n%s", g.name, unreachable, code, out)
		}
		if g.name == argo.name {
			argoExit["no answer"] = code
		}
	}
	// The Argo step must stop retrying on exactly certsyncctl's deny, and
	// retry when the gate could not be asked.
	if argoNoRetry != argoExit["deny"] {
		t.Errorf("README.md:%d: the Argo expression does not retry exit %d, but certsyncctl denies with %d", argoBlock.line, argoNoRetry, argoExit["deny"])
	}
	if !argoRetries(argoExit["no answer"]) {
		t.Errorf("README.md:%d: the Argo expression does not retry exit %d (no answer)", argoBlock.line, argoExit["no answer"])
	}

	// --- The HTTP gate, as the HttpSensor calls it. ---

	client := &http.Client{Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	checkGate := func(conn string, extra url.Values) (*http.Response, map[string]any) {
		t.Helper()
		q := url.Values{jobParam: {runID}}
		for k, v := range extra {
			q[k] = v
		}
		// HttpHook joins the connection's base URL and the endpoint with a
		// "/" and sends a GET's request_params as the query.
		u := "http://" + httpAddr + "/" + strings.Replace(endpoint, "prod-emea", conn, 1) + "?" + q.Encode()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("GET %s: %d, body not JSON: %v\n%s", u, resp.StatusCode, err, body)
		}
		return resp, m
	}

	resp, body := checkGate("demo-healthy", nil)
	if resp.StatusCode != http.StatusOK || body["decision"] != "GATE_DECISION_ALLOW" {
		t.Errorf("HTTP gate, demo-healthy: %d %v, want 200 ALLOW", resp.StatusCode, body)
	}
	if got := poke(resp.StatusCode); got != "allow" {
		t.Errorf("the HttpSensor callback on ALLOW (%d): %s, want allow", resp.StatusCode, got)
	}

	resp, body = checkGate("demo-desync", nil)
	if resp.StatusCode != http.StatusConflict || body["decision"] != "GATE_DECISION_DENY" {
		t.Errorf("HTTP gate, demo-desync: %d %v, want 409 DENY", resp.StatusCode, body)
	}
	if got := poke(resp.StatusCode); got != "fail" {
		t.Errorf("the HttpSensor callback on DENY (%d): %s, want fail", resp.StatusCode, got)
	}
	// The callback raises with this field: AirflowFailException(None) would
	// fail the task without saying why.
	if s, ok := body[sensorReports].(string); !ok || strings.TrimSpace(s) == "" {
		t.Errorf("HTTP gate, demo-desync: %q is %v, want the non-empty string the callback fails the task with", sensorReports, body[sensorReports])
	}

	// A misconfigured sensor (here: a connection that does not exist) fails
	// rather than poking until its timeout.
	resp, body = checkGate("no-such-connection", nil)
	if resp.StatusCode != http.StatusNotFound || poke(resp.StatusCode) != "fail" {
		t.Errorf("HTTP gate, unknown connection: %d %v, want 404, which the callback fails on", resp.StatusCode, body)
	}

	// --- INCONCLUSIVE: SF cannot be reached. ---

	// The sandbox resets SF's SCIM connections for demo-healthy: the probe
	// cannot reach SF, and the gate cannot tell (10 covers every gathering
	// below, one SCIM call each).
	sandbox := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// The in-process sandbox's CA lives in memory only.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // local test sandbox
	}}
	defer sandbox.CloseIdleConnections()
	fr, err := sandbox.Post("https://"+sandboxAddr+"/_sandbox/v1/faults", "application/json",
		bytes.NewReader([]byte(`{"connection":"demo-healthy","operation":"scim","reset":true,"times":10}`)))
	if err != nil {
		t.Fatalf("inject fault: %v", err)
	}
	fr.Body.Close()
	if fr.StatusCode != http.StatusCreated {
		t.Fatalf("inject fault: %s", fr.Status)
	}
	// The gate gathers a connection's evidence at most once per
	// --gate-probe-interval; waiting that long makes sure the next request,
	// which accepts no evidence older than 0s, gathers (and meets the fault)
	// rather than being turned away by the budget.
	time.Sleep(2 * probeInterval)
	resp, body = checkGate("demo-healthy", url.Values{"max_evidence_age": {"0s"}})
	if resp.StatusCode != http.StatusServiceUnavailable || body["decision"] != "GATE_DECISION_INCONCLUSIVE" {
		t.Errorf("HTTP gate, SF unreachable: %d %v, want 503 INCONCLUSIVE", resp.StatusCode, body)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("HTTP gate, SF unreachable: Retry-After %q, want whole seconds >= 1", resp.Header.Get("Retry-After"))
	}
	if !hasReason(body, "Unreachable") {
		t.Errorf("HTTP gate, SF unreachable: no condition with reason Unreachable in %v: the fault was not what made it INCONCLUSIVE", body["conditions"])
	}
	if got := poke(resp.StatusCode); got != "again" {
		t.Errorf("the HttpSensor callback on INCONCLUSIVE (%d): %s, want again", resp.StatusCode, got)
	}

	// The evidence just gathered is incomplete, so the examples' gate calls
	// (which accept up to 5m or the server's 2m) gather again or answer from
	// it: INCONCLUSIVE either way, exit 2, which every example retries.
	for _, g := range examples {
		code, out := runGate(g, grpcAddr, "demo-healthy")
		if code != 2 {
			t.Errorf("%s, SF unreachable: exit %d, want 2 (inconclusive)\n%s", g.name, code, out)
		}
		if g.name == argo.name {
			argoExit["inconclusive"] = code
		}
	}
	if !argoRetries(argoExit["inconclusive"]) {
		t.Errorf("README.md:%d: the Argo expression does not retry exit %d (inconclusive)", argoBlock.line, argoExit["inconclusive"])
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
}

// hasReason reports whether a gate answer's JSON carries a condition with
// the given reason.
func hasReason(m map[string]any, reason string) bool {
	cs, _ := m["conditions"].([]any)
	for _, c := range cs {
		if cm, ok := c.(map[string]any); ok && cm["reason"] == reason {
			return true
		}
	}
	return false
}
