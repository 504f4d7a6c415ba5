// Package deploy tests certsync's deployment files: it renders the
// kustomizations the way `kubectl apply -k` would, decodes every object
// strictly into the Kubernetes API types (an unknown field or a wrong type
// fails), and checks what the service needs from them. It reads the
// service's source as text and never imports it, and needs no cluster and no
// schema download.
package deploy

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	baseDir     = "kubernetes/base"
	postgresDir = "kubernetes/overlays/postgres"
	namespace   = "certsync"

	grpcPort    = 50051
	healthPort  = 8081
	metricsPort = 9464
	nonRootUID  = 65532

	dataDir   = "/var/lib/certsync"
	configDir = "/etc/certsync"
)

// usedFlags are the certsyncd serve flags the deployment files pass. Each
// must be defined in cmd/certsyncd/serve.go (TestFlagsKnownToServer), and
// every flag the files pass must be listed here (TestFlagsListed).
var usedFlags = []string{
	"config",
	"grpc-addr",
	"health-addr",
	"metrics-addr",
	"log-format",
	"data-dir",
	"tls-cert",
	"tls-key",
	"client-ca",
	"tokens",
	"store",
}

// object is one rendered object, decoded.
type object struct {
	kind, name, namespace string
	obj                   runtime.Object
}

// rendered is the output of one kustomization.
type rendered []object

func (r rendered) all(kind string) []object {
	var out []object
	for _, o := range r {
		if o.kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (r rendered) one(t *testing.T, kind string) runtime.Object {
	t.Helper()
	objs := r.all(kind)
	if len(objs) != 1 {
		t.Fatalf("want exactly one %s, got %d", kind, len(objs))
	}
	return objs[0].obj
}

func (r rendered) has(kind, name string) bool {
	for _, o := range r {
		if o.kind == kind && o.name == name {
			return true
		}
	}
	return false
}

// strictDecoder decodes YAML into the typed API objects of the groups the
// manifests use, failing on unknown and duplicate fields and on kinds
// outside those groups.
func strictDecoder(t *testing.T) runtime.Decoder {
	t.Helper()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		appsv1.AddToScheme, batchv1.AddToScheme, corev1.AddToScheme, networkingv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	return kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme,
		kjson.SerializerOptions{Yaml: true, Strict: true})
}

// render builds a kustomization from disk and decodes every object.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize %s: %v", dir, err)
	}
	dec := strictDecoder(t)
	var out rendered
	for _, res := range resMap.Resources() {
		y, err := res.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, res.CurId(), err)
		}
		obj, gvk, err := dec.Decode(y, nil, nil)
		if err != nil {
			t.Errorf("%s: %s does not decode strictly: %v", dir, res.CurId(), err)
			continue
		}
		out = append(out, object{kind: gvk.Kind, name: res.GetName(), namespace: res.GetNamespace(), obj: obj})
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(out) == 0 {
		t.Fatalf("%s renders nothing", dir)
	}
	return out
}

// TestStrictDecoding proves that the decoder used above fails where it
// should, so that a passing render means something.
func TestStrictDecoding(t *testing.T) {
	dec := strictDecoder(t)
	for name, doc := range map[string]string{
		"unknown field": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 1}\n",
		"wrong type":    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: two}\n",
		"duplicate":     "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ClusterIP, type: NodePort}\n",
		"nested":        "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c, securityContext: {readOnlyRootFS: true}}]}\n",
		"unknown kind":  "apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: x}\n",
	} {
		if _, _, err := dec.Decode([]byte(doc), nil, nil); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if _, _, err := dec.Decode([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n"), nil, nil); err != nil {
		t.Errorf("a valid object: %v", err)
	}
}

func TestBase(t *testing.T) {
	r := render(t, baseDir)
	checkCommon(t, r)
	d := r.one(t, "Deployment").(*appsv1.Deployment)
	if n := replicas(d); n != 1 {
		t.Errorf("base: replicas = %d, want 1 (SQLite allows one process)", n)
	}
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("base: strategy %q, want Recreate (the data directory is locked by the running pod)", d.Spec.Strategy.Type)
	}
	pvcs := r.all("PersistentVolumeClaim")
	if len(pvcs) != 1 {
		t.Fatalf("base: %d PersistentVolumeClaims, want 1", len(pvcs))
	}
	data := volume(t, d, "data")
	if data.PersistentVolumeClaim == nil || data.PersistentVolumeClaim.ClaimName != pvcs[0].name {
		t.Errorf("base: the data volume does not use the claim %s: %+v", pvcs[0].name, data.VolumeSource)
	}
	if hasFlag(args(t, d), "store") {
		t.Error("base: passes --store; it runs on SQLite in --data-dir")
	}
	if n := len(r.all("PodDisruptionBudget")); n != 0 {
		t.Errorf("base: %d PodDisruptionBudgets; with one replica a budget would block node drains", n)
	}
}

func TestPostgresOverlay(t *testing.T) {
	r := render(t, postgresDir)
	checkCommon(t, r)
	d := r.one(t, "Deployment").(*appsv1.Deployment)
	if n := replicas(d); n != 2 {
		t.Errorf("postgres: replicas = %d, want 2", n)
	}
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		t.Errorf("postgres: strategy %q, want RollingUpdate", d.Spec.Strategy.Type)
	}
	if n := len(r.all("PersistentVolumeClaim")); n != 0 {
		t.Errorf("postgres: %d PersistentVolumeClaims, want none", n)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("postgres: volume %s uses a claim", v.Name)
		}
	}
	if v := volume(t, d, "data"); v.EmptyDir == nil {
		t.Errorf("postgres: the data volume is not an emptyDir: %+v", v.VolumeSource)
	}

	// The URL comes in CERTSYNC_STORE, from a Secret that is rendered too,
	// never as an argument (process listings would show its password).
	c := container(t, d)
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--store") {
			t.Errorf("postgres: the store URL is passed as an argument: %q", a)
		}
	}
	var store *corev1.EnvVar
	for i := range c.Env {
		if c.Env[i].Name == "CERTSYNC_STORE" {
			store = &c.Env[i]
		}
	}
	switch {
	case store == nil:
		t.Error("postgres: no CERTSYNC_STORE variable")
	case store.Value != "" || store.ValueFrom == nil || store.ValueFrom.SecretKeyRef == nil:
		t.Error("postgres: CERTSYNC_STORE must come from a Secret, not a literal")
	case !r.has("Secret", store.ValueFrom.SecretKeyRef.Name):
		t.Errorf("postgres: CERTSYNC_STORE names Secret %s, which is not rendered", store.ValueFrom.SecretKeyRef.Name)
	}

	pdb := r.one(t, "PodDisruptionBudget").(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable != intstr.FromInt32(1) {
		t.Errorf("postgres: PodDisruptionBudget minAvailable = %v, want 1", pdb.Spec.MinAvailable)
	}
	if pdb.Spec.MaxUnavailable != nil {
		t.Error("postgres: PodDisruptionBudget sets both minAvailable and maxUnavailable")
	}
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, d.Spec.Template.Labels) || len(pdb.Spec.Selector.MatchExpressions) > 0 {
		t.Errorf("postgres: the PodDisruptionBudget does not select the pods: %v", pdb.Spec.Selector)
	}

	np := r.one(t, "NetworkPolicy").(*networkingv1.NetworkPolicy)
	if !egressPorts(np)[5432] {
		t.Error("postgres: the NetworkPolicy does not let the pods reach PostgreSQL (5432)")
	}
}

// checkCommon checks what both renderings must have.
func checkCommon(t *testing.T, r rendered) {
	t.Helper()
	for _, o := range r {
		if o.kind != "Namespace" && o.namespace != namespace {
			t.Errorf("%s %s is in namespace %q, want %q", o.kind, o.name, o.namespace, namespace)
		}
	}
	d := r.one(t, "Deployment").(*appsv1.Deployment)
	pod := d.Spec.Template.Spec
	c := container(t, d)
	if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the Deployment's selector %v does not match its pods %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}

	// The command line.
	a := args(t, d)
	if len(c.Command) != 0 {
		t.Errorf("command %q: the image's entrypoint is certsyncd, pass arguments only", c.Command)
	}
	if len(a) == 0 || a[0] != "serve" {
		t.Fatalf("args %q do not start with serve", a)
	}
	want := map[string]string{
		"config":       configDir + "/certsync.yaml",
		"grpc-addr":    "0.0.0.0:" + strconv.Itoa(grpcPort),
		"health-addr":  "0.0.0.0:" + strconv.Itoa(healthPort),
		"metrics-addr": "0.0.0.0:" + strconv.Itoa(metricsPort),
		"log-format":   "json",
		"data-dir":     dataDir,
	}
	got := flagValues(a[1:])
	for name, v := range want {
		if got[name] != v {
			t.Errorf("--%s = %q, want %q", name, got[name], v)
		}
	}
	for _, name := range []string{"tls-cert", "tls-key", "client-ca", "tokens"} {
		if !strings.HasPrefix(got[name], configDir+"/") {
			t.Errorf("--%s = %q, want a file under %s (from a Secret)", name, got[name], configDir)
		}
	}

	// Files: every path certsyncd is given must be in a mounted volume.
	files := mountedFiles(t, r, d)
	for name, v := range got {
		if strings.HasPrefix(v, configDir+"/") && !files[v] {
			t.Errorf("--%s=%s is not a file of the mounted volumes", name, v)
		}
	}
	for _, p := range configPaths(t, r) {
		if !files[p] {
			t.Errorf("certsync.yaml names %s, which is not a file of the mounted volumes", p)
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m, ok := mounts[configDir]; !ok || !m.ReadOnly {
		t.Errorf("%s is not mounted read-only", configDir)
	}
	if m, ok := mounts[dataDir]; !ok || m.ReadOnly {
		t.Errorf("%s is not mounted writable", dataDir)
	}
	if m, ok := mounts["/tmp"]; !ok || volume(t, d, m.Name).EmptyDir == nil {
		t.Error("/tmp is not an emptyDir")
	}

	// Probes: gRPC health on the health port, which needs no TLS and no
	// credentials.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc"] != grpcPort || ports["health"] != healthPort || ports["metrics"] != metricsPort {
		t.Errorf("container ports %v, want grpc %d, health %d, metrics %d", ports, grpcPort, healthPort, metricsPort)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		switch {
		case p == nil:
			t.Errorf("no %s probe", name)
		case p.GRPC == nil || p.HTTPGet != nil || p.TCPSocket != nil || p.Exec != nil:
			t.Errorf("%s probe is not a gRPC probe", name)
		case p.GRPC.Port != healthPort:
			t.Errorf("%s probe on port %d, want the health port %d", name, p.GRPC.Port, healthPort)
		case p.GRPC.Service != nil && *p.GRPC.Service != "":
			t.Errorf("%s probe asks for service %q; the overall status is \"\"", name, *p.GRPC.Service)
		}
	}

	// Security.
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != nonRootUID {
		t.Errorf("the pod does not run as non-root user %d: %+v", nonRootUID, psc)
	}
	csc := c.SecurityContext
	switch {
	case csc == nil:
		t.Error("the container has no securityContext")
	default:
		if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
			t.Error("the root filesystem is not read-only")
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Error("privilege escalation is not disabled")
		}
		if csc.Privileged != nil && *csc.Privileged {
			t.Error("the container is privileged")
		}
		if csc.Capabilities == nil || !reflect.DeepEqual(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(csc.Capabilities.Add) > 0 {
			t.Errorf("capabilities %+v, want drop [ALL] and nothing added", csc.Capabilities)
		}
		if csc.RunAsNonRoot == nil || !*csc.RunAsNonRoot || csc.RunAsUser == nil || *csc.RunAsUser != nonRootUID {
			t.Errorf("the container does not run as non-root user %d", nonRootUID)
		}
		seccomp := csc.SeccompProfile
		if seccomp == nil && psc != nil {
			seccomp = psc.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("seccomp profile %+v, want RuntimeDefault", seccomp)
		}
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[res]; !ok {
			t.Errorf("no %s request", res)
		}
	}
	if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
		t.Error("no memory limit")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token")
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Error("the pod shares a host namespace")
	}
	sa := r.one(t, "ServiceAccount").(*corev1.ServiceAccount)
	if sa.Name != pod.ServiceAccountName {
		t.Errorf("the pod uses service account %q, the rendered one is %q", pod.ServiceAccountName, sa.Name)
	}
	if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Error("the ServiceAccount allows mounting its token")
	}
	if grace := pod.TerminationGracePeriodSeconds; grace == nil || *grace <= 15+2 {
		t.Errorf("terminationGracePeriodSeconds %v must exceed the server's 15s shutdown grace", grace)
	}

	// Secrets: placeholders only.
	for _, o := range r.all("Secret") {
		s := o.obj.(*corev1.Secret)
		if len(s.Data) > 0 || len(s.StringData) > 0 {
			t.Errorf("Secret %s holds data; secrets are filled in the cluster, never in the repository", s.Name)
		}
	}

	// Service: gRPC and metrics, not health.
	svc := r.one(t, "Service").(*corev1.Service)
	if !selects(svc.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("the Service selector %v does not match the pods", svc.Spec.Selector)
	}
	svcPorts := map[int32]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Port] = true
		target := p.TargetPort.IntVal
		if p.TargetPort.Type == intstr.String {
			target = ports[p.TargetPort.StrVal]
		}
		if target != p.Port {
			t.Errorf("Service port %d goes to container port %v", p.Port, p.TargetPort.String())
		}
	}
	if !reflect.DeepEqual(svcPorts, map[int32]bool{grpcPort: true, metricsPort: true}) {
		t.Errorf("Service ports %v, want %d and %d", svcPorts, grpcPort, metricsPort)
	}
	if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %s, want ClusterIP", svc.Spec.Type)
	}

	// NetworkPolicy.
	np := r.one(t, "NetworkPolicy").(*networkingv1.NetworkPolicy)
	if !selects(np.Spec.PodSelector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("the NetworkPolicy selects %v, not the pods", np.Spec.PodSelector.MatchLabels)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("policy types %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	in := map[int32]networkingv1.NetworkPolicyIngressRule{}
	for _, rule := range np.Spec.Ingress {
		if len(rule.Ports) == 0 {
			t.Error("an ingress rule allows every port")
		}
		for _, p := range rule.Ports {
			if p.Port == nil || p.EndPort != nil {
				t.Errorf("an ingress rule allows a port range: %+v", p)
				continue
			}
			in[p.Port.IntVal] = rule
		}
	}
	if len(in) != 3 {
		t.Errorf("ingress to ports %v, want exactly %d, %d and %d", slices.Sorted(maps.Keys(in)), grpcPort, healthPort, metricsPort)
	}
	if rule, ok := in[grpcPort]; !ok || len(rule.From) == 0 || rule.From[0].PodSelector == nil || len(rule.From[0].PodSelector.MatchLabels) == 0 {
		t.Errorf("gRPC ingress is not limited to labelled clients: %+v", rule.From)
	}
	if rule, ok := in[metricsPort]; !ok || len(rule.From) == 0 || rule.From[0].NamespaceSelector == nil || len(rule.From[0].NamespaceSelector.MatchLabels) == 0 {
		t.Errorf("metrics ingress is not limited to a monitoring namespace: %+v", rule.From)
	}
	if _, ok := in[healthPort]; !ok {
		t.Error("no ingress rule for the health port")
	}
	out := egressPorts(np)
	if !out[53] || !out[443] {
		t.Errorf("egress to ports %v, want at least DNS (53) and HTTPS (443)", out)
	}
}

// Helpers for the typed objects.

func container(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	return &cs[0]
}

// replicas is the Deployment's replica count; unset means 1.
func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

func args(t *testing.T, d *appsv1.Deployment) []string { return container(t, d).Args }

func volume(t *testing.T, d *appsv1.Deployment, name string) *corev1.Volume {
	t.Helper()
	for i, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return &d.Spec.Template.Spec.Volumes[i]
		}
	}
	t.Fatalf("no volume %q", name)
	return nil
}

// selects reports whether a label selector's matchLabels select labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func egressPorts(np *networkingv1.NetworkPolicy) map[int32]bool {
	out := map[int32]bool{}
	for _, rule := range np.Spec.Egress {
		for _, p := range rule.Ports {
			if p.Port != nil {
				out[p.Port.IntVal] = true
			}
		}
	}
	return out
}

// mountedFiles lists the files the container sees from projected, Secret
// and ConfigMap volumes, checking that each source is rendered too.
func mountedFiles(t *testing.T, r rendered, d *appsv1.Deployment) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	c := container(t, d)
	for _, m := range c.VolumeMounts {
		v := volume(t, d, m.Name)
		add := func(kind, name string, items []corev1.KeyToPath) {
			if !r.has(kind, name) {
				t.Errorf("volume %s uses %s %s, which is not rendered", v.Name, kind, name)
			}
			if len(items) == 0 {
				t.Errorf("volume %s: %s %s without items; name the keys, so that a missing one stops the pod", v.Name, kind, name)
			}
			for _, it := range items {
				files[path.Join(m.MountPath, it.Path)] = true
			}
		}
		switch {
		case v.Projected != nil:
			if m := v.Projected.DefaultMode; m == nil || *m&0o007 != 0 {
				t.Errorf("volume %s: files readable by others (defaultMode %v)", v.Name, m)
			}
			for _, s := range v.Projected.Sources {
				switch {
				case s.Secret != nil:
					add("Secret", s.Secret.Name, s.Secret.Items)
				case s.ConfigMap != nil:
					add("ConfigMap", s.ConfigMap.Name, s.ConfigMap.Items)
				default:
					t.Errorf("volume %s: an unexpected projection %+v", v.Name, s)
				}
			}
		case v.Secret != nil:
			add("Secret", v.Secret.SecretName, v.Secret.Items)
		case v.ConfigMap != nil:
			add("ConfigMap", v.ConfigMap.Name, v.ConfigMap.Items)
		}
	}
	return files
}

// The configuration file in the ConfigMap.

// configYAML returns certsync.yaml from the rendered ConfigMap.
func configYAML(t *testing.T, r rendered) []byte {
	t.Helper()
	cm := r.one(t, "ConfigMap").(*corev1.ConfigMap)
	s, ok := cm.Data["certsync.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no certsync.yaml", cm.Name)
	}
	return []byte(s)
}

// configPaths returns every absolute path certsync.yaml names.
func configPaths(t *testing.T, r rendered) []string {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(configYAML(t, r), &v); err != nil {
		t.Fatalf("certsync.yaml: %v", err)
	}
	var paths []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		case string:
			if strings.HasPrefix(v, "/") {
				paths = append(paths, v)
			}
		}
	}
	walk(v)
	if len(paths) == 0 {
		t.Fatal("certsync.yaml names no files")
	}
	sort.Strings(paths)
	return paths
}

// TestConfigMapMatchesConfigFormat checks the example certsync.yaml against
// the struct types of service/config (and service/auth), read from their
// source: every key must be a field's yaml tag and every value of the
// field's kind, as certsyncd's decoder (KnownFields) demands. `certsyncd
// config check` does the full validation where the files exist.
func TestConfigMapMatchesConfigFormat(t *testing.T) {
	s := loadGoTypes(t, map[string]string{
		"config": "../service/config",
		"auth":   "../service/auth",
	})
	var v any
	if err := yaml.Unmarshal(configYAML(t, render(t, baseDir)), &v); err != nil {
		t.Fatalf("certsync.yaml: %v", err)
	}
	s.check(t, "certsync.yaml", v, &ast.Ident{Name: "Config"}, "config")
	m, _ := v.(map[string]any)
	if conns, _ := m["connections"].([]any); len(conns) == 0 {
		t.Error("certsync.yaml has no connection")
	}
	if a, _ := m["auth"].(map[string]any); a == nil || a["identities"] == nil {
		t.Error("certsync.yaml has no auth.identities")
	}
}

// goTypes are the type declarations of some packages, by package and name,
// and which of them decode themselves from a scalar.
type goTypes struct {
	decls  map[string]map[string]ast.Expr
	scalar map[string]bool // "pkg.Name" with an UnmarshalYAML or UnmarshalText method
}

// loadGoTypes parses the non-test Go files of each package directory.
func loadGoTypes(t *testing.T, dirs map[string]string) goTypes {
	t.Helper()
	g := goTypes{decls: map[string]map[string]ast.Expr{}, scalar: map[string]bool{}}
	fset := token.NewFileSet()
	for pkg, dir := range dirs {
		g.decls[pkg] = map[string]ast.Expr{}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, path.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, decl := range f.Decls {
				switch decl := decl.(type) {
				case *ast.GenDecl:
					if decl.Tok != token.TYPE {
						continue
					}
					for _, spec := range decl.Specs {
						ts := spec.(*ast.TypeSpec)
						g.decls[pkg][ts.Name.Name] = ts.Type
					}
				case *ast.FuncDecl:
					if decl.Recv == nil || len(decl.Recv.List) != 1 {
						continue
					}
					if n := decl.Name.Name; n != "UnmarshalYAML" && n != "UnmarshalText" {
						continue
					}
					recv := decl.Recv.List[0].Type
					if star, ok := recv.(*ast.StarExpr); ok {
						recv = star.X
					}
					if id, ok := recv.(*ast.Ident); ok {
						g.scalar[pkg+"."+id.Name] = true
					}
				}
			}
		}
	}
	return g
}

// check walks a decoded YAML value along a Go type.
func (g goTypes) check(t *testing.T, where string, v any, typ ast.Expr, pkg string) {
	t.Helper()
	switch typ := typ.(type) {
	case *ast.StarExpr:
		g.check(t, where, v, typ.X, pkg)
	case *ast.ArrayType:
		list, ok := v.([]any)
		if !ok {
			t.Errorf("%s: want a list, got %T", where, v)
			return
		}
		for i, e := range list {
			g.check(t, fmt.Sprintf("%s[%d]", where, i), e, typ.Elt, pkg)
		}
	case *ast.SelectorExpr:
		g.check(t, where, v, typ.Sel, typ.X.(*ast.Ident).Name)
	case *ast.StructType:
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: want a mapping, got %T", where, v)
			return
		}
		fields := map[string]ast.Expr{}
		for _, f := range typ.Fields.List {
			if f.Tag == nil {
				continue
			}
			tag, _ := strconv.Unquote(f.Tag.Value)
			name, _, _ := strings.Cut(reflect.StructTag(tag).Get("yaml"), ",")
			fields[name] = f.Type
		}
		for k, e := range m {
			ft, ok := fields[k]
			if !ok {
				t.Errorf("%s: unknown key %q", where, k)
				continue
			}
			g.check(t, where+"."+k, e, ft, pkg)
		}
	case *ast.Ident:
		switch typ.Name {
		case "string":
			if _, ok := v.(string); !ok {
				t.Errorf("%s: want a string, got %T", where, v)
			}
		case "bool":
			if _, ok := v.(bool); !ok {
				t.Errorf("%s: want true or false, got %T", where, v)
			}
		case "int":
			if f, ok := v.(float64); !ok || f != float64(int64(f)) {
				t.Errorf("%s: want an integer, got %v", where, v)
			}
		default:
			if g.scalar[pkg+"."+typ.Name] {
				// Decodes itself from a string: a duration, a role name.
				s, ok := v.(string)
				if !ok {
					t.Errorf("%s: want a string (%s.%s), got %T", where, pkg, typ.Name, v)
				} else if pkg == "config" && typ.Name == "Duration" {
					if _, err := time.ParseDuration(s); err != nil {
						t.Errorf("%s: %v", where, err)
					}
				}
				return
			}
			decl, ok := g.decls[pkg][typ.Name]
			if !ok {
				t.Fatalf("%s: type %s.%s not found in the source read", where, pkg, typ.Name)
			}
			g.check(t, where, v, decl, pkg)
		}
	default:
		t.Fatalf("%s: unhandled type %T", where, typ)
	}
}

// Flags.

// flagValues maps --name=value and --name value arguments to their values.
func flagValues(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			value = args[i+1]
			i++
		}
		out[name] = value
	}
	return out
}

func hasFlag(args []string, name string) bool {
	_, ok := flagValues(args)[name]
	return ok
}

// serveFlagDefined matches a flag definition in serve.go, such as
// fs.StringVar(&f.cfg.GRPCAddr, "grpc-addr", ...) or fs.Func("lock-ttl", ...).
func serveFlagDefined(src, name string) bool {
	re := regexp.MustCompile(`fs\.(?:\w+Var\([^,]+,|Func\()\s*"` + regexp.QuoteMeta(name) + `"`)
	return re.MatchString(src)
}

func readServeGo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../cmd/certsyncd/serve.go")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFlagsKnownToServer(t *testing.T) {
	src := readServeGo(t)
	for _, name := range usedFlags {
		if !strings.Contains(src, strconv.Quote(name)) || !serveFlagDefined(src, name) {
			t.Errorf("--%s is not a flag of certsyncd serve (cmd/certsyncd/serve.go)", name)
		}
	}
	// The matcher itself.
	if serveFlagDefined(src, "no-such-flag") || !serveFlagDefined(src, "grpc-addr") || !serveFlagDefined(src, "lock-ttl") {
		t.Error("serveFlagDefined does not recognise serve.go's flag definitions")
	}
}

// TestFlagsListed checks that every flag the deployment files pass is in
// usedFlags (and so checked against serve.go), and that the entrypoint
// subcommand is serve everywhere.
func TestFlagsListed(t *testing.T) {
	sets := map[string][]string{}
	for _, dir := range []string{baseDir, postgresDir} {
		d := render(t, dir).one(t, "Deployment").(*appsv1.Deployment)
		sets[dir] = args(t, d)
	}
	sets["systemd/certsyncd.service"] = systemdExecStart(t)
	sets["Containerfile CMD"] = containerfileCMD(t)
	for where, a := range sets {
		if len(a) == 0 || a[0] != "serve" {
			t.Errorf("%s: %q does not run certsyncd serve", where, a)
			continue
		}
		for name := range flagValues(a[1:]) {
			if !slices.Contains(usedFlags, name) {
				t.Errorf("%s passes --%s, which is not in usedFlags", where, name)
			}
		}
	}
}

// The systemd unit.

// unitSettings parses a unit file into its settings, continuation lines
// joined, in order.
func unitSettings(t *testing.T) [][2]string {
	t.Helper()
	b, err := os.ReadFile("systemd/certsyncd.service")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cont string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if cont == "" && (line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") || strings.HasPrefix(line, "[")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("systemd unit: cannot parse %q", line)
		}
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out
}

func systemdExecStart(t *testing.T) []string {
	t.Helper()
	for _, kv := range unitSettings(t) {
		if kv[0] == "ExecStart" {
			f := strings.Fields(kv[1])
			if len(f) == 0 || path.Base(f[0]) != "certsyncd" {
				t.Fatalf("ExecStart %q does not run certsyncd", kv[1])
			}
			return f[1:]
		}
	}
	t.Fatal("no ExecStart")
	return nil
}

func TestSystemdUnit(t *testing.T) {
	set := map[string]string{}
	for _, kv := range unitSettings(t) {
		if prev, dup := set[kv[0]]; dup {
			if kv[0] != "SystemCallFilter" {
				t.Errorf("%s set twice", kv[0])
			}
			kv[1] = prev + " " + kv[1] // these add up
		}
		set[kv[0]] = kv[1]
	}
	for k, v := range map[string]string{
		"StateDirectory":          "certsync",
		"ConfigurationDirectory":  "certsync",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"NoNewPrivileges":         "yes",
		"CapabilityBoundingSet":   "",
		"Restart":                 "on-failure",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
	} {
		if got, ok := set[k]; !ok || got != v {
			t.Errorf("%s=%q, want %q", k, got, v)
		}
	}
	if set["DynamicUser"] != "yes" && set["User"] == "" {
		t.Error("neither DynamicUser=yes nor User=")
	}
	if !strings.Contains(set["SystemCallFilter"]+" ", "@system-service") {
		t.Error("no SystemCallFilter=@system-service")
	}
	stop, err := time.ParseDuration(set["TimeoutStopSec"])
	if err != nil || stop <= 17*time.Second {
		t.Errorf("TimeoutStopSec=%q must exceed the server's 15s shutdown grace and the drain after it", set["TimeoutStopSec"])
	}
	v := flagValues(systemdExecStart(t))
	if v["data-dir"] != dataDir || v["log-format"] != "json" {
		t.Errorf("ExecStart: --data-dir %q, --log-format %q; want %s and json", v["data-dir"], v["log-format"], dataDir)
	}
	if c := v["config"]; !strings.HasPrefix(c, configDir+"/") {
		t.Errorf("ExecStart: --config %q is not in the ConfigurationDirectory %s", c, configDir)
	}
}

// The Containerfile.

// containerfile returns the instructions of ../Containerfile, continuation
// lines joined, comments dropped.
func containerfile(t *testing.T) [][2]string {
	t.Helper()
	b, err := os.ReadFile("../Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	var cont string
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cont += strings.TrimSuffix(trimmed, "\\") + " "
			continue
		}
		line, cont = cont+trimmed, ""
		instr, rest, _ := strings.Cut(line, " ")
		out = append(out, [2]string{strings.ToUpper(instr), strings.TrimSpace(rest)})
	}
	return out
}

func containerfileCMD(t *testing.T) []string {
	t.Helper()
	var cmd []string
	for _, in := range containerfile(t) {
		if in[0] == "CMD" {
			if err := json.Unmarshal([]byte(in[1]), &cmd); err != nil {
				t.Fatalf("CMD %s is not in exec form: %v", in[1], err)
			}
		}
	}
	return cmd
}

func TestContainerfile(t *testing.T) {
	ins := containerfile(t)
	var froms []string
	last := map[string]string{} // the final stage's instructions
	build := ""                 // the builder's RUN lines
	for _, in := range ins {
		if in[0] == "FROM" {
			froms = append(froms, in[1])
			last = map[string]string{}
			continue
		}
		last[in[0]] += in[1] + "\n"
		if len(froms) == 1 && (in[0] == "RUN" || in[0] == "ENV" || in[0] == "ARG") {
			build += in[1] + "\n"
		}
	}
	if len(froms) < 2 {
		t.Fatalf("%d stages, want a builder and a final stage", len(froms))
	}

	// The builder's Go is the one go.mod asks for.
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("no go directive in ../go.mod")
	}
	if !strings.Contains(froms[0], "golang:"+string(goVersion[1])) && !strings.Contains(build, "GO_VERSION="+string(goVersion[1])) {
		t.Errorf("builder %q is not golang:%s", froms[0], goVersion[1])
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=", "./cmd/certsyncd", "./cmd/certsyncctl", "-buildvcs=false"} {
		if !strings.Contains(build, want) {
			t.Errorf("the builder does not use %q", want)
		}
	}
	if final := froms[len(froms)-1]; !strings.Contains(final, "distroless/static") && !strings.HasPrefix(final, "scratch") {
		t.Errorf("final stage %q is neither distroless static nor scratch", final)
	}
	if u := strings.TrimSpace(last["USER"]); u != "65532" && u != "65532:65532" {
		t.Errorf("USER %q, want 65532", u)
	}
	exposed := strings.Fields(last["EXPOSE"])
	if !reflect.DeepEqual(exposed, []string{strconv.Itoa(grpcPort), strconv.Itoa(healthPort), strconv.Itoa(metricsPort)}) {
		t.Errorf("EXPOSE %q", exposed)
	}
	var entry []string
	if err := json.Unmarshal([]byte(strings.TrimSpace(last["ENTRYPOINT"])), &entry); err != nil || len(entry) != 1 || path.Base(entry[0]) != "certsyncd" {
		t.Errorf("ENTRYPOINT %q is not certsyncd in exec form", last["ENTRYPOINT"])
	}

	// Everything the binaries are built from is copied in: every top-level
	// directory of the root module that holds Go files.
	copied := ""
	for _, in := range ins {
		if in[0] == "COPY" && !strings.Contains(in[1], "--from=") {
			copied += " " + in[1] + " "
		}
	}
	entries, err := os.ReadDir("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") || e.Name() == "deploy" {
			continue
		}
		if hasGoFiles(t, "../"+e.Name()) && !strings.Contains(copied, " "+e.Name()+"/ ") && !strings.Contains(copied, " . ") {
			t.Errorf("the Containerfile does not copy %s/, which holds Go source", e.Name())
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !strings.Contains(copied, f) {
			t.Errorf("the Containerfile does not copy %s", f)
		}
	}
}

func hasGoFiles(t *testing.T, dir string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// The overlay must not leave anything of the base's SQLite set-up.
func TestOverlayDropsOnlyTheClaim(t *testing.T) {
	kinds := func(r rendered) []string {
		var out []string
		for _, o := range r {
			out = append(out, o.kind+"/"+o.name)
		}
		sort.Strings(out)
		return out
	}
	base, pg := kinds(render(t, baseDir)), kinds(render(t, postgresDir))
	for _, k := range base {
		if !slices.Contains(pg, k) && k != "PersistentVolumeClaim/certsync-data" {
			t.Errorf("the overlay drops %s", k)
		}
	}
	var added []string
	for _, k := range pg {
		if !slices.Contains(base, k) {
			added = append(added, k)
		}
	}
	if want := []string{"PodDisruptionBudget/certsync", "Secret/certsync-store"}; !slices.Equal(added, want) {
		t.Errorf("the overlay adds %v, want %v", added, want)
	}
}
