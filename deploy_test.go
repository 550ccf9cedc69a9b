package deps_test

// The deployment files of deploy/ are checked here, without a Docker engine
// or a Kubernetes cluster: compose.yaml through the Compose Specification's
// own loader (with its schema validation), every Kubernetes manifest decoded
// strictly into the k8s.io/api types, the Dockerfile's final stage read line
// by line, plus what matters to an operator (probes, non-root, secrets from
// Secret references, migrations run once before the replicas start).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// deployManifestKinds maps apiVersion/kind to a new typed object: the only
// kinds deploy/k8s may hold. Anything else fails the test.
var deployManifestKinds = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
}

// deployDecodeManifest decodes one YAML document strictly: duplicate keys,
// unknown fields and unknown kinds are errors.
func deployDecodeManifest(doc []byte) (any, error) {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, err
	}
	mk, ok := deployManifestKinds[tm.APIVersion+"/"+tm.Kind]
	if !ok {
		return nil, fmt.Errorf("unknown kind %s %s", tm.APIVersion, tm.Kind)
	}
	obj := mk()
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	return obj, nil
}

// deploySplitDocuments splits a YAML stream at its "---" lines.
func deploySplitDocuments(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if len(bytes.TrimSpace(deployStripComments(cur.Bytes()))) > 0 {
			docs = append(docs, slices.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for line := range strings.Lines(string(b)) {
		if strings.TrimRight(line, " \r\n") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
	}
	flush()
	return docs
}

func deployStripComments(b []byte) []byte {
	var out bytes.Buffer
	for line := range strings.Lines(string(b)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line)
		}
	}
	return out.Bytes()
}

// TestDeployManifestDecoderIsStrict: the decoder the manifest check relies
// on refuses what it must, so a typo in a manifest cannot pass.
func TestDeployManifestDecoderIsStrict(t *testing.T) {
	bad := map[string]string{
		"unknown field":  "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selectr: {a: b}}\n",
		"unknown kind":   "apiVersion: v1\nkind: Servic\nmetadata: {name: x}\n",
		"old apiVersion": "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: x}\n",
		"duplicate key":  "apiVersion: v1\nkind: Service\nkind: Service\nmetadata: {name: x}\n",
		"wrong type":     "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicas: three}\n",
	}
	for name, doc := range bad {
		if _, err := deployDecodeManifest([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error:\n%s", name, doc)
		}
	}
	if _, err := deployDecodeManifest([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {selector: {a: b}}\n")); err != nil {
		t.Errorf("a valid Service: %v", err)
	}
}

// deployManifests decodes every document of deploy/k8s/*.yaml.
func deployManifests(t *testing.T) []any {
	t.Helper()
	files, err := filepath.Glob("deploy/k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/k8s: %v", err)
	}
	var objs []any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range deploySplitDocuments(b) {
			obj, err := deployDecodeManifest(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
				continue
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// deployOne returns the only object of type T, failing unless there is one.
func deployOne[T any](t *testing.T, objs []any) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want one %T in deploy/k8s, found %d", zero, len(found))
	}
	return found[0]
}

// deploySecretish names environment variables that must never hold a
// literal value in a manifest.
func deploySecretish(name string) bool {
	for _, s := range []string{"SECRET", "PASSWORD", "TOKEN", "DATABASE_URL", "REDIS_URL"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// deployLabelsMatch reports whether selector selects labels.
func deployLabelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// deployCheckContainerHardening checks a pod's security settings.
func deployCheckContainerHardening(t *testing.T, what string, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod securityContext.runAsNonRoot must be true", what)
	}
	if psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0 {
		t.Errorf("%s: runAsUser 0", what)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken must be false (mcpauth needs no Kubernetes API)", what)
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", what, c.Name)
			continue
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: readOnlyRootFilesystem must be true", what, c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: allowPrivilegeEscalation must be false", what, c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s: capabilities must drop ALL and add none", what, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: resources need cpu and memory requests and a memory limit", what, c.Name)
		}
		for _, e := range c.Env {
			if deploySecretish(e.Name) && (e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
				t.Errorf("%s/%s: %s must come from a secretKeyRef", what, c.Name, e.Name)
			}
		}
	}
}

// deployEnvFromSecret reports whether container c takes name from a Secret.
func deployEnvFromSecret(c corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value == "" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil &&
				e.ValueFrom.SecretKeyRef.Name != "" && e.ValueFrom.SecretKeyRef.Key != ""
		}
	}
	return false
}

// TestDeployKubernetesManifests decodes every manifest strictly and checks
// what an operator relies on.
func TestDeployKubernetesManifests(t *testing.T) {
	objs := deployManifests(t)
	if t.Failed() {
		return
	}
	dep := deployOne[*appsv1.Deployment](t, objs)
	svc := deployOne[*corev1.Service](t, objs)
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if c, ok := o.(*corev1.ConfigMap); ok {
			configMaps[c.Name] = c
		}
	}
	job := deployOne[*batchv1.Job](t, objs)
	pdb := deployOne[*policyv1.PodDisruptionBudget](t, objs)
	hpa := deployOne[*autoscalingv2.HorizontalPodAutoscaler](t, objs)
	np := deployOne[*networkingv1.NetworkPolicy](t, objs)

	// Deployment: 3 replicas (from the HPA, which owns the count: a
	// replicas field would be reset on every apply), probes on the right
	// paths and port.
	if dep.Spec.Replicas != nil {
		t.Errorf("Deployment replicas = %d: the HPA manages the count, leave it out", *dep.Spec.Replicas)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 {
		t.Errorf("HPA minReplicas = %v, want 3", hpa.Spec.MinReplicas)
	}
	podLabels := dep.Spec.Template.Labels
	if dep.Spec.Selector == nil || !deployLabelsMatch(dep.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("Deployment selector %v does not select its pods %v", dep.Spec.Selector, podLabels)
	}
	deployCheckContainerHardening(t, "Deployment", dep.Spec.Template.Spec)
	if len(dep.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("Deployment: want one container, got %d", len(dep.Spec.Template.Spec.Containers))
	}
	c := dep.Spec.Template.Spec.Containers[0]
	// The settings: the ConfigMap the container takes its environment from.
	var cm *corev1.ConfigMap
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef != nil {
			cm = configMaps[ef.ConfigMapRef.Name]
		}
		if ef.SecretRef != nil {
			t.Errorf("Deployment: envFrom a whole Secret; name each key with secretKeyRef")
		}
	}
	if cm == nil {
		t.Fatalf("Deployment takes its settings from no ConfigMap of deploy/k8s")
	}
	for _, m := range configMaps {
		for k := range m.Data {
			if deploySecretish(k) {
				t.Errorf("ConfigMap %s holds %s: secrets belong in a Secret", m.Name, k)
			}
		}
	}
	if cm.Data["mcpauth.yaml"] != "" {
		t.Errorf("ConfigMap %s, used as environment, holds the policy file", cm.Name)
	}
	if !slices.Equal(c.Args, []string{"serve", "--no-migrate"}) {
		t.Errorf("Deployment args = %q, want serve --no-migrate (the Job migrates)", c.Args)
	}
	addr := cm.Data["MCPAUTH_ADDR"]
	_, portStr, _ := strings.Cut(addr, ":")
	var listen int32
	fmt.Sscan(portStr, &listen)
	portNamed := map[string]int32{}
	for _, p := range c.Ports {
		portNamed[p.Name] = p.ContainerPort
	}
	if listen == 0 || !slices.Contains(slices.Collect(maps.Values(portNamed)), listen) {
		t.Errorf("MCPAUTH_ADDR %q is not a declared container port %v", addr, portNamed)
	}
	probePort := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s probe: none, or not httpGet", what)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe path = %q, want %q", what, p.HTTPGet.Path, path)
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port = portNamed[p.HTTPGet.Port.StrVal]
		}
		if port != listen {
			t.Errorf("%s probe port %s is not the listening port %d", what, p.HTTPGet.Port.String(), listen)
		}
	}
	// Readiness is /healthz: /readyz follows the shared database, and a
	// database outage must not take every replica out of the Service (/mcp
	// keeps working; docs/deploy.md).
	probePort("readiness", c.ReadinessProbe, "/healthz")
	probePort("liveness", c.LivenessProbe, "/healthz")
	if c.StartupProbe != nil {
		probePort("startup", c.StartupProbe, "/healthz")
	}
	for _, name := range []string{"MCPAUTH_SECRET", "MCPAUTH_DATABASE_URL"} {
		if !deployEnvFromSecret(c, name) {
			t.Errorf("Deployment: %s must come from a secretKeyRef", name)
		}
	}
	// MCPAUTH_CONFIG names a file the ConfigMap provides, mounted.
	cfgPath := cm.Data["MCPAUTH_CONFIG"]
	mounted := false
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(cfgPath, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range dep.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil || configMaps[v.ConfigMap.Name] == nil {
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel && configMaps[v.ConfigMap.Name].Data[it.Key] != "" {
					mounted = true
				}
			}
		}
	}
	if cfgPath == "" || !mounted {
		t.Errorf("MCPAUTH_CONFIG %q is not a file mounted from a ConfigMap of deploy/k8s", cfgPath)
	}
	if issuer := cm.Data["MCPAUTH_ISSUER"]; !strings.HasPrefix(issuer, "https://") {
		t.Errorf("MCPAUTH_ISSUER %q: behind a proxy the issuer is the public https URL", issuer)
	}
	if cm.Data["MCPAUTH_TRUSTED_PROXIES"] == "" {
		t.Errorf("MCPAUTH_TRUSTED_PROXIES is not set: client IPs (rate limits, logs) would be the proxy's")
	}
	for _, p := range strings.Split(cm.Data["MCPAUTH_TRUSTED_PROXIES"], ",") {
		// The ingress controller's pods, not the pod network: any pod
		// trusted as a proxy can forge X-Forwarded-For.
		pfx, err := netip.ParsePrefix(strings.TrimSpace(p))
		if err != nil || (pfx.Addr().Is4() && pfx.Bits() < 16) || (pfx.Addr().Is6() && pfx.Bits() < 48) {
			t.Errorf("MCPAUTH_TRUSTED_PROXIES %q: want narrow prefixes (the ingress controller's pods), not %q", cm.Data["MCPAUTH_TRUSTED_PROXIES"], p)
		}
	}
	if cpu := c.Resources.Limits.Cpu(); cpu == nil || cpu.IsZero() {
		t.Errorf("Deployment sets no CPU limit: GOMAXPROCS, and the default pool of max(8, 4×GOMAXPROCS) connections, would follow the node's cores")
	}
	if tg := dep.Spec.Template.Spec.TerminationGracePeriodSeconds; tg == nil || *tg < 25 {
		t.Errorf("terminationGracePeriodSeconds %v is shorter than the 20s drain", tg)
	}

	// Service: selects the pods, targets the listening port.
	if !deployLabelsMatch(svc.Spec.Selector, podLabels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, podLabels)
	}
	for _, p := range svc.Spec.Ports {
		tp := p.TargetPort.IntVal
		if p.TargetPort.StrVal != "" {
			tp = portNamed[p.TargetPort.StrVal]
		}
		if tp != listen {
			t.Errorf("Service port %d targets %s, not the listening port", p.Port, p.TargetPort.String())
		}
	}

	// Job: runs `mcpauth migrate up` once, with the database URL from a Secret.
	deployCheckContainerHardening(t, "Job", job.Spec.Template.Spec)
	if rp := job.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		t.Errorf("Job restartPolicy %q", rp)
	}
	jc := job.Spec.Template.Spec.Containers[0]
	cmdline := append(slices.Clone(jc.Command), jc.Args...)
	if len(cmdline) != 3 || filepath.Base(cmdline[0]) != "mcpauth" || cmdline[1] != "migrate" || cmdline[2] != "up" {
		t.Errorf("Job runs %q, want mcpauth migrate up", cmdline)
	}
	if !deployEnvFromSecret(jc, "MCPAUTH_DATABASE_URL") {
		t.Errorf("Job: MCPAUTH_DATABASE_URL must come from a secretKeyRef")
	}
	if jc.Image != c.Image {
		t.Errorf("Job image %q differs from the Deployment's %q: the migrations must be the binary's own", jc.Image, c.Image)
	}

	// PodDisruptionBudget, HorizontalPodAutoscaler, NetworkPolicy.
	if pdb.Spec.Selector == nil || !deployLabelsMatch(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget does not select the pods")
	}
	if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
		t.Errorf("PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}
	ref := hpa.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != dep.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, not Deployment %s", ref, dep.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if !deployLabelsMatch(np.Spec.PodSelector.MatchLabels, podLabels) {
		t.Errorf("NetworkPolicy does not select the pods")
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
		t.Errorf("NetworkPolicy policyTypes %v: want Ingress and Egress", np.Spec.PolicyTypes)
	}
	ingressOK := false
	for _, r := range np.Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port != nil && (p.Port.IntVal == listen || portNamed[p.Port.StrVal] == listen) {
				ingressOK = true
			}
		}
		// A rule without from admits every pod, and any pod that reaches
		// the port from a trusted proxy's address forges client IPs.
		if len(r.From) == 0 {
			t.Errorf("NetworkPolicy ingress rule %v admits any source: want a from: naming the ingress controller", r.Ports)
		}
		for _, f := range r.From {
			if f.IPBlock == nil && f.NamespaceSelector == nil && f.PodSelector == nil {
				t.Errorf("NetworkPolicy ingress from: an empty peer")
			}
		}
	}
	if !ingressOK {
		t.Errorf("NetworkPolicy admits no ingress to port %d", listen)
	}
}

// TestDeployCompose loads deploy/compose.yaml with compose-go (schema
// validation, interpolation, consistency checks) and checks the topology.
func TestDeployCompose(t *testing.T) {
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  "deploy",
		ConfigFiles: []types.ConfigFile{{Filename: "deploy/compose.yaml"}},
		Environment: types.Mapping{},
	})
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	svc := func(name string) types.ServiceConfig {
		s, ok := p.Services[name]
		if !ok {
			t.Fatalf("compose.yaml has no service %q", name)
		}
		return s
	}
	pg := svc("postgres")
	if pg.HealthCheck == nil || pg.HealthCheck.Disable || len(pg.HealthCheck.Test) == 0 {
		t.Errorf("postgres has no healthcheck")
	}
	if pg.Environment["POSTGRES_PASSWORD"] != nil || pg.Environment["POSTGRES_PASSWORD_FILE"] == nil {
		t.Errorf("postgres: the password must come from a secret file (POSTGRES_PASSWORD_FILE)")
	}
	svc("redis")
	migrate := svc("migrate")
	if !slices.Equal(migrate.Command, types.ShellCommand{"migrate", "up"}) {
		t.Errorf("migrate runs %q, want migrate up", migrate.Command)
	}
	if migrate.Restart != "no" {
		t.Errorf("migrate restart %q: it is one-shot", migrate.Restart)
	}
	if d, ok := migrate.DependsOn["postgres"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("migrate must wait for a healthy postgres: %+v", migrate.DependsOn)
	}

	proxy := svc("proxy")
	var proxyIP netip.Addr
	for _, n := range proxy.Networks {
		if n != nil && n.Ipv4Address != "" {
			proxyIP, _ = netip.ParseAddr(n.Ipv4Address)
		}
	}
	if !proxyIP.IsValid() {
		t.Fatalf("proxy has no fixed address to trust")
	}
	published := false
	for _, port := range proxy.Ports {
		if port.Target == 443 && port.Published != "" {
			published = true
		}
	}
	if !published {
		t.Errorf("proxy does not publish port 443")
	}

	var replicas []string
	for name, s := range p.Services {
		if name == "migrate" || !strings.HasPrefix(s.Image, "mcpauth") {
			continue
		}
		replicas = append(replicas, name)
		if !slices.Equal(s.Command, types.ShellCommand{"serve", "--no-migrate"}) {
			t.Errorf("%s runs %q, want serve --no-migrate", name, s.Command)
		}
		if d, ok := s.DependsOn["migrate"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s must depend on migrate completing successfully: %+v", name, s.DependsOn)
		}
		if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
			t.Errorf("%s: want read_only and cap_drop ALL", name)
		}
		if s.HealthCheck == nil || s.HealthCheck.Disable || !slices.Contains(s.HealthCheck.Test, "healthcheck") {
			t.Errorf("%s: healthcheck must run mcpauth healthcheck: %+v", name, s.HealthCheck)
		}
		env := func(k string) string {
			if v := s.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		for k, v := range s.Environment {
			if deploySecretish(k) && !strings.HasSuffix(k, "_FILE") && v != nil && strings.Contains(*v, "@") {
				t.Errorf("%s: %s carries a credential inline; use a secret file", name, k)
			}
		}
		for _, k := range []string{"MCPAUTH_SECRET", "MCPAUTH_DATABASE_URL"} {
			if env(k) != "" {
				t.Errorf("%s: %s set inline; use %s_FILE and a compose secret", name, k, k)
			}
			file := env(k + "_FILE")
			secret, ok := strings.CutPrefix(file, "/run/secrets/")
			if !ok || !slices.ContainsFunc(s.Secrets, func(sc types.ServiceSecretConfig) bool { return sc.Source == secret }) {
				t.Errorf("%s: %s_FILE=%q is not one of the service's secrets", name, k, file)
			} else if top, ok := p.Secrets[secret]; !ok || top.File == "" {
				t.Errorf("secret %q is not file-based", secret)
			}
		}
		trusted := false
		for _, s := range strings.Split(env("MCPAUTH_TRUSTED_PROXIES"), ",") {
			if pfx, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && pfx.Contains(proxyIP) {
				trusted = true
			}
		}
		if !trusted {
			t.Errorf("%s: MCPAUTH_TRUSTED_PROXIES=%q does not contain the proxy %s", name, env("MCPAUTH_TRUSTED_PROXIES"), proxyIP)
		}
		if !strings.HasPrefix(env("MCPAUTH_ISSUER"), "https://") || env("MCPAUTH_REDIS_URL") == "" {
			t.Errorf("%s: want an https issuer and the shared Redis", name)
		}
	}
	if len(replicas) < 2 {
		t.Errorf("compose.yaml runs %d mcpauth replicas, want 2", len(replicas))
	}

	// The proxy terminates TLS with a local certificate and balances over
	// every replica.
	caddy, err := os.ReadFile("deploy/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^\s*tls internal\s*$`).Match(caddy) {
		t.Errorf("Caddyfile: no `tls internal`")
	}
	for _, r := range replicas {
		if !strings.Contains(string(caddy), r+":8080") {
			t.Errorf("Caddyfile does not proxy to %s:8080", r)
		}
	}
	if ignore, err := os.ReadFile("deploy/.gitignore"); err != nil || !strings.Contains(string(ignore), "secrets/") {
		t.Errorf("deploy/secrets/ must be git-ignored")
	}
}

// TestDeployDockerfile reads the Dockerfile: a static build, and a final
// stage on a minimal base that runs as a numeric non-root user and has a
// HEALTHCHECK.
func TestDeployDockerfile(t *testing.T) {
	b, err := os.ReadFile("deploy/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, drop comments.
	var lines []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if l, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(l + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	for _, l := range lines {
		// The golang image's GOPATH is /go: a cache mount elsewhere caches
		// nothing.
		if strings.Contains(l, "target=/root/go/") {
			t.Errorf("a cache mount at /root/go: the module cache is /go/pkg/mod: %s", l)
		}
	}
	var stages [][]string
	for _, l := range lines {
		if strings.HasPrefix(strings.ToUpper(l), "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], l)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a final one", len(stages))
	}
	build := strings.Join(stages[0], "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/mcpauth"} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage lacks %q", want)
		}
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0])[1]
	if !strings.HasPrefix(base, "gcr.io/distroless/static") && base != "scratch" {
		t.Errorf("final base %q: want distroless/static or scratch", base)
	}
	var user, health string
	for _, l := range final {
		switch f := strings.Fields(l); strings.ToUpper(f[0]) {
		case "USER":
			user = f[1]
		case "HEALTHCHECK":
			health = l
		case "RUN":
			t.Errorf("final stage runs %q: it has no shell", l)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
		t.Errorf("final stage USER %q: want a numeric non-root uid", user)
	}
	if !strings.Contains(health, `CMD ["/usr/local/bin/mcpauth", "healthcheck"`) {
		t.Errorf("final stage HEALTHCHECK %q: want the exec form running mcpauth healthcheck", health)
	}
}

// TestDeploySystemdUnit checks the hardening of the systemd unit.
func TestDeploySystemdUnit(t *testing.T) {
	b, err := os.ReadFile("deploy/mcpauth.service")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = v
		}
	}
	want := map[string]string{
		"User": "mcpauth", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
		"PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "", "KillSignal": "SIGTERM",
		"ExecStart": "/usr/local/bin/mcpauth serve", "RestrictSUIDSGID": "yes", "UMask": "0077",
	}
	for k, v := range want {
		if got, ok := set[k]; !ok || got != v {
			t.Errorf("mcpauth.service: %s=%q, want %q", k, got, v)
		}
	}
}
