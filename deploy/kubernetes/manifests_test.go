// Package kubernetes holds the example manifests for running vyx on Kubernetes, and this test,
// which stands in for a cluster: every document is decoded strictly into the Kubernetes API
// types (unknown or misspelt fields, duplicate keys and malformed quantities are errors), the
// objects are checked against each other (selectors, ports, Secret keys, the workers' connect
// address, the tokens of vyx.yaml), the gateway's vyx.yaml is checked by the gateway itself
// (`vyx check`, the binary named by VYX_BIN), and the autoscaling rules name metrics the
// gateway exports (docs/OPERATIONS.md).
package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// object is one decoded document and the file it came from.
type object struct {
	file string
	obj  any
}

// typed returns an empty object of the API type for a document's apiVersion and kind: the
// kinds these manifests may use.
func typed(apiVersion, kind string) (any, bool) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1/Secret":
		return &corev1.Secret{}, true
	case "v1/Service":
		return &corev1.Service{}, true
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, true
	}
	return nil, false
}

// documents splits a multi-document YAML file on its `---` lines.
func documents(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
			cur.Reset()
			continue
		}
		cur.Write(sc.Bytes())
		cur.WriteByte('\n')
	}
	return append(docs, cur.Bytes())
}

// decodeStrict decodes one document into its API type, refusing unknown fields.
func decodeStrict(doc []byte) (any, error) {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return nil, err
	}
	obj, ok := typed(tm.APIVersion, tm.Kind)
	if !ok {
		return nil, fmt.Errorf("%s %s is not a kind these manifests may use", tm.APIVersion, tm.Kind)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

func load(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("workers/*.yaml")
	files = append(files, more...)
	var out []object
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range documents(data) {
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, err := decodeStrict(doc)
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			out = append(out, object{f, obj})
		}
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.Bytes()
}

func all[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestStrictDecodingRefusesWhatAClusterWould(t *testing.T) {
	good := "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: [{port: 80}]\n"
	if _, err := decodeStrict([]byte(good)); err != nil {
		t.Fatalf("a valid Service: %v", err)
	}
	for name, doc := range map[string]string{
		"misspelt field":  "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  prots: [{port: 80}]\n",
		"duplicate key":   "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n",
		"bad quantity":    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n  template:\n    spec:\n      containers: [{name: c, resources: {requests: {cpu: lots}}}]\n",
		"wrong type":      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: two}\n",
		"unknown kind":    "apiVersion: v1\nkind: Servise\nmetadata: {name: a}\n",
		"field of a kind": "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: a}\nspec: {minAvailable: 1, replicas: 2}\n",
	} {
		if _, err := decodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestManifestsDecodeStrictlyAndFitTogether(t *testing.T) {
	objs := load(t)
	deployments := all[*appsv1.Deployment](objs)
	services := all[*corev1.Service](objs)
	secrets := map[string]*corev1.Secret{}
	for _, s := range all[*corev1.Secret](objs) {
		secrets[s.Name] = s
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, c := range all[*corev1.ConfigMap](objs) {
		configMaps[c.Name] = c
	}
	byName := map[string]*appsv1.Deployment{}
	for _, d := range deployments {
		byName[d.Name] = d
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: its selector does not match its Pods (%v)", d.Name, err)
		}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
					s := secrets[r.SecretKeyRef.Name]
					if s == nil || s.StringData[r.SecretKeyRef.Key] == "" {
						t.Errorf("Deployment %s: env %s names secret %s key %s, which the manifests do not hold", d.Name, e.Name, r.SecretKeyRef.Name, r.SecretKeyRef.Key)
					}
				}
			}
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.ConfigMap != nil && configMaps[v.ConfigMap.Name] == nil {
				t.Errorf("Deployment %s: volume %s names ConfigMap %s, which is not there", d.Name, v.Name, v.ConfigMap.Name)
			}
		}
	}
	gateway := byName["vyx-gateway"]
	if gateway == nil {
		t.Fatal("no vyx-gateway Deployment")
	}
	// Every Service reaches a Deployment's Pods on a port they name.
	var headless *corev1.Service
	for _, s := range services {
		d := selected(deployments, s.Spec.Selector)
		if d == nil {
			t.Errorf("Service %s selects no Deployment's Pods", s.Name)
			continue
		}
		for _, p := range s.Spec.Ports {
			if !hasPort(d, p.TargetPort.String()) {
				t.Errorf("Service %s: target port %s is not a port of %s", s.Name, p.TargetPort.String(), d.Name)
			}
		}
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless = s
		}
	}
	if headless == nil || selected(deployments, headless.Spec.Selector) != gateway {
		t.Fatal("no headless Service for the gateways: workers could not find every gateway")
	}
	// A starting gateway is ready only once the workers reach it (timeouts.startup_grace), so
	// they must find it before it is ready.
	if !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses must be true: workers find a starting gateway through it before it is ready", headless.Name)
	}
	for _, p := range all[*policyv1.PodDisruptionBudget](objs) {
		sel, _ := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if !sel.Matches(labels.Set(gateway.Spec.Template.Labels)) {
			t.Errorf("PodDisruptionBudget %s does not cover the gateways", p.Name)
		}
	}
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](objs) {
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || byName[h.Spec.ScaleTargetRef.Name] == nil {
			t.Errorf("HorizontalPodAutoscaler %s scales %s %s, which is not there", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
		}
	}
	checkGatewayPod(t, gateway, configMaps)
	checkWorkers(t, deployments, gateway, headless, configMaps["vyx-config"])
}

// selected is the Deployment whose Pods a Service selector picks, or nil.
func selected(ds []*appsv1.Deployment, selector map[string]string) *appsv1.Deployment {
	if len(selector) == 0 {
		return nil
	}
	for _, d := range ds {
		if labels.SelectorFromSet(selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			return d
		}
	}
	return nil
}

func hasPort(d *appsv1.Deployment, port string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
				return true
			}
		}
	}
	return false
}

// gatewayConfig is the part of vyx.yaml this test reads.
type gatewayConfig struct {
	Listen   string `json:"listen"`
	Timeouts struct {
		DrainGrace     string `json:"drain_grace"`
		ReadinessDelay string `json:"readiness_delay"`
	} `json:"timeouts"`
	Workers []struct {
		ID       string `json:"id"`
		TokenEnv string `json:"token_env"`
	} `json:"workers"`
}

func vyxYAML(t *testing.T, cm *corev1.ConfigMap) gatewayConfig {
	t.Helper()
	var c gatewayConfig
	if err := yaml.Unmarshal([]byte(cm.Data["vyx.yaml"]), &c); err != nil {
		t.Fatalf("vyx.yaml in ConfigMap %s: %v", cm.Name, err)
	}
	return c
}

func checkGatewayPod(t *testing.T, gateway *appsv1.Deployment, configMaps map[string]*corev1.ConfigMap) {
	spec := gateway.Spec.Template.Spec
	c := spec.Containers[0]
	for what, want := range map[string]struct {
		p    *corev1.Probe
		path string
	}{"readiness": {c.ReadinessProbe, "/_vyx/health?ready"}, "liveness": {c.LivenessProbe, "/_vyx/health"}} {
		if want.p == nil || want.p.HTTPGet == nil || want.p.HTTPGet.Path != want.path {
			t.Errorf("the gateway's %s probe is not an HTTP GET of %s", what, want.path)
		}
	}
	cfg := vyxYAML(t, configMaps["vyx-config"])
	if !strings.HasSuffix(cfg.Listen, ":"+fmt.Sprint(c.Ports[0].ContainerPort)) {
		t.Errorf("vyx.yaml listens on %s, the container port is %d", cfg.Listen, c.Ports[0].ContainerPort)
	}
	// On SIGTERM the gateway fails readiness and serves on for readiness_delay: long enough
	// for the kubelet to see it (period × threshold) and the Services to drop it, before it
	// stops accepting. Then the drain, all before the kubelet's SIGKILL.
	delay := seconds(t, cfg.Timeouts.ReadinessDelay)
	if r := c.ReadinessProbe; r != nil && int64(r.PeriodSeconds*r.FailureThreshold) >= delay {
		t.Errorf("readiness_delay %d s does not outlast the readiness probe's %d s × %d", delay, r.PeriodSeconds, r.FailureThreshold)
	}
	drain := seconds(t, cfg.Timeouts.DrainGrace)
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= delay+drain {
		t.Errorf("terminationGracePeriodSeconds must exceed readiness_delay %d s + drain_grace %d s", delay, drain)
	}
}

func seconds(t *testing.T, d string) int64 {
	var n int64
	if _, err := fmt.Sscanf(d, "%ds", &n); err != nil {
		t.Fatalf("duration %q: expected whole seconds (%v)", d, err)
	}
	return n
}

// checkWorkers holds each worker Deployment to the gateway's configuration: it dials the
// headless Service, names a worker id vyx.yaml declares, and carries the token the gateway
// reads for that id (the same Secret key behind both environment variables).
func checkWorkers(t *testing.T, ds []*appsv1.Deployment, gateway *appsv1.Deployment, headless *corev1.Service, cm *corev1.ConfigMap) {
	cfg := vyxYAML(t, cm)
	gatewayKeys := map[string]string{} // env name -> secret key
	for _, e := range gateway.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			gatewayKeys[e.Name] = e.ValueFrom.SecretKeyRef.Key
		}
	}
	tokenKey := map[string]string{} // worker id -> secret key
	for _, w := range cfg.Workers {
		tokenKey[w.ID] = gatewayKeys[w.TokenEnv]
		if tokenKey[w.ID] == "" {
			t.Errorf("vyx.yaml: worker %s reads its token from %s, which the gateway's Pod does not set from a Secret", w.ID, w.TokenEnv)
		}
	}
	var langs []string
	for _, d := range ds {
		if d == gateway {
			continue
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			env[e.Name] = e
		}
		u, err := url.Parse(env["VYX_CONNECT"].Value)
		if err != nil || u.Scheme != "ws" && u.Scheme != "wss" || u.Hostname() != headless.Name ||
			u.Port() != fmt.Sprint(headless.Spec.Ports[0].Port) {
			t.Errorf("Deployment %s: VYX_CONNECT %q does not name the headless Service %s:%d", d.Name, env["VYX_CONNECT"].Value, headless.Name, headless.Spec.Ports[0].Port)
		}
		id := env["VYX_WORKER_ID"].Value
		want, declared := tokenKey[id]
		if !declared {
			t.Errorf("Deployment %s: worker id %q is not declared in vyx.yaml", d.Name, id)
		}
		tok := env["VYX_TOKEN"].ValueFrom
		if tok == nil || tok.SecretKeyRef == nil || tok.SecretKeyRef.Key != want {
			t.Errorf("Deployment %s: VYX_TOKEN is not the secret key %q the gateway reads for %s", d.Name, want, id)
		}
		langs = append(langs, d.Name)
	}
	sort.Strings(langs)
	if len(langs) < 4 {
		t.Errorf("a worker Deployment per language is expected, found %v", langs)
	}
}

// TestVyxYAMLPassesTheGatewaysOwnCheck runs `vyx check` on the ConfigMap's vyx.yaml, with the
// token variables set as the Pod sets them.
func TestVyxYAMLPassesTheGatewaysOwnCheck(t *testing.T) {
	bin := os.Getenv("VYX_BIN")
	if bin == "" {
		t.Fatal("VYX_BIN must name the gateway binary (scripts/test sets it)")
	}
	objs := load(t)
	var gateway *appsv1.Deployment
	for _, d := range all[*appsv1.Deployment](objs) {
		if d.Name == "vyx-gateway" {
			gateway = d
		}
	}
	var cm *corev1.ConfigMap
	for _, c := range all[*corev1.ConfigMap](objs) {
		if c.Name == "vyx-config" {
			cm = c
		}
	}
	path := filepath.Join(t.TempDir(), "vyx.yaml")
	if err := os.WriteFile(path, []byte(cm.Data["vyx.yaml"]), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "check", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range gateway.Spec.Template.Spec.Containers[0].Env {
		cmd.Env = append(cmd.Env, e.Name+"=token-from-the-secret")
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("vyx check: %v\n%s", err, out)
	}
	// Without the Secret's variables the gateway refuses to start, naming the first.
	bare := exec.Command(bin, "check", path)
	bare.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := bare.CombinedOutput(); err == nil || !strings.Contains(string(out), "VYX_") {
		t.Fatalf("vyx check without the tokens: %v\n%s", err, out)
	}
}

// TestAutoscalingRulesNameExportedMetrics holds the prometheus-adapter rules to the metrics
// the gateway exports, as docs/OPERATIONS.md lists them (a gateway test holds that list to
// the gateway's own /_vyx/metrics).
func TestAutoscalingRulesNameExportedMetrics(t *testing.T) {
	ops, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(vyx_[a-z_]+)` \\|").FindAllStringSubmatch(string(ops), -1) {
		exported[m[1]] = true
	}
	if len(exported) < 5 {
		t.Fatalf("docs/OPERATIONS.md lists %d metrics; its table was not found", len(exported))
	}
	var cm *corev1.ConfigMap
	for _, c := range all[*corev1.ConfigMap](load(t)) {
		if c.Name == "vyx-prometheus-adapter-rules" {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("no prometheus-adapter rules")
	}
	var rules struct {
		ExternalRules []struct {
			SeriesQuery  string          `json:"seriesQuery"`
			MetricsQuery string          `json:"metricsQuery"`
			Resources    json.RawMessage `json:"resources"`
			Name         struct {
				As string `json:"as"`
			} `json:"name"`
		} `json:"externalRules"`
	}
	if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &rules); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range rules.ExternalRules {
		names[r.Name.As] = true
		for _, m := range regexp.MustCompile(`vyx_[a-z_]+`).FindAllString(r.SeriesQuery+r.MetricsQuery, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")
			if !exported[base] {
				t.Errorf("rule %s uses %s, which the gateway does not export", r.Name.As, m)
			}
		}
	}
	for _, h := range all[*autoscalingv2.HorizontalPodAutoscaler](load(t)) {
		for _, m := range h.Spec.Metrics {
			if m.External == nil || !names[m.External.Metric.Name] {
				t.Errorf("HorizontalPodAutoscaler %s scales on a metric no adapter rule makes", h.Name)
			}
		}
	}
}
