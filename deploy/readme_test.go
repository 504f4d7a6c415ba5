package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
)

// TestReadmeKubernetesJob decodes the README's gated Kubernetes Job
// strictly into the Kubernetes types: a field misspelt or misplaced there
// would be rejected by the API server (or, worse, silently ignored by a
// lenient client). What its init container runs is tested against the
// sandbox by cmd/certsyncd's TestReadmeSchedulerExamples.
func TestReadmeKubernetesJob(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var job string
	for _, block := range strings.Split(string(raw), "```yaml\n")[1:] {
		body, _, ok := strings.Cut(block, "\n```")
		if ok && strings.Contains(body, "kind: Job") && strings.Contains(body, "apiVersion: batch/v1") {
			job = body
		}
	}
	if job == "" {
		t.Fatal("README.md has no ```yaml block with a batch/v1 Job")
	}
	obj, _, err := strictDecoder(t).Decode([]byte(job), nil, nil)
	if err != nil {
		t.Fatalf("README.md's Job does not decode strictly: %v", err)
	}
	j, ok := obj.(*batchv1.Job)
	if !ok {
		t.Fatalf("decoded %T, want a batch/v1 Job", obj)
	}
	spec := j.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || len(spec.Containers) == 0 {
		t.Fatalf("want one init container (the gate) before the job's containers: %+v", spec)
	}
	gate := spec.InitContainers[0]
	if len(gate.Command) < 2 || gate.Command[0] != "certsyncctl" || !contains(gate.Command, "gate") {
		t.Errorf("the init container does not run certsyncctl gate: %q", gate.Command)
	}
	// The gate's token and CA come from the cluster, never from the
	// manifest itself.
	var token bool
	for _, e := range gate.Env {
		if e.Name == "CERTSYNC_TOKEN" {
			token = e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		}
	}
	if !token {
		t.Errorf("CERTSYNC_TOKEN must come from a Secret: %+v", gate.Env)
	}
	var ca string
	for i, a := range gate.Command {
		if a == "--cacert" && i+1 < len(gate.Command) {
			ca = gate.Command[i+1]
		}
	}
	mounted := false
	for _, m := range gate.VolumeMounts {
		if ca != "" && strings.HasPrefix(ca, m.MountPath+"/") {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("--cacert %q is not under a mounted volume: %+v", ca, gate.VolumeMounts)
	}
	if spec.RestartPolicy != "OnFailure" && spec.RestartPolicy != "Never" {
		t.Errorf("restartPolicy %q: a Job needs OnFailure or Never", spec.RestartPolicy)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
